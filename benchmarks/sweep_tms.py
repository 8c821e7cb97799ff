"""Wall time of a 200-point TMS phase-diagram sweep: packed into one instance-batched run vs point by point.

The grid: n=2, m=1, ReLU output; 10 relative importances (0.1..10, log) x 10 densities (1..0.01, log) x
2 seeds = 200 points; lr 3e-3 and the batch size of ``supcomp tms phase``; the same number of steps for
every arm (fewer than the experiment's 4,000, to keep the benchmark to minutes; the per-point fixed
costs, evaluation and table writes, weigh a little more than they would at 4,000). Every arm is a full ``supcomp.sweep.run_sweep`` into a fresh
table (metrics, exact quadrature loss, journal writes included):

* packed, fused         all 200 points in one run (``max_instances=256``), supcomp's fused trainer
* point by point, reference   one run per point, ``backend="reference"`` (the papers' einsum code):
                        the baseline
* point by point, fused one run per point, fused trainer (how much is the kernel, how much the packing)
* packed, reference     one run of 200 instances with the einsum trainer

Arms run interleaved in ``--rounds`` rounds (``supcomp.utils.timing.time_interleaved``, the order
rotated every round); medians are reported. One thread throughout (the TMS
experiments' rule for tiny models; on this shared 2-core machine a second thread only adds contention).

    python benchmarks/sweep_tms.py [--steps 200] [--batch 256,128] [--rounds 2] [--append benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common.results import heading, put_section  # noqa: E402

from supcomp.sweep import Grid, run_sweep  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

ARMS = (
    ("packed, fused", 256, "fused"),
    ("point by point, reference", 1, "reference"),
    ("point by point, fused", 1, "fused"),
    ("packed, reference", 256, "reference"),
)
BASELINE = "point by point, reference"


def grid(steps, batch, max_instances, backend) -> Grid:
    return Grid(
        "tms",
        name="bench_phase",
        max_instances=max_instances,
        fixed=dict(
            n_features=2, n_hidden=1, kind="relu_output", steps=steps, batch_size=batch, lr=3e-3, backend=backend
        ),
        axes=dict(importance={"logspace": [-1, 1, 10]}, density={"logspace": [0, -2, 10]}, seed=[0, 1]),
    )


def run(steps=200, batches=(256, 128), rounds=2, log=print):
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:  # warm-up: imports and first calls out of the timings
        for _, mi, backend in ARMS:
            g = grid(2, 16, mi, backend)
            g.axes["seed"] = [0]
            g.__post_init__()
            run_sweep(g, out=os.path.join(d, f"w{mi}{backend}.jsonl"), progress=False)
    rows = []
    for B in batches:
        packs = {}

        def arm(name, mi, backend):
            def call():
                with tempfile.TemporaryDirectory() as d:
                    t0 = time.perf_counter()
                    s = run_sweep(grid(steps, B, mi, backend), out=os.path.join(d, "r.jsonl"), progress=False)
                    t = time.perf_counter() - t0
                assert s.n_run == 200 and s.n_failed == 0, s
                packs[name] = s.n_packs
                log(f"batch {B}: {name}: {t:.2f} s ({s.n_packs} runs)")

            return call

        times = time_interleaved({name: arm(name, mi, backend) for name, mi, backend in ARMS}, reps=rounds, warmup=0)
        base = times[BASELINE].median
        for name, _, _ in ARMS:
            t = times[name].median
            rows.append(
                dict(
                    batch=B,
                    arm=name,
                    runs=packs[name],
                    s=t,
                    ms_per_point=1e3 * t / 200,
                    speedup=base / t,
                    all_s=list(times[name].samples),
                )
            )
    return rows


def section(rows, steps, rounds, load0, load1, wall):
    lines = [
        heading("Sweep: 200-point TMS phase diagram, packed vs point by point", "sweep_tms.py"),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, 1 thread, "
        f"load average at start {load0}, at end {load1}, {wall:.0f} s. Grid: n=2, m=1, ReLU output, 10 "
        f"importances x 10 densities x 2 seeds = 200 points, lr 3e-3, **{steps} steps per point for every arm** "
        f"(the experiment itself uses 4,000). Each arm is a whole `run_sweep` into "
        f"a fresh table; medians of {rounds} interleaved rounds.",
        "",
        "| batch | arm | runs | wall s | ms / point | speed-up vs point by point, reference |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['arm']} | {r['runs']} | {r['s']:.2f} | {r['ms_per_point']:.1f} | "
            f"{r['speedup']:.1f}x |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", default="256,128", help="batch sizes, comma-separated (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--append", default=None, help="put the section into this file, replacing its older version")
    args = ap.parse_args(argv)
    load0 = " ".join(open("/proc/loadavg").read().split()[:3])
    t0 = time.time()
    rows = run(args.steps, [int(b) for b in args.batch.split(",")], args.rounds)
    load1 = " ".join(open("/proc/loadavg").read().split()[:3])
    text = section(rows, args.steps, args.rounds, load0, load1, time.time() - t0)
    print(text)
    if args.append:
        put_section(args.append, text)


if __name__ == "__main__":
    main()
