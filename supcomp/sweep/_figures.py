"""Shared figure plumbing of the sweep adapters' ``plot`` functions (Agg backend, atomic PNG write)."""
from __future__ import annotations

import os


def axes(figsize=(5, 4.5)):
    """A new (figure, axes) on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def save(fig, out_dir: str, name: str) -> str:
    """Write ``fig`` to ``out_dir/name`` (temp file, then rename: an interrupted run leaves no half PNG)."""
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
