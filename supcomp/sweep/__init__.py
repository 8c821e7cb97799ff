"""Resumable experiment sweeps: grids packed into instance-batched runs, run locally or on Ray.

``supcomp sweep init`` writes an example grid; ``supcomp sweep run GRID.toml`` / :func:`run_sweep`;
``supcomp sweep plot RESULTS`` / :func:`plot_results`.

* :mod:`.grid`: the grid file (experiment, fixed arguments, axes), safe names and point keys;
* :mod:`.registry`: one adapter per experiment (the interface to add one is documented there);
* :mod:`.params`: each adapter's declared parameters, checked (names, types, ranges) before anything runs;
* :mod:`.packing`: points differing only in per-instance parameters -> one batched run;
* :mod:`.table`: the results table (Parquet or JSON lines), written point by point, resumable;
* :mod:`.executors`: local (one process or a pool whose workers die with the driver, :mod:`.lifeline`) and Ray;
* :mod:`.weights`: each point's model weights beside the table (opt-in);
* :mod:`.tms`, :mod:`.circuits`, :mod:`.cc`, :mod:`.uand`, :mod:`.sae`: the adapters of the built-in experiments;
* :mod:`.plot`: each experiment's standard figures from a results table.
"""

from .grid import Grid, load_grid, point_key
from .params import Param, ParamError
from .plot import plot_results
from .registry import Experiment, register
from .run import SweepInterrupted, SweepSummary, VersionMixError, plan, run_sweep
from .table import read_results
from .weights import load_weights

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
    "Param",
    "ParamError",
    "VersionMixError",
    "SweepInterrupted",
    "load_weights",
]
