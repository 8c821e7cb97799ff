"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A run stopped with Ctrl-C (or killed) mid-write therefore leaves either the old file or the new
one, never a half-written one, and the temporary file is removed on the way out of an exception
(KeyboardInterrupt included). ``os.replace`` is atomic on POSIX and Windows within one file system.
"""

from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The name is chosen before the file exists and the file is created inside the try: a Ctrl-C that
    # lands anywhere after this line finds the name in scope and removes the file (mkstemp would
    # create the file before the name is known to this frame).
    tmp = os.path.join(folder, "." + os.path.basename(path) + "." + secrets.token_hex(6) + ".tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
