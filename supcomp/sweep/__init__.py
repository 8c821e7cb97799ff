"""Resumable experiment sweeps: grids packed into instance-batched runs, run locally or on Ray.

``supcomp sweep run GRID.toml`` / :func:`run_sweep`; ``supcomp sweep plot RESULTS`` / :func:`plot_results`.

* :mod:`.grid`: the grid file (experiment, fixed arguments, axes) and point keys;
* :mod:`.registry`: one adapter per experiment (the interface to add one is documented there);
* :mod:`.packing`: points differing only in per-instance parameters -> one batched run;
* :mod:`.table`: the results table (Parquet or JSON lines), written point by point, resumable;
* :mod:`.executors`: local (one process or a pool) and Ray;
* :mod:`.tms`, :mod:`.circuits`, :mod:`.cc`, :mod:`.uand`: the adapters of the built-in experiments;
* :mod:`.plot`: each experiment's standard figures from a results table.
"""

from .grid import Grid, load_grid, point_key
from .plot import plot_results
from .registry import Experiment, register
from .run import SweepSummary, plan, run_sweep
from .table import read_results

__all__ = [
    "Grid",
    "load_grid",
    "point_key",
    "Experiment",
    "register",
    "run_sweep",
    "plan",
    "SweepSummary",
    "read_results",
    "plot_results",
]
