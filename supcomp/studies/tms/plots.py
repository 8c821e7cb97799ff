"""Figures of the TMS reproductions (:mod:`supcomp.studies.tms`), one function per figure.

Each takes the experiment's result dict and a path, writes a PNG (:func:`supcomp.utils.figures.save_figure`,
on a figure of :func:`supcomp.utils.figures.new_figure`: matplotlib's global backend is left alone) and
returns the path. Weights follow the library's convention: ``W [n, m]``, row i = feature i's direction,
so the paper's ``WᵀW`` (its W is m x n) is ``W @ W.T`` here.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch

from ...tms.analysis import D_LINES
from ...utils.figures import new_figure, save_figure

_PHASE_COLORS = ("#bdbdbd", "#4575b4", "#d73027", "#fee090")  # not learned, dedicated, superposition, other
_SAVE = dict(dpi=110, bbox_inches="tight")  # save_figure's options for every figure here


def _np(x):
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _directions(ax, W, colors, labels=None, lim=None, title=None):
    """2-D feature directions as segments from the origin."""
    W = _np(W)
    r = max(1.0, float(np.abs(W).max())) * 1.15 if lim is None else lim
    ax.add_patch(Circle((0, 0), 1, fill=False, ls=":", color="0.6"))
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    for i, (x, y) in enumerate(W):
        ax.plot([0, x], [0, y], "-", color=colors[i], lw=2)
        ax.plot([x], [y], "o", color=colors[i], ms=5)
        if labels is not None and (x * x + y * y) > 0.01:
            ax.annotate(labels[i], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_intro(res, path):
    """Per density: the 2-D feature directions (colour = importance) and the n x n matrix WᵀW with the bias."""
    W, b, dens = _np(res["W"]), _np(res["b"]), _np(res["densities"])
    P, n, _ = W.shape
    imp = _np(res["importance"])
    cmap = matplotlib.colormaps["viridis"]
    colors = [cmap(0.9 * (1 - (v - imp.min()) / max(1e-12, imp.max() - imp.min()))) for v in imp]
    fig, axes = new_figure(2, P, figsize=(2.1 * P, 4.6), squeeze=False)
    lim = max(1.0, float(np.abs(W).max())) * 1.15
    for k in range(P):
        D = _np(res["D"][k])
        dstar = W.shape[-1] / max(float((W[k] ** 2).sum()), 1e-9)
        _directions(
            axes[0, k],
            W[k],
            colors,
            labels=[str(i) for i in range(n)],
            lim=lim,
            title=f"1-S = {dens[k]:.3f}\nloss {float(res['loss'][k]):.4f}, D* = {dstar:.2f}",
        )
        axes[0, k].set_xlabel("D_i: " + " ".join(f"{d:.2f}" for d in D), fontsize=6)
        G = np.concatenate([W[k] @ W[k].T, b[k][:, None]], 1)  # WᵀW (paper) | bias
        im = axes[1, k].imshow(G, cmap="RdBu", vmin=-1.3, vmax=1.3)
        axes[1, k].axvline(n - 0.5, color="k", lw=1)
        axes[1, k].set_xticks(list(range(n)) + [n], [str(i) for i in range(n)] + ["b"], fontsize=6)
        axes[1, k].set_yticks(range(n), [str(i) for i in range(n)], fontsize=6)
    axes[1, 0].set_ylabel("WᵀW | b", fontsize=9)
    axes[0, 0].set_ylabel("feature directions\n(colour: importance 0.9^i)", fontsize=9)
    fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01)
    fig.suptitle(
        f"Toy model n=5 features, m=2 hidden, ReLU output: dense -> 2 orthogonal features, sparse -> "
        f"pentagon (best of {res['restarts']} restarts, {res['steps']} steps)",
        fontsize=10,
    )
    return save_figure(fig, str(path), **_SAVE)


def _d_lines(ax, labels=True):
    for v, lab in D_LINES:
        ax.axhline(v, color="0.5", lw=0.7, ls="--", zorder=0)
        if labels:
            ax.text(1.01, v, lab, transform=ax.get_yaxis_transform(), fontsize=7, va="center", color="0.3")


def plot_dimensionality(res, path):
    """(a) dimensions per feature D* = m/||W||_F^2 vs 1/(1-S); (b) each feature's D_i vs 1/(1-S)."""
    dens, dpf = _np(res["densities"]), _np(res["dims_per_feature"])
    D, norms = _np(res["D"]), _np(res["norms"])
    n, m = res["n_features"], res["n_hidden"]
    x = 1 / dens
    fig, (a1, a2) = new_figure(1, 2, figsize=(12.5, 4.6))
    a1.plot(x, dpf, "o-", color="C0")
    a1.axhline(1, color="0.6", ls=":", lw=1)
    a1.axhline(0.5, color="C3", ls="--", lw=1, label="1/2 (antipodal pairs)")
    a1.axhline(m / n, color="0.6", ls="-.", lw=1, label=f"m/n = {m / n:.3f} (all features, tight)")
    a1.set_xscale("log")
    a1.set_ylim(0, 1.05 * max(1.0, float(np.nanmax(dpf[np.isfinite(dpf)])) if np.isfinite(dpf).any() else 1))
    a1.set_xlabel("1 / (1 - S)   (inverse feature density)")
    a1.set_ylabel("dimensions per feature  m / ||W||_F^2")
    a1.set_title(f"n={n}, m={m}: dimensions per feature (sticky at 1/2)", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3, which="both")
    rng = np.random.default_rng(0)
    for k in range(len(x)):
        sel = norms[k] >= 0.5
        jit = np.exp(rng.uniform(-0.04, 0.04, sel.sum()))
        a2.scatter(x[k] * jit, D[k][sel], s=5, alpha=0.35, color="C0", lw=0)
    _d_lines(a2)
    a2.axhline(1, color="0.8", lw=0.7, ls=":")
    a2.set_xscale("log")
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("1 / (1 - S)")
    a2.set_ylabel("feature dimensionality D_i (learned features)")
    a2.set_title("feature dimensionalities cluster on 3/4, 2/3, 1/2, 2/5, 3/8", fontsize=10)
    a2.grid(alpha=0.2, which="both")
    fig.suptitle(
        f"Uniform superposition ({res['steps']} steps, batch {res['batch_size']}, lr {res['lr']:g})", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, str(path), **_SAVE)


def plot_phase(res, path):
    """Trained phase diagram (lowest-loss model per point) next to the analytic one."""
    cmap = ListedColormap(_PHASE_COLORS)
    rel, dens = _np(res["importance"]), _np(res["densities"])
    fr, fd = _np(res["fine_importance"]), _np(res["fine_densities"])

    def edges(v):
        lv = np.log10(v)
        d = np.diff(lv)
        e = np.concatenate([[lv[0] - d[0] / 2], lv[:-1] + d / 2, [lv[-1] + d[-1] / 2]])
        return 10**e

    fig, axes = new_figure(1, 3, figsize=(15, 4.6))
    for ax, grid, (xs, ys), title in (
        (axes[0], res["best"], (dens, rel), "trained: lowest-loss of the models per point"),
        (axes[1], res["majority"], (dens, rel), "trained: majority of the kept models (worst dropped)"),
        (axes[2], res["fine_theory"], (fd, fr), "analytic: best of W=[1,0], [0,1], [1,-1] (optimal b)"),
    ):
        ax.pcolormesh(edges(xs), edges(ys), _np(grid), cmap=cmap, vmin=-0.5, vmax=3.5, shading="flat")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("feature density 1 - S")
        ax.set_ylabel("relative importance of the extra feature")
        ax.set_title(title, fontsize=9)
    # analytic boundary with b = 0 antipode, over the analytic panel and the trained ones
    for ax in axes:
        ax.contour(fd, fr, _np(res["fine_margin_b0"]), levels=[0.0], colors="k", linewidths=0.8, linestyles="--")
        ax.contour(fd, fr, _np(res["fine_margin"]), levels=[0.0], colors="k", linewidths=1.2)
    handles = [
        Patch(color=c, label=l)
        for c, l in zip(
            _PHASE_COLORS,
            ("extra feature not learned", "extra feature gets the dimension", "superposition (antipodal)", "other"),
        )
    ]
    handles += [
        Line2D([], [], color="k", lw=1.2, label="analytic boundary (optimal b, norms)"),
        Line2D([], [], color="k", lw=0.8, ls="--", label="analytic boundary (W=[1,-1], b=0)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(
        f"n=2, m=1 phase diagram ({res['models_per_point']} models per point, {res['steps']} steps); "
        f"lowest-loss model agrees with the analytic phase at {res['match'] * 100:.0f}% of points",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, str(path), **_SAVE)


def plot_correlated(res, path):
    """2-D directions of the best model per density, for correlated and anticorrelated pairs."""
    dens = _np(res["densities"])
    P = len(dens)
    fig, axes = new_figure(2, P, figsize=(2.8 * P + 0.5, 5.8), squeeze=False)
    colors = ["C0", "C0", "C1", "C1"]
    for row, name in enumerate(("correlated", "anticorrelated")):
        r = res[name]
        for k in range(P):
            cw = _np(r["cos_within"][k])
            _directions(
                axes[row, k],
                r["W"][k],
                colors,
                labels=["a0", "a1", "b0", "b1"],
                title=f"{name}, 1-S={dens[k]:.3f}\ncos within pairs {cw[0]:.2f}, {cw[1]:.2f}",
            )
    fig.suptitle(
        "n=4, m=2: pairs (a0,a1) blue and (b0,b1) orange. Correlated members -> orthogonal, "
        "anticorrelated members -> antipodal",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, str(path), **_SAVE)


def plot_dynamics(res, path):
    """Loss and every feature's D_i over training, against log steps (left) and linear steps (right)."""
    st = np.asarray(res["steps_list"])
    D, norms = _np(res["D"]), _np(res["norms"])
    loss = _np(res["loss_history"])
    fig, axes = new_figure(2, 2, figsize=(15, 7.5), sharex="col", gridspec_kw=dict(height_ratios=(1, 2.3)))
    steps = np.arange(1, len(loss) + 1)
    w = max(1, len(loss) // 400)
    sm = np.convolve(loss, np.ones(w) / w, mode="valid")
    cmap = matplotlib.colormaps["tab20"]
    for col, scale in enumerate(("log", "linear")):
        a1, a2 = axes[0, col], axes[1, col]
        a1.plot(steps[w - 1 :], sm, color="C3", lw=1)
        a1.set_yscale("log")
        a1.grid(alpha=0.3, which="both")
        x = np.maximum(st, 1) if scale == "log" else st
        for i in range(D.shape[1]):
            Di = np.where(norms[:, i] >= 0.1, D[:, i], np.nan)
            a2.plot(x, Di, "-", lw=0.8, alpha=0.6, color=cmap(i % 20))
        _d_lines(a2, labels=col == 1)
        a2.axhline(1, color="0.5", lw=0.7, ls="--")
        a2.set_xscale(scale)
        a2.set_ylim(0, 1.05)
        a2.set_xlabel(f"training step ({scale} axis)")
        a2.grid(alpha=0.2, which="both")
    axes[0, 0].set_ylabel(f"training loss\n(running mean of {w})")
    axes[1, 0].set_ylabel("feature dimensionality D_i  (||W_i|| >= 0.1)")
    fig.suptitle(
        f"Learning dynamics: n={res['n_features']}, m={res['n_hidden']}, 1-S={res['density']:g}, "
        f"batch {res['batch_size']}, lr {res['lr']:g}: every feature's D_i during one run",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, str(path), **_SAVE)


def plot_cross_entropy(res, path):
    """Losses of the trained models against the analytic binary codes; the best neurons' activations."""
    an = res["analytic"]
    fig, (a0, a1, a2) = new_figure(1, 3, figsize=(16, 4.4))
    ks = np.arange(5)
    for j, name in enumerate(("ce", "mse")):
        a0.plot(ks, [an[k][name] for k in ks], "-", color=f"C{j}", lw=1, label=f"{name.upper()} analytic")
        a0.plot(ks, _np(res["binary"][name]), "o", color=f"C{j}", label=f"{name.upper()} trained read-out")
    a0.set_xticks(ks)
    a0.set_xlabel("k = tokens the binary neuron fires on (1: monosemantic, 2: polysemantic)")
    a0.set_ylabel("loss")
    a0.set_title("binary neuron: CE prefers k=2, squared error is flat", fontsize=10)
    a0.legend(fontsize=8)
    a0.grid(alpha=0.3)
    for j, name in enumerate(("ce", "mse")):
        L = _np(res[name]["losses"])
        a1.scatter(
            np.full(len(L), j) + np.random.default_rng(j).uniform(-0.12, 0.12, len(L)),
            L,
            s=12,
            alpha=0.6,
            color=f"C{j}",
            label=f"trained with {name.upper()} ({len(L)} restarts)",
        )
    a1.hlines([an[1]["ce"], an[2]["ce"]], -0.35, 0.35, colors=["C2", "C3"], linestyles="--")
    a1.text(0.37, an[1]["ce"], "monosemantic\n(3/4) ln 3", fontsize=7, va="center")
    a1.text(0.37, an[2]["ce"], "polysemantic\nln 2", fontsize=7, va="center")
    a1.hlines([0.5], 0.65, 1.35, colors=["C3"], linestyles="--")
    a1.text(1.37, 0.5, "any code: 1/2", fontsize=7, va="center")
    a1.set_xticks([0, 1], ["cross-entropy", "squared error"])
    a1.set_xlim(-0.5, 1.75)
    a1.set_ylabel("final loss")
    a1.set_title("free neuron (any levels): trained losses", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    width = 0.38
    for j, name in enumerate(("ce", "mse")):
        r = res[name]
        h = _np(r["activations"][r["best"]])
        a2.bar(
            np.arange(4) + (j - 0.5) * width,
            h / max(h.max(), 1e-12),
            width,
            color=f"C{j}",
            label=f"{name.upper()} best restart (code {r['codes'][r['best']] or '-'})",
        )
    a2.set_xticks(range(4), list("ABCD"))
    a2.set_ylabel("neuron activation (relative to its max)")
    a2.set_title("what the neuron fires on", fontsize=10)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, str(path), **_SAVE)
