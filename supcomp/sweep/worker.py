"""What one packed run does wherever it runs (this process, a pool worker, a Ray task).

``run_pack`` calls the experiment's adapter on the pack's points and turns the metrics into table rows.
If the pack fails as a whole it runs each point alone, so one bad point costs only its own row (with
``status="error"`` and the error text); it never raises for an error inside the experiment.

``base`` holds the columns every row gets; its keys starting with ``_`` are settings, not columns:
``_weights_dir`` (save each point's weights there, see :mod:`.weights`).
"""

from __future__ import annotations

import os
import platform
import socket
import time
import traceback


def machine() -> str:
    """``host (os arch, N cpus)``: recorded in each row."""
    return f"{socket.gethostname()} ({platform.system()} {platform.machine()}, {os.cpu_count()} cpus)"


def limit_threads(threads: int | None) -> None:
    """Limit this process to ``threads`` threads: torch's pool (the supcomp C++ kernels take their thread
    count from it) and OpenMP / BLAS for anything started later."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(int(threads))


def init_pool_worker(threads: int | None, parent_pid: int) -> None:
    """The initializer of a pool worker: die with the driver (:mod:`.lifeline`), then limit threads."""
    from .lifeline import tie_to_parent

    tie_to_parent(parent_pid)
    limit_threads(threads)


def _experiment(name: str, path: str | None):
    from . import registry

    if path is not None and registry.path_of(name) != path:
        registry.register(name, path)
    return registry.get(name)


def _meta(base: dict, pack_s: float, size: int) -> dict:
    from .. import __version__

    m = {k: v for k, v in base.items() if not k.startswith("_")}
    m.update(
        run_s=pack_s / size,
        pack_s=pack_s,
        pack_size=size,
        supcomp_version=__version__,
        machine=machine(),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return m


def _rows(exp, pts, metrics, base, pack_s):
    from .. import __version__
    from .registry import WEIGHTS_KEY
    from .weights import save_point_weights

    out = []
    for pt, met in zip(pts, metrics):
        met = dict(met)
        tensors = met.pop(WEIGHTS_KEY, None)
        clash = set(met) & set(pt["params"])
        if clash:
            raise ValueError(f"{exp.name}: metrics {sorted(clash)} collide with parameter names")
        row = {"key": pt["key"], "experiment": exp.name, "grid": base.get("grid"), "status": "ok", "error": None}
        row.update(pt["params"])
        row.update(met)
        row.update(_meta(base, pack_s, len(pts)))
        if base.get("_weights_dir") and tensors:
            meta = {"key": pt["key"], "experiment": exp.name, "supcomp_version": __version__, "params": pt["params"]}
            row["weights"] = save_point_weights(base["_weights_dir"], pt["key"], tensors, meta)
        out.append(row)
    return out


def error_row(exp_name, pt, err: str, base, run_s):
    """The table row of a point that failed: ``status="error"``, the error text, the point's parameters."""
    row = {"key": pt["key"], "experiment": exp_name, "grid": base.get("grid"), "status": "error", "error": err}
    row.update(pt["params"])
    row.update(_meta(base, run_s, 1))
    return row


def _call(exp, pts):
    metrics = exp.run([pt["params"] for pt in pts])
    if not isinstance(metrics, list) or len(metrics) != len(pts) or not all(isinstance(m, dict) for m in metrics):
        raise TypeError(f"{exp.name}: run() must return one dict of metrics per point ({len(pts)})")
    return metrics


def run_pack(exp_name: str, exp_path: str | None, pts: list[dict], base: dict, threads: int | None = None) -> list:
    """Run one pack (``pts``: ``[{"key", "params"}]``); returns one row per point. ``base`` holds the
    columns every row gets (``grid``, ``executor``, ``attempt``)."""
    limit_threads(threads)
    exp = _experiment(exp_name, exp_path)
    t0 = time.perf_counter()
    try:
        return _rows(exp, pts, _call(exp, pts), base, time.perf_counter() - t0)
    except Exception as e:
        if len(pts) == 1:
            err = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
            return [error_row(exp_name, pts[0], err, base, time.perf_counter() - t0)]
    out = []
    for pt in pts:  # find the failing point(s): every point alone
        out.extend(run_pack(exp_name, exp_path, [pt], base))
    return out
