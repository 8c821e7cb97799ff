"""Circuits in superposition: throughput of the superposed forward against its peers.

The 2025 post's sizes: T=4000 rotation circuits (d=2), D=2400 (M=600 positions per block), S=5,
L=8, overlap-1 assignment; a batch of B samples with z=1..4 active circuits each. Providers (same
run, interleaved rounds rotated every round, medians):

* supcomp superposed   ``SuperposedNetwork.forward``: sparse read-in (scatter) and read-out (gather)
                       on the supcomp kernels, 8 dense D x D layers (``relu_readout``)
* one by one           the z circuits run one at a time through the same large network (z forwards)
* torch index ops      the same forward in plain torch: ``index_put_`` read-in, advanced-index
                       read-out, ``relu(addmm)`` layers (no supcomp kernel)
* dense torch          ``DenseNetwork``: the same large network with dense read-in
                       ([B, T(d+1)] x [T(d+1), D]) and read-out ([B, D] x [D, T d]) matmuls
* small circuits       the z small circuits run directly (gathered weights, einsum): not a peer of
                       the same computation but the floor any embedding is measured against

Outputs of the superposed, torch-index and dense providers are checked to agree (relative error <= 1e-4) first.
FLOP count (the same for the three large-network providers): 2·B·L·D² for the dense layers (the
sparse read-in / read-out add 2·B·z·S·(d+1) and are not counted); GFLOP/s and % of 190 GFLOP/s refer
to the superposed provider's time. Timing: ``supcomp.utils.timing.time_interleaved`` (one warm-up call each).

    python benchmarks/bench_circuits.py [--quick] [--append benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common.machine import FLOP_CEILING  # noqa: E402
from common.results import heading, put_section  # noqa: E402

from supcomp.circuits import CircuitSet, compress  # noqa: E402
from supcomp.circuits.reference import DenseNetwork, torch_index_forward  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

CEILING_GFLOPS = FLOP_CEILING / 1e9


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(T=4000, M=600, S=5, L=8, zs=(1, 2, 3, 4), batch=256, rounds=7):
    cs = CircuitSet.rotations(T, L, seed=0)
    net = compress(cs, 4 * M, S)
    dense = DenseNetwork(net)
    D = net.width
    rows = []
    with torch.no_grad():
        for z in zs:
            act, x = cs.sample(batch, z, seed=z)
            ref = dense(x, act)
            out = net(x, act)
            for name, o in (("superposed", out), ("torch index ops", torch_index_forward(net, x, act))):
                err = ((o - ref).norm() / ref.norm()).item()
                assert err <= 1e-4, f"{name} vs dense: relative error {err:.2e}"
            singles = [(act[:, j : j + 1].contiguous(), x[:, j : j + 1].contiguous()) for j in range(z)]
            fns = {
                "supcomp superposed": lambda: net(x, act),
                "one by one (z forwards)": lambda: [net(xj, aj) for aj, xj in singles],
                "torch index ops (same network)": lambda: torch_index_forward(net, x, act),
                "dense torch (same network)": lambda: dense(x, act),
                "small circuits directly": lambda: cs.run(x, act),
            }
            med = {k: t.median for k, t in time_interleaved(fns, reps=rounds, warmup=1).items()}
            names = list(fns)
            base = med["supcomp superposed"]
            gflops = 2 * batch * L * D * D / base / 1e9
            for k in names:
                rows.append(
                    dict(
                        z=z,
                        provider=k,
                        ms=1e3 * med[k],
                        ratio=med[k] / base,
                        runs_per_s=batch * z / med[k],
                        gflops=gflops if k == names[0] else None,
                    )
                )
    return rows, dict(T=T, D=D, M=M, S=S, L=L, batch=batch, rounds=rounds)


def markdown(rows, info, cmd, date, load0, load1, secs):
    lines = [
        "",
        heading("Circuits in superposition: superposed forward", "bench_circuits.py"),
        "",
        f"{date}, torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load0} at start, "
        f"{load1} at end, {secs:.0f} s. Command: `{cmd}`.",
        f"T={info['T']} rotation circuits (d=2), D={info['D']} (M={info['M']}), S={info['S']}, L={info['L']}, "
        f"overlap-1, batch {info['batch']}; medians of {info['rounds']} interleaved rounds. Ratio = provider time / "
        "superposed time (> 1: the superposed forward is faster). GFLOP/s counts the dense layers "
        "(2·B·L·D²) of the superposed provider, against the 190 GFLOP/s ceiling.",
        "",
        "| z | provider | ms / batch | circuit runs / s | ratio | GFLOP/s (% of ceiling) |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        g = f"{r['gflops']:.1f} ({100 * r['gflops'] / CEILING_GFLOPS:.0f}%)" if r["gflops"] else ""
        lines.append(
            f"| {r['z']} | {r['provider']} | {r['ms']:.1f} | {r['runs_per_s']:.0f} | {r['ratio']:.2f}× | {g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="T=500, D=1000, L=4, batch 64 (seconds)")
    ap.add_argument(
        "--append",
        default=None,
        help="put the section into this file (benchmarks/RESULTS.md), replacing its older version",
    )
    args = ap.parse_args(argv)
    load0, t0 = load(), time.time()
    kw = dict(T=500, M=250, L=4, batch=64, rounds=5) if args.quick else {}
    rows, info = run(**kw)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmd = "python benchmarks/bench_circuits.py" + (" --quick" if args.quick else "")
    text = markdown(rows, info, cmd, date, load0, load(), time.time() - t0)
    print(text)
    if args.append:
        put_section(args.append, text)


if __name__ == "__main__":
    main()
