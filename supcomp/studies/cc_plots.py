"""Figures of the compressed-computation results (:func:`supcomp.studies.cc.run`).

Each function takes the result dict of ``run`` (or any dict with the keys its docstring names),
draws into ``ax=`` or a new constrained-layout figure on a private Agg canvas, and returns the
matplotlib Figure (saved with :func:`supcomp.utils.figures.save_figure`).
"""

from __future__ import annotations

from ..utils.figures import axes_for, check_data, root_figure

__all__ = ["plot_loss_vs_p", "plot_loss_vs_sigma"]


def plot_loss_vs_p(res: dict, *, ax=None):
    """Loss per feature L/p against the evaluation feature probability p, one line per model.

    Args:
        res: ``rows`` (dicts with ``label`` and ``lp``: ``{p: L/p}``), ``naive`` (the loss per feature
            of one neuron per function) and ``train_p`` (the models' training p), as
            :func:`supcomp.studies.cc.run` returns them.
        ax: a matplotlib Axes to draw into (``None``: a new 8.4 x 4.6 in figure).

    Returns:
        The Figure of the Axes drawn into.

    Raises:
        KeyError: ``res`` lacks a key above. ValueError: ``res["rows"]`` is empty.
        TypeError: ``ax`` is not an Axes.
    """
    check_data(res, "res", ("rows", "naive", "train_p"))
    check_data(res["rows"], "res['rows']")
    naive, train_p = float(res["naive"]), float(res["train_p"])
    ax = axes_for(ax, figsize=(8.4, 4.6))
    for i, row in enumerate(res["rows"]):
        ps = sorted(row["lp"])
        ax.plot(ps, [row["lp"][p] for p in ps], "o-", ms=3.5, color=f"C{i}", label=row["label"])
    ax.axhline(naive, color="k", ls="--", lw=1, label=f"naive (1 neuron per function) = {naive:.4f}")
    ax.axvline(train_p, color="grey", ls=":", lw=1, label=f"training p = {train_p:g}")
    ax.set_xscale("log")
    ax.set_xlabel("evaluation feature probability p")
    ax.set_ylabel("loss per feature L / p")
    ax.set_title("Compressed computation: loss per feature vs. p", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # beside the data
    return root_figure(ax)


def plot_loss_vs_sigma(res: dict, *, ax=None):
    """Loss per feature (at the training p) of a plain MLP on ``relu(x) + M x`` against the std σ of M.

    Args:
        res: ``sweeps`` (``{kind: (sigmas [k], L/p [k])}``, one line "<kind> M" each), ``naive``, and optionally
            ``embedding_std`` and ``embedding_lp`` (the embedding model's effective mixing std and its
            L/p, drawn as a star when both are given), as :func:`supcomp.studies.cc.run` returns them.
        ax: a matplotlib Axes to draw into (``None``: a new 8.4 x 4.6 in figure).

    Returns:
        The Figure of the Axes drawn into.

    Raises:
        KeyError: ``res`` lacks a key above. ValueError: ``res["sweeps"]`` is empty.
        TypeError: ``ax`` is not an Axes.
    """
    check_data(res, "res", ("sweeps", "naive"))
    check_data(res["sweeps"], "res['sweeps']")
    naive = float(res["naive"])
    ax = axes_for(ax, figsize=(8.4, 4.6))
    for i, (kind, (s, lp)) in enumerate(res["sweeps"].items()):
        ax.plot(s, lp, "o-", ms=3.5, color=f"C{i + 2}", label=f"{kind} M")
    ax.axhline(naive, color="k", ls="--", lw=1, label=f"naive = {naive:.4f}")
    std, lp = res.get("embedding_std"), res.get("embedding_lp")
    if std is not None and lp is not None:
        ax.plot([std], [lp], "*", ms=11, color="C1", label=f"mlp, M = W_E W_Eᵀ - I (std {std:.3f})")
    ax.set_xlabel("σ (std of the mixing matrix's off-diagonal entries)")
    ax.set_ylabel("loss per feature L / p (at the training p)")
    ax.set_title("MLP on relu(x) + M x: loss per feature vs. σ", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # beside the data
    return root_figure(ax)
