"""Figures of ``supcomp circuits`` (:mod:`supcomp.studies.circuits`): error sweeps against the theory,
capacity, throughput.

Each function takes the rows the matching measurement returns, draws into ``ax=`` / ``fig=`` or a new
constrained-layout figure on a private Agg canvas, and returns the matplotlib Figure (saved with
:func:`supcomp.utils.figures.save_figure`).
"""

from __future__ import annotations

from ..utils.figures import axes_for, check_data, panels_for, root_figure

__all__ = ["plot_sweeps", "plot_capacity", "plot_throughput"]

_LABEL = {"z": "active circuits z", "T": "circuits T", "M": "M = D/(d+2)", "S": "hosts per neuron S", "L": "depth L"}
_SERIES = (("total", "C0"), ("alone", "C3"), ("read_in", "C1"), ("read_out", "C2"))


def plot_sweeps(res: dict, *, fig=None):
    """One panel per swept variable: measured (markers) and predicted (lines) MSEs, log scale.

    Args:
        res: ``{variable: rows}`` as :func:`supcomp.studies.circuits.sweeps` returns it; a variable is
            one of ``z, T, M, S, L``; each row holds the variable's value and ``total``, ``alone``,
            ``read_in``, ``read_out`` with their ``*_pred`` predictions (floats). Variables with no rows
            are left out.
        fig: an empty Figure or SubFigure to draw into (``None``: a new figure, 3.6 in per panel).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: no variable has rows. KeyError: a row lacks a value above, or a variable is unknown.
        TypeError / ValueError: ``fig`` is not an empty figure.
    """
    check_data(res, "res")
    vars_ = [v for v in res if res[v]]
    if not vars_:
        raise ValueError("res: expected at least one swept variable with rows, got none")
    unknown = [v for v in vars_ if v not in _LABEL]
    if unknown:
        raise KeyError(f"res: unknown variable(s) {unknown}; expected some of {', '.join(_LABEL)}")
    box, axes = panels_for(fig, 1, len(vars_), figsize=(3.6 * len(vars_) + 0.4, 4.2))
    for ax, var in zip(axes[0], vars_):
        rows = res[var]
        xs = [r[var] for r in rows]
        for key, c in _SERIES:
            # exact zeros (read_in / read_out at z = 1) have no place on a log axis: left out
            pts = [(x, r[key]) for x, r in zip(xs, rows) if r[key] > 1e-10]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=c, label=f"{key} measured")
            pts = [(x, r[key + "_pred"]) for x, r in zip(xs, rows) if r[key + "_pred"] > 1e-10]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=c, alpha=0.7, label=f"{key} predicted")
        ax.set_yscale("log")
        ax.set_xlabel(_LABEL[var])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MSE (last layer / mean over layers)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    # one legend right of the last panel (constrained layout makes room for it), so it covers no data
    axes[0][-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    box.suptitle("Circuits in superposition: MSE per swept variable (markers measured, lines predicted)", fontsize=10)
    return root_figure(box)


def plot_capacity(rows: list, *, ax=None):
    """Largest T at fixed error against M, with the M^2 (~D^2/d^2) and M (~D/d) lines through the first point.

    Args:
        rows: as :func:`supcomp.studies.circuits.capacity` returns them: dicts with ``M``, ``T_max``, and
            (read from the first row) ``err``, ``z``, ``L``.
        ax: a matplotlib Axes to draw into (``None``: a new 5.5 x 4.2 in figure).

    Returns:
        The Figure of the Axes drawn into.

    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks a key above. TypeError: ``ax`` is not an Axes.
    """
    check_data(rows, "rows")
    Ms = [r["M"] for r in rows]
    Ts = [r["T_max"] for r in rows]
    ax = axes_for(ax, figsize=(5.5, 4.2))
    ax.plot(Ms, Ts, "o-", label="measured T_max")
    ax.plot(Ms, [Ts[0] * (m / Ms[0]) ** 2 for m in Ms], "--", label="~ D^2/d^2 (M^2)")
    ax.plot(Ms, [Ts[0] * (m / Ms[0]) for m in Ms], ":", label="~ D/d (M)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("M = D/(d+2)")
    ax.set_ylabel(f"largest T with MSE <= {rows[0]['err']}")
    ax.set_title(f"Capacity (z={rows[0]['z']}, L={rows[0]['L']}, random assignment)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return root_figure(ax)


def plot_throughput(rows: list, *, ax=None):
    """Median ms per batch against z: superposed, one circuit at a time, and the dense torch network.

    Args:
        rows: as :func:`supcomp.studies.circuits.throughput` returns them: dicts with ``z``,
            ``superposed_ms``, ``one_by_one_ms``, ``dense_torch_ms``, and (read from the first row) ``T``,
            ``D``, ``batch``.
        ax: a matplotlib Axes to draw into (``None``: a new 5.5 x 4.2 in figure).

    Returns:
        The Figure of the Axes drawn into.

    Raises:
        ValueError: ``rows`` is empty. KeyError: a row lacks a key above. TypeError: ``ax`` is not an Axes.
    """
    check_data(rows, "rows")
    zs = [r["z"] for r in rows]
    ax = axes_for(ax, figsize=(5.5, 4.2))
    for key, lab in (
        ("superposed_ms", "superposed (supcomp)"),
        ("one_by_one_ms", "z circuits one by one"),
        ("dense_torch_ms", "dense torch, same network"),
    ):
        ax.plot(zs, [r[key] for r in rows], "o-", label=lab)
    ax.set_xlabel("active circuits z")
    ax.set_ylabel("ms per batch (median)")
    ax.set_title(f"Throughput: T={rows[0]['T']}, D={rows[0]['D']}, batch {rows[0]['batch']}", fontsize=10)
    ax.set_xticks(zs)
    ax.grid(alpha=0.3)
    ax.legend()
    return root_figure(ax)
