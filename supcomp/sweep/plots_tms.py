"""The standard TMS figures from sweep rows: the n=2, m=1 phase diagram, and dimensions per feature
against 1/density. One figure per setting (rows that agree on everything but importance, density, seed).

Each plot function takes the rows (dicts, as :func:`supcomp.sweep.read_results` returns them) and an
optional ``ax=``, draws into it (or a new figure) and returns the matplotlib Figure; nothing is saved
here (:func:`supcomp.sweep.plot_results` saves through :func:`supcomp.utils.figures.save_figure`)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ..tms.analysis import PHASES, phase_analytic
from ..utils.figures import new_figure
from ..utils.threads import threads

_SETTING = (
    "n_features",
    "n_hidden",
    "kind",
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "backend",
    "correlated_pairs",
    "anticorrelated_pairs",
    "grid",
    "supcomp_version",
)
_COLORS = ("#d9d9d9", "#4c72b0", "#dd8452", "#8c8c8c")


def _groups(rows):
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in _SETTING), []).append(r)
    return list(out.values())


def _edges(v):
    lv = np.log10(np.asarray(v, dtype=float))
    d = np.diff(lv) if len(lv) > 1 else np.array([0.2])
    return 10 ** np.concatenate([[lv[0] - d[0] / 2], lv[:-1] + d / 2, [lv[-1] + d[-1] / 2]])


__all__ = ["plot_phase", "plot_dimensionality", "tms_figures"]


def _setting(r) -> str:
    return (
        f"n={r['n_features']}, m={r['n_hidden']}, {r['kind']}; {r['steps']} steps, batch {r['batch_size']}, "
        f"lr {r['lr']:g}"
    )


def _cells(rows):
    rel = sorted({r["importance"] * r["importance_decay"] for r in rows})
    dens = sorted({r["density"] for r in rows}, reverse=True)
    best = {}
    for r in rows:
        c = (r["importance"] * r["importance_decay"], r["density"])
        if c not in best or r["exact_loss"] < best[c]["exact_loss"]:
            best[c] = r
    grid = np.full((len(rel), len(dens)), np.nan)
    for (ri, di), r in best.items():
        grid[rel.index(ri), dens.index(di)] = PHASES.index(r["phase"])
    return rel, dens, grid


def _analytic(rel, dens):
    """The analytic phase on a fine grid (each point optimises the antipodal solution: seconds on one thread)
    and the margin whose zero is the superposition boundary."""
    F = min(25, 4 * max(len(rel), len(dens)) + 1)
    fr = torch.logspace(float(np.log10(min(rel))) - 0.1, float(np.log10(max(rel))) + 0.1, F, dtype=torch.float64)
    fd = torch.logspace(float(np.log10(max(dens))) + 0.05, float(np.log10(min(dens))) - 0.1, F, dtype=torch.float64)
    with threads(1):
        fine, fc = phase_analytic(fr[:, None], fd[None, :])
    margin = (torch.minimum(fc["[1,0]"], fc["[0,1]"]) - fc["[1,-1]"]).numpy()
    return fr.numpy(), fd.numpy(), fine.numpy(), margin


def plot_phase(rows, ax=None):
    """The n=2, m=1 phase diagram from TMS sweep rows (with ``phase`` and ``exact_loss``).

    Each cell (relative importance × density) shows the phase of its lowest-exact-loss seed; the black
    line is the analytic boundary of the superposition phase. ``ax``: None (a new figure with two
    panels: trained, analytic), one Axes (the trained panel only) or a pair of Axes. Returns the Figure.
    """
    rel, dens, grid = _cells(rows)
    fr, fd, fine, margin = _analytic(rel, dens)
    if ax is None:
        fig, axes = new_figure(1, 2, figsize=(11, 4.6))
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        fig = axes[0].figure
    cmap = ListedColormap(_COLORS)
    seeds = len({r["seed"] for r in rows})
    panels = [(dens, rel, grid, f"trained: phase of the lowest-loss of {seeds} seed(s)")]
    panels.append((fd, fr, fine, "analytic phase"))
    for a, (xs, ys, g, title) in zip(axes, panels):
        a.pcolormesh(_edges(xs), _edges(ys), np.ma.masked_invalid(g), cmap=cmap, vmin=-0.5, vmax=3.5, shading="flat")
        a.contour(fd, fr, margin, levels=[0.0], colors="k", linewidths=1.0)
        a.set_xscale("log")
        a.set_yscale("log")
        a.invert_xaxis()
        a.set_xlabel("feature density 1 - S")
        a.set_ylabel("relative importance of the extra feature")
        a.set_title(title, fontsize=9)
    handles = [Patch(color=c, label=lab) for c, lab in zip(_COLORS, PHASES)]
    if ax is None:
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
        fig.suptitle("TMS phase by relative importance and density: " + _setting(rows[0]), fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    else:
        axes[0].legend(handles=handles, fontsize=7, loc="best")
    return fig


def plot_dimensionality(rows, ax=None):
    """Dimensions per feature m/‖W‖_F² against 1/(1-S) from TMS sweep rows: one line per importance
    profile (mean over seeds, seeds as dots), with the 1/2 and m/n reference lines. Returns the Figure."""
    own = ax is None
    if own:
        fig, ax = new_figure(figsize=(6.5, 4.6))
    else:
        fig = ax.figure
    profiles = sorted({(r["importance"], r["importance_decay"]) for r in rows})
    for k, prof in enumerate(profiles):
        rs = [r for r in rows if (r["importance"], r["importance_decay"]) == prof]
        dens = sorted({r["density"] for r in rs}, reverse=True)
        x = [1 / d for d in dens]
        y = [np.mean([r["dims_per_feature"] for r in rs if r["density"] == d]) for d in dens]
        lab = f"importance {prof[0]:.3g}, decay {prof[1]:.3g}" if len(profiles) > 1 else None
        ax.plot(x, y, "o-", color=f"C{k % 10}", label=lab, ms=4)
        ax.scatter(
            [1 / r["density"] for r in rs],
            [r["dims_per_feature"] for r in rs],
            s=6,
            alpha=0.4,
            color=f"C{k % 10}",
            lw=0,
        )
    n, m = rows[0]["n_features"], rows[0]["n_hidden"]
    ax.axhline(0.5, color="C3", ls="--", lw=1, label="1/2")
    ax.axhline(m / n, color="0.6", ls="-.", lw=1, label=f"m/n = {m / n:.3f}")
    ax.axhline(1, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)   (inverse feature density)")
    ax.set_ylabel("dimensions per feature  m / ||W||_F^2")
    ax.set_title("TMS dimensions per feature by density\n" + _setting(rows[0]), fontsize=9)
    if own and len(profiles) > 2:  # many lines: the legend beside the axes, off the data
        fig.set_size_inches(8.5, 4.6)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def tms_figures(rows) -> dict:
    """Every figure the rows support, ``{name: Figure}``: ``tms_phase`` for n=2, m=1 ReLU-output settings
    with at least two importances and two densities, ``tms_dimensionality`` for settings with at least two
    densities (names get ``_<j>`` when the rows hold several settings)."""
    figs = {}
    groups = _groups(rows)
    for j, g in enumerate(groups):
        tag = f"_{j}" if len(groups) > 1 else ""
        r0 = g[0]
        n_rel = len({r["importance"] * r["importance_decay"] for r in g})
        n_den = len({r["density"] for r in g})
        if r0.get("phase") is not None and n_rel >= 2 and n_den >= 2:
            figs[f"tms_phase{tag}"] = plot_phase(g)
        if n_den >= 2:
            figs[f"tms_dimensionality{tag}"] = plot_dimensionality(g)
    return figs
