"""Figures of the TMS reproductions (:mod:`supcomp.studies.tms`), one function per figure.

Each takes the result dict its experiment returns (``supcomp.studies.tms.intro(...)`` for
:func:`plot_intro`, and so on), draws into ``fig=`` (an empty Figure or SubFigure, so a plot can sit
next to the caller's own axes) or into a new constrained-layout figure on a private Agg canvas
(:func:`supcomp.utils.figures.new_figure`: matplotlib's global backend is left alone), and returns the
matplotlib Figure; :func:`supcomp.utils.figures.save_figure` writes it (PNG, PDF or SVG). Weights follow
the library's convention: ``W [n, m]``, row i = feature i's direction, so the paper's ``WᵀW`` (its W is
m x n) is ``W @ W.T`` here. Tensors and numpy arrays are both accepted.
"""

from __future__ import annotations

import numpy as np
import torch

from ...tms.analysis import D_LINES
from ...utils.figures import check_data, container_for, panels_for, root_figure

__all__ = [
    "plot_intro",
    "plot_dimensionality",
    "plot_phase",
    "plot_correlated",
    "plot_dynamics",
    "plot_cross_entropy",
]

_PHASE_COLORS = ("#bdbdbd", "#4575b4", "#d73027", "#fee090")  # not learned, dedicated, superposition, other
_PHASE_NAMES = ("extra feature not learned", "extra feature gets the dimension", "superposition (antipodal)", "other")


def _np(x):
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def _directions(ax, W, colors, labels=None, lim=None, title=None):
    """2-D feature directions as segments from the origin; features at (nearly) one point share a label."""
    from matplotlib.patches import Circle

    W = _np(W)
    r = max(1.0, float(np.abs(W).max())) * 1.15 if lim is None else lim
    ax.add_patch(Circle((0, 0), 1, fill=False, ls=":", color="0.6"))
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    for i, (x, y) in enumerate(W):
        ax.plot([0, x], [0, y], "-", color=colors[i], lw=2)
        ax.plot([x], [y], "o", color=colors[i], ms=5)
    if labels is not None:
        groups = []  # [(x, y, [labels])]: points closer than 0.12 r share one label
        for i, (x, y) in enumerate(W):
            if x * x + y * y <= 0.01:
                continue  # not learned: no label at the origin
            for g in groups:
                if (g[0] - x) ** 2 + (g[1] - y) ** 2 < (0.12 * r) ** 2:
                    g[2].append(labels[i])
                    break
            else:
                groups.append((x, y, [labels[i]]))
        for x, y, labs in groups:
            u = np.array([x, y]) / max(np.hypot(x, y), 1e-12)  # radially outward, away from the segments
            ax.annotate(
                ",".join(labs),
                (x, y),
                textcoords="offset points",
                xytext=tuple(5 * u),
                fontsize=7,
                ha="left" if u[0] >= 0 else "right",
                va="bottom" if u[1] >= 0 else "top",
            )
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_intro(res: dict, *, fig=None):
    """Per density: the 2-D feature directions (colour = importance) and the matrix WᵀW next to the bias.

    Args:
        res: the dict of :func:`supcomp.studies.tms.intro`: ``W [P, n, 2]``, ``b [P, n]``,
            ``densities [P]``, ``importance [n]``, ``D [P, n]`` (feature dimensionalities), ``loss [P]``,
            ``restarts``, ``steps`` (tensors or arrays).
        fig: an empty Figure or SubFigure to draw into (``None``: a new figure, 2.1 in per density).

    Returns:
        The matplotlib Figure (the root figure when ``fig`` is a SubFigure).

    Raises:
        KeyError: ``res`` lacks a key above. ValueError: ``W`` is not ``[P, n, 2]``.
        TypeError / ValueError: ``fig`` is not an empty Figure or SubFigure.
    """
    import matplotlib

    check_data(res, "res", ("W", "b", "densities", "importance", "D", "loss", "restarts", "steps"))
    W, b, dens = _np(res["W"]), _np(res["b"]), _np(res["densities"])
    if W.ndim != 3 or W.shape[-1] != 2:
        raise ValueError(f"res['W']: expected [P, n, 2] (2 hidden dimensions), got {list(W.shape)}")
    P, n, m = W.shape
    imp = _np(res["importance"])
    cmap = matplotlib.colormaps["viridis"]
    colors = [cmap(0.9 * (1 - (v - imp.min()) / max(1e-12, imp.max() - imp.min()))) for v in imp]
    box, axes = panels_for(fig, 2, P, figsize=(2.1 * P + 1.2, 5.4))
    lim = max(1.0, float(np.abs(W).max())) * 1.15
    for k in range(P):
        D = _np(res["D"][k])
        dstar = m / max(float((W[k] ** 2).sum()), 1e-9)
        _directions(
            axes[0, k],
            W[k],
            colors,
            labels=[str(i) for i in range(n)],
            lim=lim,
            title=f"1-S = {dens[k]:.3f}\nloss {float(_np(res['loss'])[k]):.4f}\nD* = {dstar:.2f}",
        )
        axes[0, k].set_xlabel("D_i:\n" + " ".join(f"{d:.2f}" for d in D), fontsize=6)
        G = np.concatenate([W[k] @ W[k].T, b[k][:, None]], 1)  # WᵀW (paper) | bias
        im = axes[1, k].imshow(G, cmap="RdBu", vmin=-1.3, vmax=1.3)
        axes[1, k].axvline(n - 0.5, color="k", lw=1)
        step = max(1, n // 8)  # at most ~8 tick labels per axis
        axes[1, k].set_xticks(list(range(0, n, step)) + [n], [str(i) for i in range(0, n, step)] + ["b"], fontsize=6)
        axes[1, k].set_yticks(range(0, n, step), [str(i) for i in range(0, n, step)], fontsize=6)
    axes[1, 0].set_ylabel("WᵀW | b", fontsize=9)
    axes[0, 0].set_ylabel("feature directions\n(colour: importance)", fontsize=9)
    box.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01)
    box.suptitle(
        f"Toy model, n={n} features, m={m} hidden, ReLU output: feature directions and WᵀW | b per density\n"
        f"(best of {res['restarts']} restarts, {res['steps']} steps)",
        fontsize=10,
    )
    return root_figure(box)


def _d_lines(ax, labels=True):
    """The dimensionality lines of :data:`supcomp.tms.analysis.D_LINES`, labelled right of the axes (two
    staggered columns, so the labels of close lines such as 2/5 and 3/8 never overlap)."""
    for j, (v, lab) in enumerate(sorted(D_LINES, key=lambda vl: -vl[0])):
        ax.axhline(v, color="0.5", lw=0.7, ls="--", zorder=0)
        if labels:
            ax.annotate(
                lab.split()[0],
                (1, v),
                xycoords=("axes fraction", "data"),
                xytext=(3 + 16 * (j % 2), 0),
                textcoords="offset points",
                fontsize=7,
                va="center",
                color="0.3",
            )


def plot_dimensionality(res: dict, *, fig=None):
    """(a) dimensions per feature m / ||W||_F^2 against 1/(1-S); (b) each learned feature's D_i against 1/(1-S).

    Args:
        res: the dict of :func:`supcomp.studies.tms.dimensionality`: ``densities [P]``,
            ``dims_per_feature [P]``, ``D [P, n]``, ``norms [P, n]``, ``n_features``, ``n_hidden``,
            ``steps``, ``batch_size``, ``lr``.
        fig: an empty Figure or SubFigure to draw into (``None``: a new 12 x 4.6 in figure).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``res`` lacks a key above. TypeError / ValueError: ``fig`` is not an empty figure.
    """
    keys = ("densities", "dims_per_feature", "D", "norms", "n_features", "n_hidden", "steps", "batch_size", "lr")
    check_data(res, "res", keys)
    dens, dpf = _np(res["densities"]), _np(res["dims_per_feature"])
    D, norms = _np(res["D"]), _np(res["norms"])
    n, m = res["n_features"], res["n_hidden"]
    x = 1 / dens
    box, ((a1, a2),) = panels_for(fig, 1, 2, figsize=(12, 4.6))
    a1.plot(x, dpf, "o-", color="C0", label="measured")
    a1.axhline(1, color="0.6", ls=":", lw=1)
    a1.axhline(0.5, color="C3", ls="--", lw=1, label="1/2 (antipodal pairs)")
    a1.axhline(m / n, color="0.6", ls="-.", lw=1, label=f"m/n = {m / n:.3f} (all features, tight)")
    a1.set_xscale("log")
    top = float(np.nanmax(dpf[np.isfinite(dpf)])) if np.isfinite(dpf).any() else 1.0
    a1.set_ylim(0, 1.05 * max(1.0, top))
    a1.set_xlabel("1 / (1 - S)   (inverse feature density)")
    a1.set_ylabel("dimensions per feature  m / ||W||_F^2")
    a1.set_title(f"n={n}, m={m}: dimensions per feature against sparsity", fontsize=10)
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
    a2.set_ylabel("feature dimensionality D_i")
    a2.set_title("D_i of the learned features (||W_i|| >= 0.5), dashed: 3/4 ... 3/8", fontsize=10)
    a2.grid(alpha=0.2, which="both")
    box.suptitle(f"Uniform importance ({res['steps']} steps, batch {res['batch_size']}, lr {res['lr']:g})", fontsize=10)
    return root_figure(box)


def _edges(v):
    """Cell edges (geometric midpoints) of a log-spaced grid of centres ``v``."""
    lv = np.log10(v)
    d = np.diff(lv) if len(lv) > 1 else np.array([0.2])
    return 10 ** np.concatenate([[lv[0] - d[0] / 2], lv[:-1] + d[: len(lv) - 1] / 2, [lv[-1] + d[-1] / 2]])


def plot_phase(res: dict, *, fig=None):
    """The n=2, m=1 phase diagram: trained (lowest-loss and majority model per point) next to the analytic one.

    Args:
        res: the dict of :func:`supcomp.studies.tms.phase`: ``importance [Gi]``, ``densities [Gd]``,
            ``best`` and ``majority [Gi, Gd]`` (phase indices 0..3 of
            :data:`supcomp.tms.analysis.PHASES`), ``fine_importance [F]``, ``fine_densities [F]``,
            ``fine_theory [F, F]``, ``fine_margin`` and ``fine_margin_b0 [F, F]`` (zero on the analytic
            boundaries), ``match`` (fraction), ``models_per_point``, ``steps``.
        fig: an empty Figure or SubFigure to draw into (``None``: a new 15 x 5.2 in figure).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``res`` lacks a key above. TypeError / ValueError: ``fig`` is not an empty figure.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    keys = ("importance", "densities", "best", "majority", "fine_importance", "fine_densities", "fine_theory")
    check_data(res, "res", keys + ("fine_margin", "fine_margin_b0", "match", "models_per_point", "steps"))
    cmap = ListedColormap(_PHASE_COLORS)
    rel, dens = _np(res["importance"]), _np(res["densities"])
    fr, fd = _np(res["fine_importance"]), _np(res["fine_densities"])
    box = container_for(fig, figsize=(15, 5.2))
    gs = box.add_gridspec(2, 3, height_ratios=(1, 0.08))
    axes = [box.add_subplot(gs[0, i]) for i in range(3)]
    for ax, grid, (xs, ys), title in (
        (axes[0], res["best"], (dens, rel), "trained: lowest-loss model per point"),
        (axes[1], res["majority"], (dens, rel), "trained: majority of the kept models (worst dropped)"),
        (axes[2], res["fine_theory"], (fd, fr), "analytic: best of W=[1,0], [0,1], [1,-1] (optimal b)"),
    ):
        order_x, order_y = np.argsort(xs), np.argsort(ys)  # pcolormesh wants increasing edges
        g = _np(grid)[np.ix_(order_y, order_x)]
        ax.pcolormesh(_edges(xs[order_x]), _edges(ys[order_y]), g, cmap=cmap, vmin=-0.5, vmax=3.5, shading="flat")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("feature density 1 - S")
        ax.set_ylabel("relative importance of the extra feature")
        ax.set_title(title, fontsize=9)
    for ax in axes:  # the analytic boundaries over every panel
        ax.contour(fd, fr, _np(res["fine_margin_b0"]), levels=[0.0], colors="k", linewidths=0.8, linestyles="--")
        ax.contour(fd, fr, _np(res["fine_margin"]), levels=[0.0], colors="k", linewidths=1.2)
    handles = [Patch(color=c, label=lab) for c, lab in zip(_PHASE_COLORS, _PHASE_NAMES)]
    handles += [
        Line2D([], [], color="k", lw=1.2, label="analytic boundary (optimal b, norms)"),
        Line2D([], [], color="k", lw=0.8, ls="--", label="analytic boundary (W=[1,-1], b=0)"),
    ]
    leg = box.add_subplot(gs[1, :])
    leg.axis("off")
    leg.legend(handles=handles, loc="center", ncol=3, fontsize=8, frameon=False)
    box.suptitle(
        f"n=2, m=1 phase diagram: trained ({res['models_per_point']} models per point, {res['steps']} steps) "
        f"and analytic; lowest-loss model in the analytic phase at {float(res['match']) * 100:.0f}% of points",
        fontsize=10,
    )
    return root_figure(box)


def plot_correlated(res: dict, *, fig=None):
    """2-D feature directions of the best model per density, for correlated (top) and anticorrelated pairs.

    Args:
        res: the dict of :func:`supcomp.studies.tms.correlated`: ``densities [P]`` and, under
            ``"correlated"`` and ``"anticorrelated"``, dicts with ``W [P, 4, 2]`` and
            ``cos_within [P, 2]`` (cosine of the pair members (a0, a1) and (b0, b1)).
        fig: an empty Figure or SubFigure to draw into (``None``: a new figure, 2.8 in per density).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``res`` lacks a key above. TypeError / ValueError: ``fig`` is not an empty figure.
    """
    check_data(res, "res", ("densities", "correlated", "anticorrelated"))
    for name in ("correlated", "anticorrelated"):
        check_data(res[name], f"res[{name!r}]", ("W", "cos_within"))
    dens = _np(res["densities"])
    P = len(dens)
    box, axes = panels_for(fig, 2, P, figsize=(2.6 * P + 0.6, 6.0))
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
                title=f"{name}\n1-S={dens[k]:.3f}\ncos within pairs {cw[0]:.2f}, {cw[1]:.2f}",
            )
    box.suptitle(
        "n=4, m=2: feature directions of the best model per density\n"
        "pairs (a0, a1) blue and (b0, b1) orange; correlated pairs (top), anticorrelated pairs (bottom)",
        fontsize=10,
    )
    return root_figure(box)


def plot_dynamics(res: dict, *, fig=None):
    """Loss and every feature's D_i over training, against log steps (left) and linear steps (right).

    Args:
        res: the dict of :func:`supcomp.studies.tms.dynamics`: ``steps_list [T]`` (snapshot steps),
            ``D [T, n]`` and ``norms [T, n]`` per snapshot, ``loss_history [steps]``, ``n_features``,
            ``n_hidden``, ``density``, ``batch_size``, ``lr``.
        fig: an empty Figure or SubFigure to draw into (``None``: a new 14 x 7.5 in figure).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``res`` lacks a key above. ValueError: ``loss_history`` is empty.
        TypeError / ValueError: ``fig`` is not an empty figure.
    """
    import matplotlib

    keys = ("steps_list", "D", "norms", "loss_history", "n_features", "n_hidden", "density", "batch_size", "lr")
    check_data(res, "res", keys)
    st = _np(res["steps_list"])
    D, norms = _np(res["D"]), _np(res["norms"])
    loss = _np(res["loss_history"]).reshape(-1)
    if loss.size == 0:
        raise ValueError("res['loss_history']: expected at least one step's loss, got none")
    box, axes = panels_for(fig, 2, 2, figsize=(14, 7.5), sharex="col", gridspec_kw=dict(height_ratios=(1, 2.3)))
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
    box.suptitle(
        f"Learning dynamics: n={res['n_features']}, m={res['n_hidden']}, 1-S={res['density']:g}, "
        f"batch {res['batch_size']}, lr {res['lr']:g}: every feature's D_i during one run",
        fontsize=10,
    )
    return root_figure(box)


def plot_cross_entropy(res: dict, *, fig=None):
    """One neuron, four tokens: binary-code losses (analytic, trained), free-neuron losses, best activations.

    Args:
        res: the dict of :func:`supcomp.studies.tms.cross_entropy`: ``analytic`` ({k: {"ce", "mse"}}
            for k = 0..4), ``binary`` ({"ce", "mse"} -> ``[5]`` trained losses per k), and under ``"ce"``
            and ``"mse"`` dicts with ``losses [R]``, ``activations [R, 4]``, ``codes`` (R strings),
            ``best`` (index of the best restart).
        fig: an empty Figure or SubFigure to draw into (``None``: a new 15 x 4.6 in figure).

    Returns:
        The matplotlib Figure.

    Raises:
        KeyError: ``res`` lacks a key above. TypeError / ValueError: ``fig`` is not an empty figure.
    """
    check_data(res, "res", ("analytic", "binary", "ce", "mse"))
    for name in ("ce", "mse"):
        check_data(res[name], f"res[{name!r}]", ("losses", "activations", "codes", "best"))
    an = res["analytic"]
    box, ((a0, a1, a2),) = panels_for(fig, 1, 3, figsize=(15, 4.6))
    ks = np.arange(5)
    for j, name in enumerate(("ce", "mse")):
        a0.plot(ks, [an[k][name] for k in ks], "-", color=f"C{j}", lw=1, label=f"{name.upper()} analytic")
        a0.plot(ks, _np(res["binary"][name]), "o", color=f"C{j}", label=f"{name.upper()} trained read-out")
    a0.set_xticks(ks)
    a0.set_xlabel("k: tokens the binary neuron fires on")
    a0.set_ylabel("loss")
    a0.set_title("binary neuron: loss against k", fontsize=10)
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
    refs = [
        (-0.35, 0.35, an[1]["ce"], "C2", "monosemantic code: (3/4) ln 3"),
        (-0.35, 0.35, an[2]["ce"], "C3", "polysemantic code: ln 2"),
        (0.65, 1.35, an[1]["mse"], "C4", "any binary code: squared error 1/2"),
    ]
    for x0, x1, y, c, lab in refs:
        a1.hlines([y], x0, x1, colors=[c], linestyles="--", label=lab)
    a1.set_xticks([0, 1], ["cross-entropy", "squared error"])
    a1.set_xlim(-0.5, 1.5)
    a1.set_ylabel("final loss")
    a1.set_title("free neuron (any levels): trained losses", fontsize=10)
    a1.legend(fontsize=7)
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
            label=f"{name.upper()} best restart (fires on {r['codes'][r['best']] or '-'})",
        )
    a2.set_xticks(range(4), list("ABCD"))
    a2.set_xlabel("token")
    a2.set_ylabel("neuron activation (relative to its max)")
    a2.set_ylim(0, 1.3)  # room for the legend above the bars
    a2.set_title("activations of the best restart per loss", fontsize=10)
    a2.legend(fontsize=8, loc="upper center", ncol=1)
    return root_figure(box)
