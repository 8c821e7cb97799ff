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

import os

from ..utils.figures import new_figure, save_figure
from .registry import Experiment

DEFAULTS = dict(S=5, L=2, z=2, kind="rotations", d=3, assignment="overlap1", n_samples=256, seed=0)


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


def plot(rows: list[dict], out_dir: str) -> list[str]:
    """Measured against predicted last-layer error, one point per configuration (log-log)."""
    ok = [r for r in rows if r.get("total") is not None and r.get("total_pred") is not None]
    if not ok:
        return []
    fig, ax = new_figure(figsize=(5, 4.5))
    zs = sorted({int(r["z"]) for r in ok})
    for z in zs:
        sel = [r for r in ok if int(r["z"]) == z]
        ax.scatter([r["total_pred"] for r in sel], [r["total"] for r in sel], s=14, label=f"z={z}")
    lo = min(min(r["total"], r["total_pred"]) for r in ok)
    hi = max(max(r["total"], r["total_pred"]) for r in ok)
    if lo > 0:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax.set_xlabel("predicted last-layer MSE")
    ax.set_ylabel("measured last-layer MSE")
    ax.set_title("circuits in superposition: error vs theory")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, os.path.join(out_dir, "circuits_error_vs_theory.png"), dpi=120)]


EXPERIMENT = Experiment(
    name="circuits", run=run, per_instance=frozenset(), defaults=DEFAULTS, required=("T", "M"), plot=plot, doc=__doc__
)
