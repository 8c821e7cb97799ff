"""Load of a shared machine: the CPU share other processes take, and waiting for them to go quiet."""

from __future__ import annotations

import os
import time


class CpuMeter:
    """CPU time used by *other* processes while it runs, as a fraction of all CPUs (from /proc/stat
    minus this process and its children): how much a shared machine disturbed the timings."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def foreign(self) -> float | None:
        """The share of all CPUs other processes used since construction, or None without /proc/stat."""
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        other = (busy - self.busy0) - (self._own() - self.own0)
        return max(0.0, other / max(wall * (os.cpu_count() or 1), 1e-9))


def wait_quiet(max_wait_s: float, threshold: float = 0.1, log=print) -> float | None:
    """Wait (at most ``max_wait_s``) until other processes use < ``threshold`` of the CPUs over 1 s;
    returns the last share measured (None without /proc/stat)."""
    t0 = time.perf_counter()
    said = False
    while True:
        m = CpuMeter()
        time.sleep(1.0)
        f = m.foreign()
        if f is None or f < threshold:
            return f
        if time.perf_counter() - t0 >= max_wait_s:
            log(f"  machine still busy after {max_wait_s:.0f} s (other processes {100 * f:.0f}%), going on")
            return f
        if not said:
            log(f"  other processes use {100 * f:.0f}% of the CPUs; waiting up to {max_wait_s:.0f} s")
            said = True


class QuietWaiter:
    """Waits for a quiet machine before each case, at most ``total_s`` of waiting in all."""

    def __init__(self, per_wait_s: float, total_s: float = 120.0, log=print):
        self.per_wait_s, self.total_s, self.log, self.waited = per_wait_s, total_s, log, 0.0

    def __call__(self) -> float | None:
        if self.per_wait_s <= 0 or self.waited >= self.total_s:
            return None
        t0 = time.perf_counter()
        f = wait_quiet(min(self.per_wait_s, self.total_s - self.waited), log=self.log)
        self.waited += time.perf_counter() - t0
        return f
