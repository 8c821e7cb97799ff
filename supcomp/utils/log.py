"""Logging set-up for the command line: one handler on the ``supcomp`` logger, on stderr.

Library modules log through ``logging.getLogger(__name__)`` and never configure handlers themselves (a
program embedding supcomp decides where its logs go); ``supcomp``'s CLI calls :func:`configure_logging`.
Records are written through ``tqdm.write``, so a message never lands inside a progress bar's line.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "verbosity_level"]

_HANDLER_NAME = "supcomp-cli"


class _TqdmHandler(logging.Handler):
    """Writes each record to stderr through ``tqdm.write`` (active bars are cleared and redrawn around it)."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a broken stream must not take the program down (logging's own rule)
            self.handleError(record)


def verbosity_level(verbose: int = 0, quiet: int = 0) -> int:
    """The log level for ``-v`` / ``-q`` counts: WARNING by default, INFO with ``-v``, DEBUG with
    ``-vv``, ERROR with ``-q``, CRITICAL with ``-qq``."""
    return min(logging.CRITICAL, max(logging.DEBUG, logging.WARNING - 10 * int(verbose) + 10 * int(quiet)))


def configure_logging(level: int = logging.WARNING) -> logging.Logger:
    """Give the ``supcomp`` logger one stderr handler (``LEVEL name: message``) at ``level``; calling it
    again replaces that handler instead of adding another. Returns the logger."""
    logger = logging.getLogger("supcomp")
    for h in list(logger.handlers):
        if h.get_name() == _HANDLER_NAME:
            logger.removeHandler(h)
    handler = _TqdmHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
