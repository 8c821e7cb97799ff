"""Shared pieces of the training-step benchmarks (tms_train.py, cc_train.py): interleaved timing, rows, table."""
from __future__ import annotations

import os
import statistics
import time

CEILING_GFLOPS = 190.0  # fp32 GEMM ceiling of this machine, 2 threads


def time_round_robin(fns: dict, reps: int, warmup: int = 2) -> dict:
    """Median seconds per call of each callable; calls interleaved, the order rotated every round."""
    for f in fns.values():  # warm-up (and compile)
        for _ in range(warmup):
            f()
    ts = {k: [] for k in fns}
    for r in range(reps):
        for k in list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]:
            t0 = time.perf_counter()
            fns[k]()
            ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in ts.items()}


def step_rows(size: str, med: dict, flop: float, ref: str = "supcomp fused") -> list[dict]:
    """One row per provider: ms/step, steps/s, speed-up of ``ref`` (peer time / ref time), GFLOP/s, % of ceiling."""
    return [dict(size=size, provider=k, ms=1e3 * t, steps_per_s=1 / t, ratio=t / med[ref], gflops=flop / t / 1e9,
                 pct=100 * flop / t / 1e9 / CEILING_GFLOPS) for k, t in med.items()]


def format_table(rows, first: str = "size", gflops_label: str = "GFLOP/s", ms_digits: int = 1, sps_digits: int = 2,
                 pct_digits: int = 0) -> str:
    lines = [f"| {first} | provider | ms / step | steps / s | supcomp speed-up (peer time / supcomp time) | "
             f"{gflops_label} | % of {CEILING_GFLOPS:.0f} GFLOP/s |", "|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['provider']} | {r['ms']:.{ms_digits}f} | {r['steps_per_s']:.{sps_digits}f} | "
                     f"{r['ratio']:.2f}× | {r['gflops']:.1f} | {r['pct']:.{pct_digits}f}% |")
    return "\n".join(lines)


def put_section(path: str, text: str):
    """Put a Markdown section ``text`` (its first line a "## " heading) into ``path``: replace the section
    with the same heading (up to the next "## " heading) if the file has one, else append it."""
    heading = text.split("\n", 1)[0]
    old = open(path).read() if os.path.exists(path) else ""
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text if old else text
    else:
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text + (old[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w") as f:
        f.write(new if new.endswith("\n") else new + "\n")
