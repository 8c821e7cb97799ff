"""The ``circuits`` sweep adapter: circuits in superposition, one configuration per grid point.

Parameters (``required``: T, M): ``T`` small circuits, ``M`` positions per block of the large network
(width ``(d + 2) * M``, the theory's D/d; see :func:`supcomp.circuits.compress`), ``S`` large neurons
per small neuron (default 5), ``L`` layers (2), ``z`` active circuits (2), ``kind`` (``"rotations"`` or
``"random"``; default rotations), ``d`` (small width of random circuits, 3), ``assignment``
(``"overlap1"``), ``n_samples`` (256), ``seed`` (0).

Nothing is packed (``per_instance`` is empty): each point builds its own network. Metrics are those of
:func:`supcomp.studies.circuits.error_row`: last-layer ``total`` MSE and its prediction, the z = 1
error ``alone``, layer means of ``read_in`` and ``read_out`` with their predictions, ``total_se``.
"""

from __future__ import annotations

from ..circuits.assign import ASSIGNMENTS
from ..utils.figures import new_figure
from .params import Param
from .registry import Experiment

__all__ = ["plot_error_vs_theory"]

DEFAULTS = dict(S=5, L=2, z=2, kind="rotations", d=3, assignment="overlap1", n_samples=256, seed=0)
PARAMS = dict(
    T=Param("int", low=1, doc="small circuits"),
    M=Param("int", low=1, doc="positions per block of the large network"),
    S=Param("int", low=1, doc="large neurons per small neuron"),
    L=Param("int", low=1, doc="layers"),
    z=Param("int", low=1, doc="active circuits"),
    kind=Param("str", choices=("rotations", "random"), doc="the small circuits"),
    d=Param("int", low=1, doc="small width of random circuits"),
    assignment=Param("str", choices=ASSIGNMENTS, doc="neuron assignment"),
    n_samples=Param("int", low=1, doc="samples"),
    seed=Param("int", low=0, high=2**63 - 1, doc="seed"),
)


def run(points: list[dict]) -> list[dict]:
    from ..studies.circuits import error_row

    out = []
    for p in points:
        row = error_row(
            str(p["kind"]),
            int(p["T"]),
            int(p["M"]),
            int(p["S"]),
            int(p["L"]),
            int(p["z"]),
            int(p["n_samples"]),
            assignment=str(p["assignment"]),
            d=int(p["d"]),
            seed=int(p["seed"]),
        )
        out.append({k: v for k, v in row.items() if k not in ("T", "M", "S", "L", "z")})
    return out


def plot_error_vs_theory(rows: list[dict], ax=None):
    """Measured against predicted last-layer MSE from circuits sweep rows, one point per configuration
    (log-log when all positive), coloured by z, with the line measured = predicted. Returns the Figure."""
    ok = [r for r in rows if r.get("total") is not None and r.get("total_pred") is not None]
    if ax is None:
        fig, ax = new_figure(figsize=(5, 4.5))
    else:
        fig = ax.figure
    for z in sorted({int(r["z"]) for r in ok}):
        sel = [r for r in ok if int(r["z"]) == z]
        ax.scatter([r["total_pred"] for r in sel], [r["total"] for r in sel], s=14, label=f"z={z}")
    if ok:
        lo = min(min(r["total"], r["total_pred"]) for r in ok)
        hi = max(max(r["total"], r["total_pred"]) for r in ok)
        if lo > 0:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax.set_xlabel("predicted last-layer MSE")
    ax.set_ylabel("measured last-layer MSE")
    ax.set_title("circuits in superposition: measured vs predicted MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(rows: list[dict]) -> dict:
    """The standard figure: ``{"circuits_error_vs_theory": Figure}`` (empty without successful rows)."""
    if not any(r.get("total") is not None and r.get("total_pred") is not None for r in rows):
        return {}
    return {"circuits_error_vs_theory": plot_error_vs_theory(rows)}


EXPERIMENT = Experiment(
    name="circuits",
    run=run,
    per_instance=frozenset(),
    defaults=DEFAULTS,
    required=("T", "M"),
    plot=plot,
    doc=__doc__,
    params=PARAMS,
)
