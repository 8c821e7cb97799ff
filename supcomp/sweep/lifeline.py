"""Worker processes that die with their driver.

A pool worker calls :func:`tie_to_parent` first thing. On Linux it asks the kernel to send it SIGKILL
when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes), so a driver killed with
SIGKILL (no clean-up at all) leaves no worker behind. Everywhere, and as a fallback where ``prctl`` is
missing, a daemon thread checks twice a second whether the parent is still the process that started
the worker, and exits the worker when it is not (the fallback needs the GIL, so a worker deep in one
long C++ call exits when that call returns). Ray workers are supervised by Ray itself: a driver's
death ends its job and Ray stops the job's workers.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["tie_to_parent"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_POLL_S = 0.5


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl in this libc
        return False


def _watch(parent_pid: int) -> None:
    import time

    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(_POLL_S)


def tie_to_parent(parent_pid: int) -> bool:
    """Make this process exit when process ``parent_pid`` (its parent) dies; returns whether the kernel
    signal (``PR_SET_PDEATHSIG``) is in place, else only the polling thread is."""
    ok = _pdeathsig()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="supcomp-parent-watch", daemon=True).start()
    if not ok:
        log.debug("PR_SET_PDEATHSIG unavailable; the worker polls its parent instead")
    return ok
