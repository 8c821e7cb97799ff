"""Executors: each runs packs and yields their rows as they finish (the driver writes them).

* ``serial``: in this process.
* ``pool``: ``workers`` spawned processes (``concurrent.futures``), each limited to
  ``max(1, cpus // workers)`` threads and tied to the driver (:mod:`.lifeline`: a driver killed even
  with SIGKILL takes its workers with it). A worker that dies (killed, out of memory) breaks the pool: it is
  rebuilt and the unfinished packs resubmitted, at most ``retries`` times per pack; then they are
  recorded as errors. (A dead worker breaks the whole ``concurrent.futures`` pool, so every pack in
  flight then counts an attempt, not only the one that died.)
* ``ray``: one Ray task per pack with ``num_cpus`` / ``num_gpus``; Ray retries a task whose worker or
  node died up to ``retries`` times; the driver takes results with ``ray.wait`` as they come. Ray
  supervises its workers: when the driver dies, Ray ends its job and stops the job's tasks.

Each yields ``(pack_index, rows)``. On KeyboardInterrupt the executor cancels what has not started and
re-raises; rows already yielded are already written.
"""

from __future__ import annotations

import logging
import os

from .worker import error_row, run_pack

log = logging.getLogger(__name__)


def serial(packs, exp_name, exp_path, base, threads=None):
    for i, pts in enumerate(packs):
        yield i, run_pack(exp_name, exp_path, pts, dict(base, executor="local", attempt=1), threads)


def _dead_rows(exp_name, pts, base, attempt, why):
    return [error_row(exp_name, pt, why, dict(base, attempt=attempt), 0.0) for pt in pts]


def pool(packs, exp_name, exp_path, base, workers, threads=None, retries=2):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from .worker import init_pool_worker

    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    todo = list(range(len(packs)))
    attempt = {i: 0 for i in todo}
    # spawn, not fork: forking a process that has run OpenMP regions can deadlock the children
    ctx = mp.get_context("spawn")
    while todo:
        ex = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=init_pool_worker, initargs=(threads, os.getpid())
        )
        futs = {}
        try:
            for i in todo:
                attempt[i] += 1
                b = dict(base, executor=f"local[{workers}]", attempt=attempt[i])
                futs[ex.submit(run_pack, exp_name, exp_path, packs[i], b, threads)] = i
            pending = set(futs)
            broken = False
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futs[f]
                    try:
                        rows = f.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    todo.remove(i)
                    yield i, rows
                if broken:
                    break
            if broken:
                log.warning("a worker process died; rebuilding the pool for %d unfinished pack(s)", len(todo))
                for i in list(todo):
                    if attempt[i] > retries:
                        todo.remove(i)
                        yield (
                            i,
                            _dead_rows(
                                exp_name,
                                packs[i],
                                dict(base, executor=f"local[{workers}]"),
                                attempt[i],
                                f"worker process died {attempt[i]} times running this pack",
                            ),
                        )
        finally:
            ex.shutdown(wait=False, cancel_futures=True)


def ray_tasks(packs, exp_name, exp_path, base, address="auto", num_cpus=1, num_gpus=0, retries=2, init_kwargs=None):
    """Run the packs as Ray tasks. ``address``: ``"auto"`` (a cluster this machine belongs to, e.g. started
    with ``ray start``, or ``RAY_ADDRESS``; else a new local instance) or a cluster address
    (``"ray://host:10001"``, ``"host:6379"``). An already initialised Ray (``ray.init`` by the caller) is
    used as it is."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("the ray executor needs Ray: pip install 'supcomp[ray]'") from e
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "auto") else address, **(init_kwargs or {}))
    task = ray.remote(run_pack).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries, retry_exceptions=False
    )
    threads = max(1, int(num_cpus))
    b = dict(base, executor="ray", attempt=1)
    refs = {task.remote(exp_name, exp_path, pts, b, threads): i for i, pts in enumerate(packs)}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs[ref]
                try:
                    rows = ray.get(ref)
                except Exception as e:  # the task's worker / node died more than `retries` times
                    rows = _dead_rows(
                        exp_name,
                        packs[i],
                        dict(base, executor="ray"),
                        retries + 1,
                        f"ray task failed: {type(e).__name__}: {e}",
                    )
                yield i, rows
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
