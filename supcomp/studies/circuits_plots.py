"""PNG plots of ``supcomp circuits``: sweeps with predictions, capacity, throughput."""

from __future__ import annotations

from ..utils.figures import new_figure, save_figure

_LABEL = {"z": "active circuits z", "T": "circuits T", "M": "M = D/(d+2)", "S": "hosts per neuron S", "L": "depth L"}


def plot_sweeps(res, path):
    """One panel per swept variable: measured (markers) and predicted (lines) MSEs, log scale."""
    vars_ = [v for v in res if res[v]]
    fig, axes = new_figure(1, len(vars_), figsize=(4.2 * len(vars_), 3.8), squeeze=False)
    for ax, var in zip(axes[0], vars_):
        rows = res[var]
        xs = [r[var] for r in rows]
        for key, c in (("total", "C0"), ("alone", "C3"), ("read_in", "C1"), ("read_out", "C2")):
            # exact zeros (read_in / read_out at z = 1) have no place on a log axis: left out
            pts = [(x, r[key]) for x, r in zip(xs, rows) if r[key] > 1e-10]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=c, label=f"{key} measured")
            pts = [(x, r[key + "_pred"]) for x, r in zip(xs, rows) if r[key + "_pred"] > 1e-10]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=c, alpha=0.7, label=f"{key} predicted")
        ax.set_yscale("log")
        ax.set_xlabel(_LABEL[var])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MSE (last layer / mean over layers)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Circuits in superposition: error vs. z, T, D/d, S, L (markers measured, lines theory)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def plot_capacity(rows, path):
    """Largest T at fixed error against M, with the M^2 (~D^2/d^2) and M (~D/d) lines through the first point."""
    Ms = [r["M"] for r in rows]
    Ts = [r["T_max"] for r in rows]
    fig, ax = new_figure(figsize=(5.5, 4.2))
    ax.plot(Ms, Ts, "o-", label="measured T_max")
    ax.plot(Ms, [Ts[0] * (m / Ms[0]) ** 2 for m in Ms], "--", label="~ D^2/d^2 (M^2)")
    ax.plot(Ms, [Ts[0] * (m / Ms[0]) for m in Ms], ":", label="~ D/d (M)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("M = D/(d+2)")
    ax.set_ylabel(f"largest T with MSE <= {rows[0]['err']}")
    ax.set_title(f"Capacity (z={rows[0]['z']}, L={rows[0]['L']}, random assignment)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def plot_throughput(rows, path):
    """Median ms per batch against z: superposed, one by one, and the dense torch network."""
    zs = [r["z"] for r in rows]
    fig, ax = new_figure(figsize=(5.5, 4.2))
    for key, lab in (
        ("superposed_ms", "superposed (supcomp)"),
        ("one_by_one_ms", "z circuits one by one"),
        ("dense_torch_ms", "dense torch, same network"),
    ):
        ax.plot(zs, [r[key] for r in rows], "o-", label=lab)
    ax.set_xlabel("active circuits z")
    ax.set_ylabel("ms per batch (median)")
    ax.set_title(f"T={rows[0]['T']}, D={rows[0]['D']}, batch {rows[0]['batch']}")
    ax.set_xticks(zs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path
