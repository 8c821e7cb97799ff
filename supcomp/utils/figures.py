"""The one figure helper: new figures that leave matplotlib's backend alone, and atomic saving.

:func:`new_figure` builds a ``matplotlib.figure.Figure`` on its own Agg canvas, without pyplot, so
plotting never switches or reads the user's global backend and works headless. :func:`save_figure`
writes through a temporary file renamed into place (an interrupted save never leaves half a file),
in the format the path's suffix names (PNG, PDF or SVG). matplotlib is imported only when a
figure is made: ``import supcomp`` does not import it.
"""

from __future__ import annotations

import os

from .files import atomic_path

FORMATS = ("png", "pdf", "svg")


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), squeeze: bool = True, **subplot_kw):
    """A figure and its axes, like ``plt.subplots``, on a private Agg canvas.

    Args:
        nrows, ncols: the grid of axes.
        figsize: inches (width, height).
        squeeze: as in ``plt.subplots``.
        **subplot_kw: passed to ``Figure.subplots`` (``sharex``, ``gridspec_kw``, ...).

    Returns:
        ``(fig, axes)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
    return fig, axes


def save_figure(fig, path: str, **kwargs) -> str:
    """Write ``fig`` to ``path`` atomically, in the format of its suffix (``.png``, ``.pdf``, ``.svg``).

    Args:
        fig: a matplotlib Figure.
        path: where to write; the folder is created.
        **kwargs: passed to ``Figure.savefig`` (``dpi``, ``bbox_inches``, ...).

    Returns:
        ``path``.

    Raises:
        ValueError: the suffix is not one of png, pdf, svg.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"path: expected a .png, .pdf or .svg file, got {path!r}")
    kwargs.pop("format", None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return path
