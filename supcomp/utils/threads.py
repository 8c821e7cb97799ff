"""Thread-count helpers: torch's thread pool set for a block of code, and a busy-machine test.

The supcomp C++ kernels take their thread count from ``torch.get_num_threads()``, so these govern
them too. Small models run faster on one thread (their parallel regions are too short to pay for
the fork/join), and on a loaded machine a busy core stalls every parallel region, so the studies
drop to one thread in both cases.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

__all__ = ["threads", "machine_busy", "single_threaded"]


@contextlib.contextmanager
def threads(k: int | None):
    """Run the block with ``torch.set_num_threads(k)``, restoring the previous count after it.

    Args:
        k: threads for the block; None leaves the count as it is.
    """
    old = torch.get_num_threads()
    if k is not None and k != old:
        torch.set_num_threads(k)
    try:
        yield
    finally:
        if k is not None and k != old:
            torch.set_num_threads(old)


def machine_busy() -> bool:
    """Whether the 1-minute load average is at least the number of cores minus 0.5 (multi-core machines only)."""
    cores = os.cpu_count() or 1
    try:
        return cores > 1 and os.getloadavg()[0] >= cores - 0.5
    except OSError:  # no load average on this platform
        return False


def single_threaded(fn):
    """Decorator: run ``fn`` with one torch thread."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threads(1):
            return fn(*args, **kwargs)

    return wrapper
