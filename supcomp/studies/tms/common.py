"""Plumbing shared by the TMS reproductions: output paths, printing, table cells, the training call."""

from __future__ import annotations

import os
import time

from ...tms.analysis import threads_for
from ...tms.train import train
from ...utils.figures import save_figure
from ...utils.threads import threads

DEFAULT_OUT = os.path.join("supcomp-report", "tms")

#: Short table names of the geometry classes of :func:`supcomp.metrics.geometry_counts`.
SHORT = {
    "not learned": "none",
    "dedicated dimension": "dedic",
    "antipodal pair": "pair",
    "triangle": "tri",
    "tetrahedron": "tetra",
    "pentagon": "penta",
    "square antiprism": "antipr",
    "other": "other",
}


def train_model(cfg, steps, batch_size, lr, seed, progress):
    """:func:`supcomp.tms.train` on the thread count of :func:`supcomp.tms.analysis.threads_for`."""
    with threads(threads_for(cfg.n_features, cfg.n_hidden)):
        return train(cfg, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress)


def out_path(out_dir, name):
    """``out_dir/name``, creating ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def finish(
    res: dict, lines: list[str], plot, out_dir: str, name: str, t0: float, verbose: bool, t_train: float | None = None
) -> dict:
    """End a reproduction: draw its figure with ``plot(res)`` and save it to ``out_dir/name``, add the timing
    line to its table, print the table when ``verbose``, and return ``res`` (with paths, time_s, table)."""
    res["paths"] = [save_figure(plot(res), out_path(out_dir, name), dpi=110)]
    res["time_s"] = time.time() - t0
    train_note = f", training {t_train:.1f} s" if t_train is not None else ""
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s{train_note})")
    res["table"] = "\n".join(lines)
    emit(res["table"], verbose)
    return res


def emit(text, verbose):
    if verbose:
        print(text, flush=True)


def fmt_counts(counts: dict) -> str:
    """Geometry counts as ``"pair:4 penta:5"`` (zero counts left out; ``"-"`` when all are zero)."""
    s = " ".join(f"{SHORT.get(k, k)}:{v}" for k, v in counts.items() if v)
    return s or "-"


def frac(x, tol=0.02) -> str:
    """0.4 -> '2/5' when x is within tol of a simple fraction, else '0.43'."""
    if abs(x) <= tol:
        return "0"
    for den in range(1, 9):
        num = round(x * den)
        if num and abs(x - num / den) <= tol:
            return f"{num}/{den}" if den > 1 else f"{num}"
    return f"{x:.2f}"
