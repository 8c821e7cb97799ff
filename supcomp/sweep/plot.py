"""``plot_results``: the standard figure(s) of each experiment found in a results table, saved as files.

The figures come from each adapter's ``plot(rows) -> {name: Figure}`` (the plot functions themselves
take the rows and an optional ``ax=`` and return the Figure: :mod:`.plots_tms`, ``plot_*`` in
:mod:`.cc`, :mod:`.circuits`, :mod:`.uand`). Files are named ``<grid name>-<figure name>.<format>``, so
the figures of two sweeps sharing a folder never overwrite each other; rows of several supcomp
versions in one table give one set of figures per version (``<grid name>-v<version>-<figure name>``).
"""

from __future__ import annotations

import logging
import os

from ..utils.figures import FORMATS, save_figure
from . import registry
from .grid import safe_name
from .table import read_results

__all__ = ["plot_results"]

log = logging.getLogger(__name__)


def plot_results(path: str, out_dir: str | None = None, formats=("png",)) -> list[str]:
    """Draw each experiment's standard figures from the table at ``path`` and save them.

    Args:
        path: a results table (``.parquet`` or ``.jsonl``).
        out_dir: the folder for the files (default: the table's folder, the sweep's own).
        formats: any of ``"png"``, ``"pdf"``, ``"svg"``; one file per figure and format.

    Returns:
        The paths written. Rows that failed are left out.

    Raises:
        FileNotFoundError: no table at ``path``.
        ValueError: an unknown format.
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats: expected some of {FORMATS}, got {formats!r}")
    if not os.path.exists(path) and not os.path.exists(path.rsplit(".", 1)[0] + ".journal.jsonl"):
        raise FileNotFoundError(f"results: no table at {path!r}")
    rows = read_results(path)
    out_dir = os.path.abspath(out_dir or os.path.dirname(os.path.abspath(path)))
    ok = [r for r in rows if r.get("status") == "ok" and r.get("experiment")]
    versions = {r.get("supcomp_version") for r in ok}
    groups: dict = {}
    for r in ok:
        groups.setdefault((r["experiment"], r.get("grid") or "sweep", r.get("supcomp_version")), []).append(r)
    paths = []
    for (name, grid, version), sel in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        exp = registry.get(name)
        if exp.plot is None:
            continue
        prefix = safe_name(grid) + (f"-v{safe_name(str(version))}" if len(versions) > 1 else "")
        for fig_name, fig in exp.plot(sel).items():
            for fmt in formats:
                target = os.path.join(out_dir, f"{prefix}-{safe_name(fig_name)}.{fmt}")
                if os.path.dirname(os.path.abspath(target)) != out_dir:  # cannot happen with safe names
                    raise ValueError(f"figure name {fig_name!r} would write outside {out_dir!r}")
                paths.append(save_figure(fig, target, dpi=120))
                log.info("wrote %s", target)
    return paths
