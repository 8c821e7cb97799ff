"""The ``uand`` sweep adapter: U-AND error against theory, one (m, d, p, s) configuration per point.

Parameters (``required``: m, d, p): ``m`` inputs, ``d`` neurons, ``p`` connection probability, ``s`` active
inputs (default 3), ``batch`` samples read at all pairs (32), ``extra_samples`` more read only at their own
both-on / one-on pairs (2048), ``seed`` (0). Nothing is packed (``per_instance`` is empty): each point
draws its own construction. Metrics (per case: ``both`` inputs on, ``one`` on, ``none`` on): the measured
``<case>_mean`` and ``<case>_max`` error with ``<case>_theory`` (exact mean, :func:`supcomp.uand.theory`)
and ``<case>_std_theory``, as in :func:`supcomp.studies.uand.error_table`.
"""

from __future__ import annotations

import os

from ..utils.figures import new_figure, save_figure
from .registry import Experiment

DEFAULTS = dict(s=3, batch=32, extra_samples=2048, seed=0)


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


def plot(rows: list[dict], out_dir: str) -> list[str]:
    """Measured mean error against theory for each case, one point per configuration."""
    ok = [r for r in rows if r.get("both_mean") is not None]
    if not ok:
        return []
    fig, ax = new_figure(figsize=(5, 4.5))
    for case in ("both", "one", "none"):
        xs = [r[f"{case}_theory"] for r in ok if r.get(f"{case}_theory") is not None]
        ys = [r[f"{case}_mean"] for r in ok if r.get(f"{case}_theory") is not None]
        ax.scatter(xs, ys, s=14, label=f"{case} on")
    vals = [
        v
        for r in ok
        for c in ("both", "one", "none")
        for v in (r.get(f"{c}_theory"), r.get(f"{c}_mean"))
        if v is not None
    ]
    lo, hi = min(vals), max(vals)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = theory")
    ax.set_xlabel("theory: mean error")
    ax.set_ylabel("measured mean error")
    ax.set_title("U-AND: error vs theory")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, os.path.join(out_dir, "uand_error_vs_theory.png"), dpi=120)]


EXPERIMENT = Experiment(
    name="uand", run=run, per_instance=frozenset(), defaults=DEFAULTS, required=("m", "d", "p"), plot=plot, doc=__doc__
)
