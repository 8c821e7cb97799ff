"""The one timing harness: providers timed in interleaved rounds, medians reported.

Every benchmark (``benchmarks/``), the demo's quick ratios and the studies that time code use
:func:`time_interleaved`. Calls of the providers are interleaved, with the order rotated every
round, so a slow phase of a shared machine (another process, frequency changes, memory reclaim)
lands on every provider alike; the median and the 20th/80th percentiles of ``time.perf_counter``
wall times are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "time_interleaved", "timeit"]


@dataclass(frozen=True)
class Timing:
    """Wall times of one provider, in seconds: median, 20th and 80th percentiles, and every sample."""

    median: float
    p20: float
    p80: float
    samples: tuple[float, ...]


def _quantile(sorted_ts: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between the closest samples (numpy's default)."""
    pos = q * (len(sorted_ts) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ts) - 1)
    return sorted_ts[lo] + (pos - lo) * (sorted_ts[hi] - sorted_ts[lo])


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    reps: int = 7,
    warmup: int = 1,
    budget_s: float | None = None,
    budget_per_provider_s: float | None = None,
    min_reps: int = 3,
    sync: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time each provider of ``fns`` in interleaved rounds.

    Args:
        fns: provider name -> a call to time (no arguments).
        reps: rounds (every provider once per round), at most.
        warmup: untimed calls of each provider first (compilation, caches).
        budget_s: stop after the round in which the timed total passes this many seconds
            (at least ``min_reps`` rounds); None: no total budget.
        budget_per_provider_s: give each provider about this many seconds of timed calls: after
            its first timed call, its repeat count becomes ``budget / that time``, clamped to
            ``[min_reps, reps]``; a provider with all its samples sits out the later rounds, so
            a slow peer does not cut the samples of a fast one. None: every provider ``reps``.
        min_reps: the fewest samples of each provider when a budget is set.
        sync: called after each call before the clock stops (``torch.cuda.synchronize`` on a GPU).

    Returns:
        provider name -> :class:`Timing` (median, interpolated 20th and 80th percentiles, samples).

    Raises:
        ValueError: ``fns`` is empty or ``reps < 1``.
    """
    if not fns or reps < 1:
        raise ValueError("fns, reps: expected at least one provider and reps >= 1")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
        if sync is not None:
            sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    wanted = dict.fromkeys(names, reps)
    spent = 0.0
    for r in range(reps):
        order = [n for n in names[r % len(names) :] + names[: r % len(names)] if len(times[n]) < wanted[n]]
        if not order:
            break
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            if sync is not None:
                sync()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            spent += dt
            if budget_per_provider_s is not None and len(times[name]) == 1:
                wanted[name] = max(min_reps, min(reps, int(budget_per_provider_s / max(dt, 1e-9))))
        if budget_s is not None and r + 1 >= min_reps and spent >= budget_s:
            break
    out = {}
    for name, ts in times.items():
        srt = sorted(ts)
        out[name] = Timing(statistics.median(srt), _quantile(srt, 0.2), _quantile(srt, 0.8), tuple(ts))
    return out


def timeit(fn: Callable[[], object], reps: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds (:func:`time_interleaved` with one provider)."""
    return 1e3 * time_interleaved({"fn": fn}, reps=reps, warmup=warmup)["fn"].median
