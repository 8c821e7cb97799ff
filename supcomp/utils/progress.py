"""The one progress-bar helper: tqdm on stderr (a widget in Jupyter), quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress_bar(
    iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True, **kwargs
) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``).

    Args:
        iterable: what to iterate over, or None for a bar advanced with ``update``.
        desc: the bar's label.
        total: the number of steps, when ``iterable`` has no length.
        enabled: False turns the bar off; it is also off when stderr is neither a terminal nor a
            Jupyter kernel's, so logs and CI output carry no progress lines.
        **kwargs: passed to tqdm.

    Returns:
        The tqdm object (iterate over it, or call ``update``).
    """
    quiet = not enabled or not (_stderr_is_terminal() or "ipykernel" in sys.modules)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, desc=desc, total=total, disable=quiet, file=sys.stderr, **kwargs)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
