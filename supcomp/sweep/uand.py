"""The ``uand`` sweep adapter: U-AND error against theory, one (m, d, p, s) configuration per point.

Parameters (``required``: m, d, p): ``m`` inputs, ``d`` neurons, ``p`` connection probability, ``s`` active
inputs (default 3), ``batch`` samples read at all pairs (32), ``extra_samples`` more read only at their own
both-on / one-on pairs (2048), ``seed`` (0). Nothing is packed (``per_instance`` is empty): each point
draws its own construction. Metrics (per case: ``both`` inputs on, ``one`` on, ``none`` on): the measured
``<case>_mean`` and ``<case>_max`` error with ``<case>_theory`` (exact mean, :func:`supcomp.uand.theory`)
and ``<case>_std_theory``, as in :func:`supcomp.studies.uand.error_table`.
"""

from __future__ import annotations

from ..utils.figures import new_figure
from .params import Param
from .registry import Experiment

__all__ = ["plot_error_vs_theory"]

DEFAULTS = dict(s=3, batch=32, extra_samples=2048, seed=0)
PARAMS = dict(
    m=Param("int", low=2, doc="inputs"),
    d=Param("int", low=1, doc="neurons"),
    p=Param("float", low=0, high=1, low_open=True, doc="connection probability"),
    s=Param("int", low=1, doc="active inputs"),
    batch=Param("int", low=1, doc="samples read at all pairs"),
    extra_samples=Param("int", low=0, doc="samples read at their own pairs"),
    seed=Param("int", low=0, high=2**63 - 1, doc="seed"),
)


def run(points: list[dict]) -> list[dict]:
    from ..studies.uand import error_table

    out = []
    for p in points:
        row = error_table(
            int(p["m"]),
            int(p["d"]),
            float(p["p"]),
            s_values=[int(p["s"])],
            batch=int(p["batch"]),
            seed=int(p["seed"]),
            progress=False,
            extra_samples=int(p["extra_samples"]),
        )[0]
        out.append({k: v for k, v in row.items() if k not in ("m", "d", "p", "s", "batch")})
    return out


def plot_error_vs_theory(rows: list[dict], ax=None):
    """Measured mean error against its theoretical mean from uand sweep rows, for each case (both inputs
    on, one on, none on), one point per configuration, with the line measured = theory. Returns the Figure."""
    ok = [r for r in rows if r.get("both_mean") is not None]
    if ax is None:
        fig, ax = new_figure(figsize=(5, 4.5))
    else:
        fig = ax.figure
    for case in ("both", "one", "none"):
        sel = [r for r in ok if r.get(f"{case}_theory") is not None]
        ax.scatter([r[f"{case}_theory"] for r in sel], [r[f"{case}_mean"] for r in sel], s=14, label=f"{case} on")
    vals = [
        v
        for r in ok
        for c in ("both", "one", "none")
        for v in (r.get(f"{c}_theory"), r.get(f"{c}_mean"))
        if v is not None
    ]
    if vals:
        ax.plot([min(vals), max(vals)], [min(vals), max(vals)], "k--", lw=1, label="measured = theory")
    ax.set_xlabel("theory: mean error")
    ax.set_ylabel("measured mean error")
    ax.set_title("U-AND: measured vs theoretical mean error")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(rows: list[dict]) -> dict:
    """The standard figure: ``{"uand_error_vs_theory": Figure}`` (empty without successful rows)."""
    if not any(r.get("both_mean") is not None for r in rows):
        return {}
    return {"uand_error_vs_theory": plot_error_vs_theory(rows)}


EXPERIMENT = Experiment(
    name="uand",
    run=run,
    per_instance=frozenset(),
    defaults=DEFAULTS,
    required=("m", "d", "p"),
    plot=plot,
    doc=__doc__,
    params=PARAMS,
)
