"""Figures of ``supcomp uand`` (:mod:`supcomp.studies.uand`): measured errors beside the theory, capacity.

The construction is that of "Mathematical Models of Computation in Superposition" (Hänni, Mendel &
Vaintrob 2024). Each function takes the rows the matching measurement returns, draws into ``ax=`` /
``fig=`` or a new constrained-layout figure on a private Agg canvas, and returns the matplotlib Figure
(saved with :func:`supcomp.utils.figures.save_figure`).
"""

from __future__ import annotations

from ..utils.figures import axes_for, check_data, panels_for, root_figure

__all__ = ["plot_errors", "plot_capacity"]

_CASES = (("both", "C0"), ("one", "C1"), ("none", "C2"))


def plot_errors(rows: list, *, fig=None):
    """Measured mean and max error of the AND estimates against s beside the theory, one panel per (m, d, p).

    Args:
        rows: as :func:`supcomp.studies.uand.error_table` returns them: dicts with ``m``, ``d``, ``p``,
            ``s`` and, for each case ``both``, ``one``, ``none`` (inputs of the pair on), the floats
            ``<case>_mean``, ``<case>_max``, ``<case>_theory``.
        fig: an empty Figure or SubFigure to draw into (``None``: a new figure, 4.6 in per panel).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks a key above.
        TypeError / ValueError: ``fig`` is not an empty figure.
    """
    check_data(rows, "rows")
    cases = sorted({(r["m"], r["d"], r["p"]) for r in rows})
    box, axes = panels_for(fig, 1, len(cases), figsize=(4.6 * len(cases) + 2.2, 4.2), sharey=True)
    for ax, (m, d, p) in zip(axes[0], cases):
        rs = [r for r in rows if (r["m"], r["d"], r["p"]) == (m, d, p)]
        s = [r["s"] for r in rs]
        for name, c in _CASES:
            ax.plot(s, [r[name + "_mean"] for r in rs], "o", color=c, label=f"{name} on: measured mean")
            ax.plot(s, [r[name + "_theory"] for r in rs], "-", color=c, label=f"{name} on: theory (mean)")
            ax.plot(s, [r[name + "_max"] for r in rs], "x:", color=c, label=f"{name} on: measured max")
        ax.axhline(0.5, color="k", lw=0.6, ls="--", label="error 0.5")
        ax.set_yscale("symlog", linthresh=1e-3)  # errors are >= 0; s = 2 both-on reads exactly 0
        ax.set_ylim(bottom=0)
        ax.set_xlabel("active inputs s")
        ax.set_title(f"U-AND m={m}, d={d}, p={p}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AND estimate error")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return root_figure(box)


def plot_capacity(rows: list, *, ax=None):
    """Smallest working d against m for both input settings, with m^(2/3) and m reference lines.

    Args:
        rows: as :func:`supcomp.studies.uand.capacity` returns them: dicts with ``m``, ``superposed``
            (bool), ``d_min`` (``None`` when no d up to the search's limit worked) and, read from the
            first row, ``s``, ``eps``, ``quantile``.
        ax: a matplotlib Axes to draw into (``None``: a new 6 x 4.5 in figure).

    Returns:
        The Figure of the Axes drawn into.

    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks a key above. TypeError: ``ax`` is not an Axes.
    """
    from matplotlib.ticker import NullFormatter

    check_data(rows, "rows")
    ax = axes_for(ax, figsize=(6, 4.5))
    for c, emb in enumerate((False, True)):
        rs = [r for r in rows if r["superposed"] == emb and r["d_min"]]
        if rs:
            ax.plot(
                [r["m"] for r in rs],
                [r["d_min"] for r in rs],
                "o-",
                color=f"C{c}",
                label="inputs in superposition (d0 = d)" if emb else "inputs as indices",
            )
    ms = sorted({r["m"] for r in rows})
    ref = [r for r in rows if r["d_min"]]
    if ref:
        m0, d0 = ref[-1]["m"], ref[-1]["d_min"]
        ax.plot(ms, [d0 * (m / m0) ** (2 / 3) for m in ms], "k--", lw=0.8, label="∝ m^(2/3)")
        ax.plot(ms, [d0 * (m / m0) for m in ms], "k:", lw=0.8, label="∝ m")
    s, eps, q = rows[0]["s"], rows[0]["eps"], rows[0]["quantile"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ms, [str(m) for m in ms])  # the measured m, plainly (log minor labels crowd a short range)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("inputs m")
    ax.set_ylabel("smallest neurons d")
    ax.set_title(f"U-AND capacity, s={s}\nmax error < {eps} on {q:.0%} of pairs", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return root_figure(ax)
