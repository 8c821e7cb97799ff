"""Shared helpers of the sweep tests: a small TMS grid and table comparison."""

import contextlib

from supcomp.sweep import Experiment, Grid

#: columns that legitimately differ between runs of the same point (timing, where and how it ran)
VOLATILE = {"run_s", "pack_s", "pack_size", "finished_at", "executor", "machine", "attempt"}


def small_grid(name="t", max_instances=256, steps=40, **axes) -> Grid:
    """n=3, m=2 ReLU-output toy models, a few dozen steps: fast, but trained enough to differ by seed."""
    axes = axes or dict(density={"logspace": [0, -1, 3]}, importance=[1.0, 3.0], seed=[0, 1])
    fixed = dict(n_features=3, n_hidden=2, steps=steps, batch_size=32, lr=1e-2)
    fixed = {k: v for k, v in fixed.items() if k not in axes}
    return Grid("tms", fixed=fixed, axes=axes, name=name, max_instances=max_instances)


def by_key(rows):
    return {r["key"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in rows}


def _dying_run(points):
    """A test adapter: the worker process dies (as if killed) while the marker file is absent, once per
    marker; with ``always`` it dies every time."""
    import os

    p = points[0]
    if p["always"] or not os.path.exists(p["marker"]):
        open(p["marker"], "w").close()
        os._exit(3)
    return [{"y": q["x"] * 2} for q in points]


def _dying():
    from supcomp.sweep import Experiment

    return Experiment("dying", _dying_run, per_instance=frozenset({"x"}), required=("x", "marker", "always"))


DYING = _dying()


def _failing_run(points):
    """A test adapter: a point with negative ``x`` raises; the others return ``y = 2x``."""
    bad = [p["x"] for p in points if p["x"] < 0]
    if bad:
        raise ValueError(f"x: negative values {bad} are refused by this adapter")
    return [{"y": p["x"] * 2} for p in points]


FAILING = Experiment("failing", _failing_run, per_instance=frozenset({"x"}), required=("x",))


def _sleepy_run(points):
    """A test adapter: writes ``<dir>/<pid>`` and sleeps ``sleep`` seconds (the worker-death test kills the
    driver meanwhile)."""
    import os
    import time

    open(os.path.join(points[0]["dir"], str(os.getpid())), "w").close()
    time.sleep(points[0]["sleep"])
    return [{"y": p["x"]} for p in points]


SLEEPY = Experiment("sleepy", _sleepy_run, per_instance=frozenset(), required=("x", "sleep", "dir"))


@contextlib.contextmanager
def restore_registry():
    """Experiments registered inside stay inside (error messages elsewhere list the registered names)."""
    from supcomp.sweep import registry

    saved = dict(registry._REGISTRY), dict(registry._LOADED)
    try:
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved[0])
        registry._LOADED.clear()
        registry._LOADED.update(saved[1])
