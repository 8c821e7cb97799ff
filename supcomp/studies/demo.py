"""``supcomp demo``: a short, real tour of superposition with the supcomp ops.

1. Read-in / read-out: random sparse features (n = 1024, each on with
   probability p, values uniform on [0, 1]) are written into a d-dimensional
   superposition with random unit directions (``sparse_encode``) and read back
   with ReLU filtering (``relu_readout``), for several widths d and densities
   p. The table gives the interference that inactive features see (measured,
   and the random-direction prediction n*p*E[x^2]/d = n*p/(3d)), the
   reconstruction error without a bias and with the best negative (filtering)
   bias, and how many active features the top-k read-out
   (``relu_readout_topk``) recovers.
2. "Toy Models of Superposition" (Elhage et al. 2022): the intro experiment
   (dense -> 2 orthogonal features, sparse -> pentagon) and a small
   dimensionality sweep, trained with the fused trainer (``supcomp.tms``).
3. Circuits in superposition (Bushnaq & Mendel 2024; the construction of
   Linsefors & Bushnaq 2025, "Circuits in Superposition 2"): measured against
   predicted error of rotation circuits.
4. Compressed computation (Braun et al. 2025) against its mixing-matrix controls.
5. U-AND of "Mathematical Models of Computation in Superposition" (Hänni,
   Mendel & Vaintrob 2024): measured against theoretical error.
6. Benchmark ratios against the strongest torch peers at demo sizes.

Plots go to ``./supcomp-report/``.
"""

from __future__ import annotations

import os
import time

import torch

from .. import __version__
from ..ops import dispatch, relu_readout, relu_readout_topk, sparse_encode
from ..sparse import padded_to_dense, random_sparse
from ..utils.figures import check_data, panels_for, root_figure, save_figure
from ..utils.progress import progress_bar
from .quick_bench import format_ratios, quick_ratios

__all__ = ["superposition_table", "format_table", "plot_superposition", "run"]

WIDTHS = (32, 64, 128, 256)
DENSITIES = (0.002, 0.01, 0.05)
BIASES = tuple(-0.05 * i for i in range(0, 13))


def superposition_table(n=1024, batch=2048, widths=WIDTHS, densities=DENSITIES, seed=0, progress=True):
    """Measure read-in / read-out error against width and density. Returns a list of row dicts."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    with progress_bar(total=len(widths) * len(densities), desc="superposition sweep", enabled=progress) as bar:
        for p in densities:
            idx, val = random_sparse(batch, n, p, generator=g)
            x = padded_to_dense(idx, val, n)
            active = x > 0
            for d in widths:
                W = torch.randn(n, d, generator=g)
                W /= W.norm(dim=-1, keepdim=True)
                h = sparse_encode(idx, val, W)
                pre = h @ W.T
                # interference seen by inactive features: (W_j . h)^2 with x_j = 0
                interf = (pre[~active] ** 2).mean().item()
                mse = {}
                for bias in BIASES:
                    y = relu_readout(h, W, torch.full((n,), bias))
                    mse[bias] = ((y - x) ** 2).mean().item()
                best = min(mse, key=mse.get)
                k = max(1, int(active.sum(-1).max()))
                ids, _ = relu_readout_topk(h, W, torch.full((n,), best), k)
                hit = torch.zeros_like(active)
                hit.scatter_(-1, ids.clamp(min=0), ids >= 0)
                recall = ((hit & active).sum() / active.sum().clamp(min=1)).item()
                rows.append(
                    dict(
                        n=n,
                        d=d,
                        p=p,
                        active=active.sum(-1).float().mean().item(),
                        interference=interf,
                        theory=n * p / (3 * d),
                        mse_nobias=mse[0.0],
                        mse_best=mse[best],
                        best_bias=best,
                        recall=recall,
                    )
                )
                bar.update(1)
    return rows


def format_table(rows):
    """The rows of :func:`superposition_table` as a text table: per width d and density p, the active
    features per row, the measured and predicted interference, the read-out MSE with no bias and with the
    best bias, and the top-k recall."""
    head = (
        f"{'d':>5}{'p':>8}{'active/row':>12}{'interf.':>10}{'theory':>10}{'MSE b=0':>11}{'MSE best b':>12}"
        f"{'best b':>8}{'top-k recall':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['d']:>5}{r['p']:>8.3f}{r['active']:>12.2f}{r['interference']:>10.4f}{r['theory']:>10.4f}"
            f"{r['mse_nobias']:>11.5f}{r['mse_best']:>12.5f}{r['best_bias']:>8.2f}{r['recall']:>14.3f}"
        )
    return "\n".join(lines)


def plot_superposition(rows: list, *, fig=None):
    """Reconstruction error and interference against width, one colour per density.

    Args:
        rows: as :func:`superposition_table` returns them: dicts with ``n`` (features), ``d`` (width),
            ``p`` (density), ``mse_best``, ``mse_nobias``, ``interference``, ``theory`` (floats).
        fig: an empty Figure or SubFigure to draw into (``None``: a new 11 x 4.4 in figure).

    Returns:
        The matplotlib Figure (saved by :func:`run` with :func:`supcomp.utils.figures.save_figure`).

    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks a key above.
        TypeError / ValueError: ``fig`` is not an empty figure.
    """
    from matplotlib.ticker import NullFormatter

    check_data(rows, "rows")
    box, ((a1, a2),) = panels_for(fig, 1, 2, figsize=(11, 4.4))
    for i, p in enumerate(sorted({r["p"] for r in rows})):
        rs = [r for r in rows if r["p"] == p]
        ds = [r["d"] for r in rs]
        c = f"C{i}"
        a1.plot(ds, [r["mse_best"] for r in rs], "o-", color=c, label=f"p={p}: best negative bias")
        a1.plot(ds, [r["mse_nobias"] for r in rs], "x--", color=c, label=f"p={p}: no bias")
        a2.plot(ds, [r["interference"] for r in rs], "o-", color=c, label=f"p={p}: measured")
        a2.plot(ds, [r["theory"] for r in rs], ":", color=c, label=f"p={p}: n p / (3d)")
    widths = sorted({r["d"] for r in rows})
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xticks(widths, [str(d) for d in widths])  # the measured widths, plainly
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_yscale("log")
        a.set_xlabel("width d (neurons)")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    ns = sorted({r["n"] for r in rows})
    a1.set_ylabel("reconstruction MSE per feature")
    a1.set_title(f"ReLU read-out of n={'/'.join(map(str, ns))} sparse features", fontsize=10)
    a2.set_ylabel("mean (W_j . h)^2 over inactive j")
    a2.set_title("interference on inactive features", fontsize=10)
    return root_figure(box)


def run(out_dir="supcomp-report", progress=True, bench=True):
    """``supcomp demo``: the short tour. Prints the versions and backends, then one section per family
    (superposition of sparse features, toy models, circuits, compressed computation, U-AND) and, with
    ``bench``, the quick benchmark ratios; figures go to ``out_dir``. Returns the rows of
    :func:`superposition_table`."""
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    print(
        f"supcomp {__version__} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"CPU backend: {dispatch.backend_name(torch.device('cpu'), torch.float32)} | "
        f"Triton available: {dispatch.triton_available()} | CUDA: {torch.cuda.is_available()}"
    )
    print("\n== 1. Sparse features in superposition: read-in, ReLU read-out, interference ==")
    rows = superposition_table(progress=progress)
    print(format_table(rows))
    path = save_figure(plot_superposition(rows), os.path.join(out_dir, "superposition.png"), dpi=120)
    print(f"plot: {path}")
    # Each numbered heading is printed with its finished section (a heading printed before the section
    # would share its line with the section's progress bars, which clear that line when they end).
    from .tms.experiments import demo_section

    text = demo_section(out_dir=os.path.join(out_dir, "tms"), progress=progress)
    print("\n== 2. " + text.replace("== Toy Models", "Toy Models", 1))
    from .circuits import demo_section as circuits_section

    print("\n== 3. " + circuits_section(progress=progress))
    print("\n== 4. Compressed computation (Braun et al. 2025) and its mixing-matrix controls (Bhagat et al. 2025) ==")
    from .cc import demo_section as cc_section

    print(cc_section(progress=progress))
    from .uand import demo_section as uand_section

    print("\n== 5. " + uand_section(progress=progress))
    if bench:
        print("\n== 6. Benchmark ratios (peer time / supcomp time; > 1 means supcomp is faster) ==")
        with progress_bar(total=4, desc="benchmarks", enabled=progress) as bar:
            ratios = quick_ratios(progress=bar)
        print(format_ratios(ratios))  # after the bar is closed and cleared
        print("Full suite with GB/s, GFLOP/s and peak memory: `make bench` -> benchmarks/RESULTS.md")
    print(f"\ndone in {time.time() - t0:.1f} s")
    return rows
