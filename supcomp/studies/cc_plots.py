"""PNG plots of the compressed-computation results."""

from __future__ import annotations

from ..utils.figures import new_figure, save_figure


def plot_loss_vs_p(curves: dict, naive: float, path: str, train_p: float):
    """``curves``: label -> (ps [k], L/p [k]); the naive line; models trained at ``train_p``."""
    fig, ax = new_figure(figsize=(6.4, 4.4))
    for i, (label, (ps, lp)) in enumerate(curves.items()):
        ax.plot(ps, lp, "o-", ms=3.5, color=f"C{i}", label=label)
    ax.axhline(naive, color="k", ls="--", lw=1, label=f"naive (1 neuron per function) = {naive:.4f}")
    ax.axvline(train_p, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("evaluation feature probability p")
    ax.set_ylabel("loss per feature L / p")
    ax.set_title(f"Compressed computation: trained at p = {train_p:g}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_loss_vs_sigma(
    sweeps: dict, naive: float, path: str, embedding_std: float | None = None, embedding_lp: float | None = None
):
    """``sweeps``: label -> (sigmas [k], L/p [k]); the naive line; the embedding's mixing std and L/p."""
    fig, ax = new_figure(figsize=(6.4, 4.4))
    for i, (label, (s, lp)) in enumerate(sweeps.items()):
        ax.plot(s, lp, "o-", ms=3.5, color=f"C{i + 2}", label=label)
    ax.axhline(naive, color="k", ls="--", lw=1, label=f"naive = {naive:.4f}")
    if embedding_std is not None and embedding_lp is not None:
        ax.plot(
            [embedding_std],
            [embedding_lp],
            "*",
            ms=11,
            color="C1",
            label=f"mlp, M = W_E W_Eᵀ - I (std {embedding_std:.3f})",
        )
    ax.set_xlabel("σ (std of the mixing matrix's off-diagonal entries)")
    ax.set_ylabel("loss per feature L / p (at the training p)")
    ax.set_title("Plain MLP on relu(x) + M x: the gain needs M ≠ 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
