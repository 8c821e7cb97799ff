"""``plot_results``: the standard figure(s) of each experiment found in a results table."""

from __future__ import annotations

import os

from . import registry
from .table import read_results


def plot_results(path: str, out_dir: str | None = None) -> list[str]:
    """Draw each experiment's standard figure from the table at ``path`` into ``out_dir`` (default: the
    table's folder) as PNG; returns the paths. Rows that failed are left out."""
    rows = read_results(path)
    out_dir = out_dir or os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in sorted({r.get("experiment") for r in rows if r.get("experiment")}):
        ok = [r for r in rows if r.get("experiment") == name and r.get("status") == "ok"]
        exp = registry.get(name)
        if ok and exp.plot is not None:
            paths.extend(exp.plot(ok, out_dir))
    return paths
