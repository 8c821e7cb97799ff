"""The one progress-bar helper: tqdm on stderr (a widget in Jupyter), quiet when stderr is not a terminal.

Bars never break printed output: a bar is cleared when it ends (``leave=False``), pending stdout is flushed
before a bar starts, and ``set_postfix`` does not force a redraw (the postfix shows at the bar's next
throttled refresh, at most every ``mininterval`` = 0.5 s). ``set_progress_enabled(False)`` (the CLI's
``--no-progress``) or the environment variable ``SUPCOMP_NO_PROGRESS=1`` turns every bar off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm

__all__ = ["progress_bar", "set_progress_enabled", "progress_enabled"]

_enabled = True


def set_progress_enabled(enabled: bool) -> None:
    """Turn every progress bar of the library on or off (a global switch; the CLI's ``--no-progress``).
    Bars that a call turns off with ``enabled=False`` stay off either way."""
    global _enabled
    _enabled = bool(enabled)


def progress_enabled() -> bool:
    """Whether bars may show: the global switch is on and ``SUPCOMP_NO_PROGRESS`` is not set."""
    return _enabled and os.environ.get("SUPCOMP_NO_PROGRESS", "") in ("", "0")


class _Bar(tqdm):
    """tqdm whose ``set_postfix`` waits for the next throttled refresh instead of redrawing at once."""

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def progress_bar(
    iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True, **kwargs
) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``).

    Args:
        iterable: what to iterate over, or None for a bar advanced with ``update``.
        desc: the bar's label.
        total: the number of steps, when ``iterable`` has no length.
        enabled: False turns the bar off; it is also off when stderr is neither a terminal nor a
            Jupyter kernel's (so logs and CI output carry no progress lines), and when the global switch
            (:func:`set_progress_enabled`, ``SUPCOMP_NO_PROGRESS=1``) is off.
        **kwargs: passed to tqdm (``leave`` defaults to False: the bar is cleared when it ends).

    Returns:
        The tqdm object (iterate over it, or call ``update``).
    """
    quiet = not enabled or not progress_enabled() or not (_stderr_is_terminal() or "ipykernel" in sys.modules)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", False)
    if not quiet:
        try:  # text printed before the bar appears above it, not after it on the bar's line
            sys.stdout.flush()
        except (AttributeError, ValueError, OSError):
            pass
    return _Bar(iterable, desc=desc, total=total, disable=quiet, file=sys.stderr, **kwargs)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
