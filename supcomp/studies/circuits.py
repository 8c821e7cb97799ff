"""``supcomp circuits``: error sweeps, the capacity plot and the throughput comparison.

Circuits in superposition (Bushnaq & Mendel 2024), with the corrected construction of Linsefors &
Bushnaq (2025, "Circuits in Superposition 2").

=============  =================================================================================
sweeps         error at the last layer against z, T, D/d (= M), S and depth L around one base
               configuration (rotation circuits, overlap-1 assignment by default): measured
               ``total``, ``alone``, ``read_in`` and ``read_out`` (means over layers) with the
               predictions of :func:`measure_interference` drawn in.
capacity       for each width, the largest T whose last-layer error (z active, random assignment:
               no combinatorial cap on T) stays below a threshold, by bisection on measured
               errors; plotted against M = D/(d+2) with the D^2/d^2 (~ M^2) and D/d (~ M) lines.
throughput     superposed forward at T=4000, D=2400 (M=600, S=5, L=8, rotations: the sizes of
               Linsefors & Bushnaq), z=1..4, against the z circuits run one by one through the
               large network and against ``DenseNetwork`` (the same large network, dense torch
               read-in / read-out).
=============  =================================================================================
"""

from __future__ import annotations

import os
import time

import torch

from ..circuits.assign import max_circuits
from ..circuits.circuitset import CircuitSet
from ..circuits.interference import measure_interference
from ..circuits.network import compress
from ..circuits.reference import DenseNetwork
from ..utils.figures import save_figure
from ..utils.progress import progress_bar
from ..utils.timing import time_interleaved

__all__ = [
    "error_row",
    "sweeps",
    "format_sweeps",
    "capacity",
    "format_capacity",
    "throughput",
    "format_throughput",
    "run",
    "demo_section",
]

DEFAULT_OUT = os.path.join("supcomp-report", "circuits")

FULL = dict(
    base=dict(T=1000, M=500, S=5, L=4, z=2),
    n=400,
    z=(1, 2, 3, 4, 6),
    T=(250, 500, 1000, 2000, 3000),
    M=(300, 375, 500, 750, 1000),
    S=(2, 3, 4, 5, 6, 7),
    L=(1, 2, 4, 6, 8),
    cap_M=(100, 200, 400, 800),
    cap_err=0.05,
    cap_L=2,
    cap_z=2,
    cap_n=200,
)
QUICK = dict(
    base=dict(T=100, M=100, S=4, L=2, z=2),
    n=100,
    z=(1, 2, 4),
    T=(50, 100, 200),
    M=(75, 100, 150),
    S=(2, 3, 4),
    L=(1, 2, 3),
    cap_M=(50, 100, 200),
    cap_err=0.05,
    cap_L=2,
    cap_z=2,
    cap_n=100,
)


def _circuits(kind, T, L, d, seed):
    return CircuitSet.rotations(T, L, seed=seed) if kind == "rotations" else CircuitSet.random(T, L, d, seed=seed)


def error_row(kind, T, M, S, L, z, n, assignment="overlap1", d=3, seed=0):
    """Measure one configuration; returns a dict of last-layer and layer-mean errors (measured / predicted)."""
    cs = _circuits(kind, T, L, d, seed)
    net = compress(cs, (cs.d + 2) * M, S, assignment=assignment, seed=seed)
    r = measure_interference(net, cs, z, n, seed=seed + 1)
    p = r["predicted"]
    return dict(
        T=T,
        M=M,
        S=S,
        L=L,
        z=z,
        total=r["total"][-1].item(),
        total_pred=p["total"][-1].item(),
        alone=r["alone"][-1].item(),
        alone_pred=p["alone"][-1].item(),
        read_in=r["read_in"][1:].mean().item(),
        read_in_pred=p["read_in"][1:].mean().item(),
        read_out=r["read_out"].mean().item(),
        read_out_pred=p["read_out"].mean().item(),
        total_se=r["total_se"][-1].item(),
    )


def sweeps(cfg, kind="rotations", assignment="overlap1", progress=True, seed=0):
    """Error against each of z, T, M, S, L (others at the base values). Returns {var: [rows]}."""
    base = cfg["base"]
    jobs = [(var, v) for var in ("z", "T", "M", "S", "L") for v in cfg[var]]
    out = {var: [] for var in ("z", "T", "M", "S", "L")}
    for var, v in progress_bar(jobs, desc="circuits sweeps", enabled=progress):
        c = dict(base, **{var: v})
        if assignment == "overlap1" and c["T"] > max_circuits(c["M"], c["S"]):
            continue  # beyond the overlap-1 capacity: skipped (the table says so)
        out[var].append(error_row(kind, c["T"], c["M"], c["S"], c["L"], c["z"], cfg["n"], assignment, seed=seed))
    return out


def format_sweeps(res) -> str:
    """The result of :func:`sweeps` as a text table: one line per point of each sweep (z, T, M, S, L), the
    measured total, alone, read-in and read-out errors beside their predictions."""
    head = (
        f"{'sweep':>6}{'T':>6}{'M=D/d':>7}{'S':>3}{'L':>3}{'z':>3} | {'total':>9}{'pred':>9} | {'alone':>9}"
        f"{'pred':>9} | {'read_in':>9}{'pred':>9} | {'read_out':>9}{'pred':>9}"
    )
    lines = [head, "-" * len(head)]
    for var, rows in res.items():
        for r in rows:
            lines.append(
                f"{var:>6}{r['T']:>6}{r['M']:>7}{r['S']:>3}{r['L']:>3}{r['z']:>3} | {r['total']:>9.2e}"
                f"{r['total_pred']:>9.2e} | {r['alone']:>9.2e}{r['alone_pred']:>9.2e} | "
                f"{r['read_in']:>9.2e}{r['read_in_pred']:>9.2e} | {r['read_out']:>9.2e}"
                f"{r['read_out_pred']:>9.2e}"
            )
    return "\n".join(lines)


def capacity(cfg, kind="rotations", progress=True, seed=0):
    """Largest T with last-layer MSE <= cfg['cap_err'] (z = cfg['cap_z'], random assignment), per M."""
    rows = []
    L, z, n, S = cfg["cap_L"], cfg["cap_z"], cfg["cap_n"], 5
    for M in progress_bar(cfg["cap_M"], desc="capacity", enabled=progress):

        def err(T):
            cs = _circuits(kind, T, L, 3, seed)
            net = compress(cs, (cs.d + 2) * M, min(S, M), assignment="random", seed=seed)
            act, x = cs.sample(n, z, seed=seed + 1)
            return ((net(x, act) - cs.run(x, act)[-1]) ** 2).mean().item()

        lo, hi = z, z
        while err(hi * 2) <= cfg["cap_err"] and hi * 2 <= 64 * M * M:
            hi *= 2
        lo, hi = hi, hi * 2
        for _ in range(6):  # bisection to ~2 %
            mid = (lo + hi) // 2
            if mid in (lo, hi):
                break
            if err(mid) <= cfg["cap_err"]:
                lo = mid
            else:
                hi = mid
        rows.append(dict(M=M, T_max=lo, err=cfg["cap_err"], z=z, L=L, S=min(S, M)))
    return rows


def format_capacity(rows) -> str:
    """The rows of :func:`capacity` as a text table: per M = D/(d + 2), the most circuits T_max that stay
    under the error target, and T_max / M and T_max / M^2 (the scaling the theory predicts)."""
    lines = [f"{'M=D/(d+2)':>10}{'T_max':>9}{'T_max/M':>9}{'T_max/M^2':>11}", "-" * 39]
    for r in rows:
        lines.append(f"{r['M']:>10}{r['T_max']:>9}{r['T_max'] / r['M']:>9.2f}{r['T_max'] / r['M'] ** 2:>11.4f}")
    return "\n".join(lines)


def throughput(T=4000, M=600, S=5, L=8, zs=(1, 2, 3, 4), batch=256, repeats=5, progress=True, seed=0):
    """Median ms per batch of the superposed forward (z circuits at once), of z single-circuit
    forwards through the same network ("one by one"), and of ``DenseNetwork``; timed with
    :func:`supcomp.utils.timing.time_interleaved` (one warm-up call each, then ``repeats`` rounds
    that run all three in turn). Rows also carry the ratios."""
    cs = CircuitSet.rotations(T, L, seed=seed)
    net = compress(cs, 4 * M, S, seed=seed)
    dense = DenseNetwork(net)
    rows = []
    D = net.width
    with torch.no_grad():
        for z in progress_bar(zs, desc="throughput", enabled=progress):
            act, x = cs.sample(batch, z, seed=seed + z)
            singles = [(act[:, j : j + 1].contiguous(), x[:, j : j + 1].contiguous()) for j in range(z)]
            fns = {
                "superposed": lambda: net(x, act),
                "one_by_one": lambda: [net(xj, aj) for aj, xj in singles],
                "dense_torch": lambda: dense(x, act),
            }
            med = {k: 1e3 * t.median for k, t in time_interleaved(fns, reps=repeats, warmup=1).items()}
            flop = 2 * batch * L * D * D  # the dense layers
            rows.append(
                dict(
                    z=z,
                    batch=batch,
                    T=T,
                    D=D,
                    **{k + "_ms": v for k, v in med.items()},
                    vs_one_by_one=med["one_by_one"] / med["superposed"],
                    vs_dense=med["dense_torch"] / med["superposed"],
                    circuits_per_s=batch * z / med["superposed"] * 1e3,
                    gflops=flop / med["superposed"] / 1e6,
                )
            )
    return rows


_throughput = throughput  # the un-patched function (tests swap ``throughput``)


def format_throughput(rows) -> str:
    """The rows of :func:`throughput` as a text table: per z, the superposed forward's time beside running the
    circuits one by one and the dense torch network, with the speed-ups, circuit runs/s and GFLOP/s."""
    lines = [
        f"{'z':>3}{'superposed ms':>15}{'one-by-one ms':>15}{'dense torch ms':>16}{'x one-by-one':>14}"
        f"{'x dense':>9}{'circuit runs/s':>16}{'layer GFLOP/s':>15}",
        "-" * 103,
    ]
    for r in rows:
        lines.append(
            f"{r['z']:>3}{r['superposed_ms']:>15.1f}{r['one_by_one_ms']:>15.1f}{r['dense_torch_ms']:>16.1f}"
            f"{r['vs_one_by_one']:>14.2f}{r['vs_dense']:>9.2f}{r['circuits_per_s']:>16.0f}"
            f"{r['gflops']:>15.1f}"
        )
    return "\n".join(lines)


def run(out_dir=DEFAULT_OUT, quick=False, progress=True, kind="rotations", assignment="overlap1", seed=0, bench=True):
    """The whole ``supcomp circuits`` report: tables on stdout, PNGs in ``out_dir``. Returns the results."""
    from . import circuits_plots as plots

    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    cfg = QUICK if quick else FULL
    print(
        f"== Circuits in superposition: {kind} circuits, {assignment} assignment, base {cfg['base']}, "
        f"{cfg['n']} samples per point =="
    )
    print("MSEs at the last layer (total, alone = z=1) and means over layers (read_in, read_out); pred = theory")
    res = sweeps(cfg, kind, assignment, progress, seed)
    print(format_sweeps(res))
    paths = [save_figure(plots.plot_sweeps(res), os.path.join(out_dir, "circuits_sweeps.png"), dpi=110)]
    print(
        f"\n== Capacity: largest T with last-layer MSE <= {cfg['cap_err']} (z={cfg['cap_z']}, L={cfg['cap_L']}, "
        f"random assignment, S=5) =="
    )
    cap = capacity(cfg, kind, progress, seed)
    print(format_capacity(cap))
    paths.append(save_figure(plots.plot_capacity(cap), os.path.join(out_dir, "circuits_capacity.png"), dpi=110))
    thr = None
    if bench:
        size = dict(T=500, M=250, L=4, batch=64, repeats=3) if quick else {}
        print(f"\n== Throughput (ms per batch, medians, interleaved; {torch.get_num_threads()} threads) ==")
        thr = throughput(progress=progress, **size)
        print(format_throughput(thr))
        fig = plots.plot_throughput(thr)
        paths.append(save_figure(fig, os.path.join(out_dir, "circuits_throughput.png"), dpi=110))
    print("plots: " + ", ".join(paths))
    print(f"done in {time.time() - t0:.1f} s")
    return dict(sweeps=res, capacity=cap, throughput=thr, paths=paths)


def demo_section(progress=True) -> str:
    """A few-second table for ``supcomp demo``: rotation circuits, z = 1..3, measured vs predicted."""
    cs = CircuitSet.rotations(300, 2, seed=0)
    net = compress(cs, 4 * 120, 4)
    lines = [
        "Circuits in superposition: T=300 rotation circuits, D=480 (M=D/(d+2)=120), S=4, L=2, overlap-1",
        f"{'z':>3}{'total':>10}{'pred':>10}{'read_in':>10}{'pred':>10}{'read_out':>10}{'pred':>10}",
        "-" * 63,
    ]
    for z in progress_bar((1, 2, 3), desc="circuits", enabled=progress):
        r = measure_interference(net, cs, z, 100, seed=1)
        p = r["predicted"]
        lines.append(
            f"{z:>3}{r['total'][-1]:>10.2e}{p['total'][-1]:>10.2e}{r['read_in'][1:].mean():>10.2e}"
            f"{p['read_in'][1:].mean():>10.2e}{r['read_out'].mean():>10.2e}{p['read_out'].mean():>10.2e}"
        )
    return "\n".join(lines)
