"""``run_sweep``: expand a grid, skip what is done, pack the rest, execute, write each point as it finishes."""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from ..utils.progress import progress_bar
from . import executors, registry
from .grid import Grid, load_grid, point_key
from .packing import pack
from .table import ResultStore, default_suffix
from .weights import weights_dir

log = logging.getLogger(__name__)

#: The folder under which each sweep gets its own folder, ``<SWEEP_ROOT>/<grid name>/``.
SWEEP_ROOT = "sweep-results"


class VersionMixError(ValueError):
    """The results table holds rows of another supcomp version (a ValueError); see :func:`run_sweep`."""


@dataclasses.dataclass
class SweepSummary:
    """What a call of :func:`run_sweep` did. ``n_points``: the grid's size; ``n_skipped``: already done;
    ``n_run``: points run by this call (``n_failed`` of them failed); ``n_packs``: packed runs; ``wall_s``."""

    out: str
    n_points: int
    n_skipped: int
    n_run: int
    n_failed: int
    n_packs: int
    wall_s: float
    interrupted: bool = False


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_sweep`; ``summary`` (a :class:`SweepSummary`) says what is in the table."""

    def __init__(self, summary):
        super().__init__(
            f"interrupted: {summary.n_skipped + summary.n_run} of {summary.n_points} points are in "
            f"{summary.out}; rerun the same command to finish"
        )
        self.summary = summary


def default_out(grid: Grid, root: str = SWEEP_ROOT) -> str:
    """The sweep's own folder and table: ``<root>/<grid name>/results.parquet`` (``.jsonl`` without pyarrow).
    Raises ValueError if the name would leave ``root`` (it cannot, for a :class:`Grid`'s checked name)."""
    folder = os.path.join(root, grid.name)
    real_root, real = os.path.realpath(root), os.path.realpath(folder)
    if os.path.dirname(real) != real_root:
        raise ValueError(f"name: {grid.name!r} would write outside {root!r}")
    return os.path.join(folder, "results" + default_suffix())


def _check_axes(exp, grid: Grid) -> None:
    """The grid's fixed values and every axis value checked once, so an error names where it is."""
    absent = [k for k in exp.required if k not in grid.fixed and k not in grid.axes]
    exp.check(grid.fixed, where=f"{exp.name} (fixed)", absent=absent)
    for k, vals in grid._values.items():
        for v in vals:
            exp.check({k: v}, where=f"{exp.name} (axes.{k})", absent=absent)


def plan(grid: Grid, done: set = frozenset(), min_packs: int = 1) -> tuple[list, list]:
    """``(points, packs)``: every point of the grid as ``{"key", "params"}`` (params checked and over the
    adapter's defaults), and the packs of those not in ``done``.

    Raises:
        ValueError: an unknown experiment; an unknown parameter (naming the closest known one), a missing
            required one, or a value of the wrong type or range (:class:`~supcomp.sweep.params.ParamError`).
    """
    exp = registry.get(grid.experiment)
    _check_axes(exp, grid)
    points = []
    for params in grid.points():
        full = exp.complete(params)
        points.append({"key": point_key(grid.experiment, full), "params": full})
    todo = [p for p in points if p["key"] not in done]
    return points, pack(todo, exp.per_instance, grid.max_instances, min_packs=min_packs)


def run_sweep(
    grid,
    out: str | None = None,
    workers: int = 1,
    ray: str | None = None,
    *,
    threads: int | None = None,
    ray_cpus: float = 1,
    ray_gpus: float = 0,
    retries: int = 2,
    retry_failed: bool = True,
    progress: bool = True,
    ray_init_kwargs: dict | None = None,
    save_weights: bool | None = None,
    allow_version_mix: bool = False,
) -> SweepSummary:
    """Run every point of ``grid`` (a :class:`Grid` or a path to a grid file) not yet in the table ``out``.

    Args:
        out: ``.parquet`` (needs pyarrow) or ``.jsonl`` path; default: the sweep's own folder,
            ``sweep-results/<grid name>/results.parquet`` (``.jsonl`` without pyarrow).
        workers: local worker processes (1: this process). Ignored with ``ray``.
        ray: ``None`` (local), ``"auto"`` or a Ray cluster address; see :func:`executors.ray_tasks`.
        threads: threads per run (default: all for one local process; ``cpus // workers`` in a pool;
            ``ray_cpus`` for Ray tasks).
        ray_cpus, ray_gpus: each Ray task's resource request.
        retries: bounded retries of a pack whose worker died (pool and Ray).
        retry_failed: rerun points recorded as failed (default); False skips them like finished ones.
        save_weights: keep each point's model weights (see :mod:`supcomp.sweep.weights`); None: the grid's
            ``save_weights``. Finished points without weights run again.
        allow_version_mix: append to a table holding rows of another supcomp version. A point's key
            includes the version, so no old row is ever taken for a new point; without this flag such a
            table is refused (:class:`VersionMixError`), so that one table never silently holds results of
            two versions of the code.

    Raises:
        ValueError: bad grid or arguments (see :func:`plan`); :class:`VersionMixError`.

    Each finished point is in ``out`` when its pack completes (see :mod:`supcomp.sweep.table`); rerunning the
    same grid runs only the rest. On Ctrl-C the points in flight are lost, the table is brought up to
    date and :class:`SweepInterrupted` (a KeyboardInterrupt) is raised.
    """
    if not isinstance(grid, Grid):
        grid = load_grid(grid)
    out = out or default_out(grid)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive int, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: expected a positive int or None, got {threads!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries: expected a non-negative int, got {retries!r}")
    exp = registry.get(grid.experiment)
    exp_path = registry.path_of(grid.experiment)
    if exp_path is None and (workers > 1 or ray):
        raise ValueError(
            f"experiment {grid.experiment!r} is registered as an object in this process only; "
            "register it by 'module:attr' path to run it in worker processes or on Ray"
        )
    save_weights = grid.save_weights if save_weights is None else save_weights
    if not isinstance(save_weights, bool):
        raise ValueError(f"save_weights: expected a bool, got {save_weights!r}")
    plan(grid)  # refuse a bad grid before creating any file
    from .. import __version__

    store = ResultStore(out)
    others = sorted("an unknown version" if v is None else str(v) for v in store.versions() - {__version__})
    if others and not allow_version_mix:
        raise VersionMixError(
            f"out: {out} holds results of supcomp {', '.join(others)}, this is {__version__}; "
            "use another --out, or allow_version_mix=True (--allow-version-mix) to add this version's rows"
        )
    if others:
        log.warning("%s: adding supcomp %s rows to a table with rows of %s", out, __version__, ", ".join(others))
    done = store.done_keys(retry_failed=retry_failed, need_weights=save_weights)
    parallel = workers if not ray else 1
    points, packs = plan(grid, done, min_packs=parallel)
    n_todo = sum(len(p) for p in packs)
    base = {"grid": grid.name}
    if save_weights:
        base["_weights_dir"] = weights_dir(out)
    if ray:
        gen = executors.ray_tasks(
            packs,
            exp.name,
            exp_path,
            base,
            address=ray,
            num_cpus=ray_cpus,
            num_gpus=ray_gpus,
            retries=retries,
            init_kwargs=ray_init_kwargs,
        )
    elif workers > 1:
        gen = executors.pool(packs, exp.name, exp_path, base, workers, threads=threads, retries=retries)
    else:
        gen = executors.serial(packs, exp.name, exp_path, base, threads=threads)
    log.info("sweep %s: %d points, %d to run in %d packed runs -> %s", grid.name, len(points), n_todo, len(packs), out)
    t0 = time.perf_counter()
    n_run = n_failed = 0
    interrupted = False
    bar = progress_bar(
        total=len(points),
        initial=len(points) - n_todo,
        desc=f"sweep {grid.name}",
        unit="pt",
        enabled=progress,
        smoothing=0.1,
    )
    try:
        for _, rows in gen:
            store.append(rows)
            n_run += len(rows)
            n_failed += sum(r["status"] != "ok" for r in rows)
            bar.update(len(rows))
            if n_failed:
                bar.set_postfix(failed=n_failed)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        gen.close()
        bar.close()
        store.snapshot()
    summary = SweepSummary(
        out=out,
        n_points=len(points),
        n_skipped=len(points) - n_todo,
        n_run=n_run,
        n_failed=n_failed,
        n_packs=len(packs),
        wall_s=time.perf_counter() - t0,
        interrupted=interrupted,
    )
    if interrupted:
        raise SweepInterrupted(summary)
    return summary
