"""The one figure helper: new figures that leave matplotlib's backend alone, and atomic saving.

:func:`new_figure` builds a ``matplotlib.figure.Figure`` on its own Agg canvas, without pyplot, so
plotting never switches or reads the user's global backend and works headless. :func:`axes_for` and
:func:`panels_for` give a plot function the Axes to draw into: the caller's ``ax=`` / ``fig=``, or a new
figure with constrained layout; :func:`root_figure` is the Figure such a function returns. :func:`save_figure`
writes through a temporary file renamed into place (an interrupted save never leaves half a file),
in the format the path's suffix names (PNG, PDF or SVG). matplotlib is imported only when a
figure is made: ``import supcomp`` does not import it.
"""

from __future__ import annotations

import os

from .files import atomic_path

__all__ = ["new_figure", "root_figure", "axes_for", "container_for", "panels_for", "check_data", "save_figure"]

FORMATS = ("png", "pdf", "svg")


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), squeeze: bool = True, layout: str | None = None, **subplot_kw
):
    """A figure and its axes, like ``plt.subplots``, on a private Agg canvas.

    Args:
        nrows, ncols: the grid of axes (``0, 0``: no axes, ``axes`` is ``None``).
        figsize: inches (width, height).
        squeeze: as in ``plt.subplots``.
        layout: the figure's layout engine (``"constrained"``, ``"tight"`` or ``None``).
        **subplot_kw: passed to ``Figure.subplots`` (``sharex``, ``gridspec_kw``, ...).

    Returns:
        ``(fig, axes)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw) if nrows and ncols else None
    return fig, axes


def root_figure(obj):
    """The top-level ``Figure`` of an Axes, a ``SubFigure`` or a ``Figure`` (what plot functions return)."""
    from matplotlib.figure import SubFigure

    fig = obj.figure if not _is_figure(obj) else obj
    while isinstance(fig, SubFigure):
        fig = fig.figure
    return fig


def _is_figure(obj) -> bool:
    from matplotlib.figure import FigureBase

    return isinstance(obj, FigureBase)


def axes_for(ax=None, figsize=(6.0, 4.0)):
    """The Axes a single-panel plot draws into: ``ax``, or the one Axes of a new constrained-layout figure.

    Args:
        ax: a matplotlib ``Axes`` (of any figure, pyplot's included) or ``None``.
        figsize: inches (width, height) of the new figure when ``ax`` is ``None``.

    Returns:
        The ``Axes``.

    Raises:
        TypeError: ``ax`` is neither ``None`` nor a matplotlib Axes.
    """
    if ax is None:
        return new_figure(figsize=figsize, layout="constrained")[1]
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def container_for(fig=None, figsize=(6.0, 4.0)):
    """The Figure or SubFigure a multi-panel plot draws into: ``fig``, or a new constrained-layout figure.

    Args:
        fig: an empty matplotlib ``Figure`` or ``SubFigure`` (``fig.subfigures(...)`` places a plot
            next to the caller's own axes), or ``None``.
        figsize: inches (width, height) of the new figure when ``fig`` is ``None``.

    Returns:
        The Figure or SubFigure (suptitle, colorbars and figure legends go there).

    Raises:
        TypeError: ``fig`` is neither ``None`` nor a Figure / SubFigure.
        ValueError: ``fig`` already holds axes.
    """
    if fig is None:
        return new_figure(0, 0, figsize=figsize, layout="constrained")[0]
    if not _is_figure(fig):
        raise TypeError(f"fig: expected a matplotlib Figure or SubFigure or None, got {type(fig).__name__}")
    if fig.axes:
        raise ValueError(f"fig: expected an empty figure, it holds {len(fig.axes)} axes (use fig.subfigures)")
    return fig


def panels_for(fig=None, nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), **subplot_kw):
    """:func:`container_for` and a grid of axes in it.

    Args:
        fig, figsize: as in :func:`container_for`.
        nrows, ncols: the grid of axes.
        **subplot_kw: passed to ``subplots`` (``sharex``, ``gridspec_kw``, ...).

    Returns:
        ``(container, axes)``: the Figure or SubFigure and the ``[nrows, ncols]`` array of Axes.

    Raises:
        TypeError, ValueError: as :func:`container_for`.
    """
    container = container_for(fig, figsize)
    return container, container.subplots(nrows, ncols, squeeze=False, **subplot_kw)


def check_data(data, name: str, keys=(), nonempty: bool = True):
    """Check a plot function's data: a dict holding ``keys`` (and not empty), or a non-empty sequence.

    Raises:
        TypeError: ``keys`` are required and ``data`` is not a mapping.
        KeyError: a key is missing (the message names the argument and the key).
        ValueError: ``data`` is empty.
    """
    if keys:
        if not hasattr(data, "keys"):
            raise TypeError(f"{name}: expected a dict with keys {', '.join(keys)}, got {type(data).__name__}")
        missing = [k for k in keys if k not in data]
        if missing:
            raise KeyError(f"{name}: missing key(s) {', '.join(map(repr, missing))}")
    if nonempty and len(data) == 0:
        raise ValueError(f"{name}: expected data to plot, got an empty {type(data).__name__}")


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
