"""How sparsity and width trade off when the truth is known: train SAEs over a grid of k and dictionary
width on one ground-truth world and grade each against the world's features.

:func:`train_and_grade` is one point (a TopK or BatchTopK SAE of width ``n`` and sparsity ``k``, trained
then graded by :func:`supcomp.sae.grade`); :func:`k_width_sweep` runs a grid of them serially (the sweep
adapter :mod:`supcomp.sweep.sae` runs the same points through the sweep engine, locally or on Ray).
:func:`plot_k_width` draws recovered fraction and FVU against the measured L0, one line per width: the
Pareto picture of "Scaling and evaluating sparse autoencoders" (Gao et al. 2024), here with the
recovered fraction, which only a world of known features can give. ``WORLD_DEFAULTS``: the small
world used when none is given; ``METRICS``: the graded scores each point reports.
"""

from __future__ import annotations

import math

from ..sae import SAEConfig, World, WorldConfig, grade, train_sae
from ..utils.figures import axes_for, root_figure

__all__ = ["WORLD_DEFAULTS", "train_and_grade", "k_width_sweep", "plot_k_width", "METRICS"]

#: A small world for quick sweeps (a test runs four points of it in seconds).
WORLD_DEFAULTS = dict(n_features=64, d=24, zipf_exponent=0.5, p_max=0.15, p_min=0.02, seed=0)
#: The graded scores each point reports (besides ``train_fvu``).
METRICS = (
    "recovered_fraction",
    "fvu",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "mmcs_decoder_to_true",
    "mmcs_true_to_decoder",
    "mean_precision",
    "mean_recall",
)


def train_and_grade(
    world: WorldConfig | World,
    n: int,
    k: int,
    kind: str = "topk",
    steps: int = 300,
    batch_size: int = 256,
    lr: float = 3e-3,
    k_aux: int = 32,
    seed: int = 0,
    threshold: float = 0.9,
    grade_batches: int = 2,
    grade_batch_size: int = 2048,
    return_sae: bool = False,
):
    """Train one SAE of width ``n`` and sparsity ``k`` on ``world`` and grade it.

    Args:
        world: a :class:`~supcomp.sae.WorldConfig` or a built :class:`~supcomp.sae.World`.
        kind: ``"topk"`` or ``"batchtopk"``.
        steps, batch_size, lr, k_aux, seed: the training run (Adam, AuxK with ``k_aux`` latents, dead
            after 4 batches without firing).
        threshold: the cosine above which a true feature counts as recovered.
        grade_batches, grade_batch_size: the fresh batches graded on.
        return_sae: also return the trained SAE.

    Returns:
        a dict of floats: :data:`METRICS` and ``train_fvu`` (the last logged training FVU); with
        ``return_sae``, ``(metrics, sae)``.

    Raises:
        ValueError: ``kind`` is not a sparse kind, ``k > n``, or a bad training argument.
    """
    if kind not in ("topk", "batchtopk"):
        raise ValueError(f"kind: expected 'topk' or 'batchtopk', got {kind!r}")
    w = world if isinstance(world, World) else World(world)
    config = SAEConfig(d=w.config.d, n=int(n), kind=kind, k=int(k), k_aux=int(k_aux), dead_tokens=4 * batch_size)
    sae = train_sae(
        w, config, steps=int(steps), batch_size=int(batch_size), lr=float(lr), seed=int(seed), progress=False
    )
    g = grade(sae, w, batches=int(grade_batches), batch_size=int(grade_batch_size), threshold=float(threshold))
    summary = g.summary()
    out = {m: float(summary[m]) for m in METRICS}
    out["train_fvu"] = float(sae.history[-1][2]["fvu"])
    return (out, sae) if return_sae else out


def k_width_sweep(
    ks=(2, 4, 8), widths=(64, 128), world: WorldConfig | None = None, progress: bool = True, **kwargs
) -> list[dict]:
    """:func:`train_and_grade` on every (k, width) pair (k > width skipped); one row per point with
    ``k``, ``n`` and the metrics. ``world`` None: :data:`WORLD_DEFAULTS`; ``kwargs`` go to
    :func:`train_and_grade`."""
    from ..utils.progress import progress_bar

    w = World(world or WorldConfig(**WORLD_DEFAULTS))
    pairs = [(k, n) for n in widths for k in ks if k <= n]
    rows = []
    for k, n in progress_bar(pairs, desc="sae k x width", enabled=progress):
        rows.append({"k": k, "n": n, **train_and_grade(w, n, k, **kwargs)})
    return rows


def plot_k_width(rows: list[dict], *, ax=None):
    """Recovered fraction (left axis, solid) and FVU (right axis, dashed, log scale) against the measured
    L0, one colour per dictionary width ``n``, points along ``k``.

    Args:
        rows: dicts with the floats ``n``, ``l0``, ``recovered_fraction``, ``fvu`` (from
            :func:`k_width_sweep` or a sweep's results table; rows without them are skipped).
        ax: a matplotlib Axes to draw into (``None``: a new figure); a twin axis is added for the FVU.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no row has the needed values.
        TypeError: ``ax`` is not a matplotlib Axes.
    """
    ok = [
        r
        for r in rows
        if all(
            isinstance(r.get(c), (int, float)) and math.isfinite(r[c]) for c in ("n", "l0", "recovered_fraction", "fvu")
        )
    ]
    if not ok:
        raise ValueError("rows: no row has n, l0, recovered_fraction and fvu")
    ax = axes_for(ax, figsize=(6.0, 4.2))
    ax2 = ax.twinx()
    for i, n in enumerate(sorted({int(r["n"]) for r in ok})):
        sel = sorted((r for r in ok if int(r["n"]) == n), key=lambda r: r["l0"])
        c = f"C{i % 10}"
        ax.plot([r["l0"] for r in sel], [r["recovered_fraction"] for r in sel], "o-", color=c, label=f"n = {n}")
        ax2.plot([r["l0"] for r in sel], [max(r["fvu"], 1e-12) for r in sel], "s--", color=c, alpha=0.7)
    ax.set_xlabel("L0 (active latents per sample)")
    ax.set_ylabel("recovered fraction (solid)")
    ax.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("FVU (dashed)")
    ax2.set_yscale("log")
    ax.set_title("SAEs on a ground-truth world: recovery and FVU against L0")
    ax.legend(fontsize=8, loc="center right")
    return root_figure(ax)
