"""uand: the U-AND all-pairs read-out, supcomp against torch.sparse CSR and dense torch (time and peak memory).

    python benchmarks/ops/uand.py [--quick] [--append benchmarks/RESULTS.md]

1. All pairs of m=2000 inputs (P = 1,999,000 AND estimates per sample), d=8000, p=0.05, batch 256,
   s in (3, 5, 10) active inputs: ``UAnd.read_all_pairs`` (C++, output [B, P] preallocated) against
   the peer ``torch.sparse.mm(R, a.T)`` with the read-out matrix R [P, d] in CSR (built once, not
   timed; its output [P, B] in the layout it prefers). A dense R would take 64 GB.
2. m=500, d=2000, p=0.1, batch 256, s=5: forward + all-pairs read-out, supcomp vs the dense torch
   implementation ``relu(x @ C.T + b) @ R.T`` (R dense [P, d]) and vs the torch.sparse read-out:
   time, and peak memory (RSS high-water mark of a fresh subprocess above its baseline, state
   built inside the measurement).

``--quick``: m=600 in part 1, m=200 in part 2.

Timings: :func:`supcomp.utils.timing.time_interleaved` (one warm-up call each, then interleaved
rounds, order rotated every round, medians); the ratio is peer time / supcomp time. Work counts: the
read-out of one estimate touches |S_i ∩ S_j| ~ d p^2 activations in the peer (2 nnz(R) B FLOP);
supcomp's cost is the output write (4 B P bytes) plus sum over active (b, n) of |L_n|^2 / 2 adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import torch

_BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from common import cli  # noqa: E402
from common.machine import MEM_CEILING, RunContext  # noqa: E402
from common.results import heading  # noqa: E402

from supcomp.uand import UAnd  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

warnings.simplefilter("ignore", UserWarning)  # torch.sparse CSR: "beta state"
TITLE = "U-AND all-pairs read-out"
MEM_CEIL_GBS = MEM_CEILING / 1e9
REPEATS = 3


def interleaved(fns: dict, repeats: int) -> dict:
    """provider -> median seconds."""
    return {k: t.median for k, t in time_interleaved(fns, reps=repeats, warmup=1).items()}


def active(B, m, s, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand(B, m, generator=g), dim=1)[:, :s].contiguous()


def throughput(m, d, p, B, s_values, repeats):
    u = UAnd(m, d, p, seed=0)
    u.pair_counts()
    t0 = time.time()
    R = u.readout_matrix(u.pairs())
    t_build = time.time() - t0
    P = u.n_pairs
    out = torch.empty(B, P)
    rows = []
    for s in s_values:
        a = u.forward(active(B, m, s, seed=s))
        aT = a.T.contiguous()
        med = interleaved(
            {"supcomp": lambda: u.read_all_pairs(a, out=out), "torch.sparse": lambda: torch.sparse.mm(R, aT)}, repeats
        )
        # agreement on a slice (same numbers, different layout)
        ref = torch.sparse.mm(R, aT)
        u.read_all_pairs(a, out=out)
        err = (out[:, :1000].T - ref[:1000]).abs().max().item()
        act = float((a > 0).float().mean())
        for k in ("supcomp", "torch.sparse"):
            rows.append(
                dict(
                    case=f"m={m} d={d} p={p} B={B} s={s}",
                    provider=k,
                    median_ms=1e3 * med[k],
                    est_per_s=B * P / med[k],
                    ratio=med["torch.sparse"] / med[k],
                    active_frac=act,
                    out_gbs=4 * B * P / med[k] / 1e9,
                    max_abs_diff=err,
                    peer_gflops=2 * R._nnz() * B / med[k] / 1e9 if k == "torch.sparse" else None,
                )
            )
    return rows, dict(R_build_s=t_build, R_nnz=R._nnz())


MEM_SCRIPT = r"""
import json, re, sys, time, warnings, torch
warnings.simplefilter("ignore")
from supcomp.uand import UAnd
def hwm():
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
m, d, p, B, s, prov = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
g = torch.Generator().manual_seed(s)
idx = torch.argsort(torch.rand(B, m, generator=g), dim=1)[:, :s].contiguous()
UAnd(20, 40, 0.5).read_all_pairs(UAnd(20, 40, 0.5).forward(idx[:1, :2].clamp(max=19)))  # warm kernels
torch.relu(torch.randn(4, 4) @ torch.randn(4, 4))
open("/proc/self/clear_refs", "w").write("5")
base = hwm()
t = time.perf_counter()
if prov == "supcomp":
    u = UAnd(m, d, p, seed=0)
    est = u.read_all_pairs(u.forward(idx))
elif prov == "supcomp streamed":
    u = UAnd(m, d, p, seed=0)
    tot = 0.0
    for p0, p1, e in u.iter_all_pairs(u.forward(idx), block_pairs=1 << 14):
        tot += float(e.sum())
elif prov == "dense torch":
    u = UAnd(m, d, p, seed=0)
    C = u.connection_matrix()
    R = u.readout_matrix(u.pairs()).to_dense()
    x = u.input_values(idx)
    est = torch.relu(x @ C.T + u.bias) @ R.T
elif prov == "torch.sparse":
    u = UAnd(m, d, p, seed=0)
    R = u.readout_matrix(u.pairs())
    est = torch.sparse.mm(R, u.forward(idx).T.contiguous())
print(json.dumps(dict(extra=hwm() - base, seconds=time.perf_counter() - t)))
"""


def memory(m, d, p, B, s):
    rows = []
    for prov in ("supcomp", "supcomp streamed", "dense torch", "torch.sparse"):
        r = subprocess.run(
            [sys.executable, "-c", MEM_SCRIPT, str(m), str(d), str(p), str(B), str(s), prov],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(dict(provider=prov, **json.loads(r.stdout.strip().splitlines()[-1])))
    return rows


def dense_time(m, d, p, B, s, repeats):
    u = UAnd(m, d, p, seed=0)
    u.pair_counts()
    idx = active(B, m, s, seed=s)
    C = u.connection_matrix()
    Rs = u.readout_matrix(u.pairs())
    R = Rs.to_dense()
    out = torch.empty(B, u.n_pairs)
    med = interleaved(
        {
            "supcomp": lambda: u.read_all_pairs(u.forward(idx), out=out),
            "dense torch": lambda: torch.relu(u.input_values(idx) @ C.T + u.bias) @ R.T,
            "torch.sparse": lambda: torch.sparse.mm(Rs, u.forward(idx).T.contiguous()),
        },
        repeats,
    )
    ref = torch.relu(u.input_values(idx) @ C.T + u.bias) @ R.T
    diff = (u.read_all_pairs(u.forward(idx)) - ref).abs().max().item()
    return [
        dict(
            case=f"m={m} d={d} p={p} B={B} s={s}",
            provider=k,
            median_ms=1e3 * v,
            est_per_s=B * u.n_pairs / v,
            ratio=v / med["supcomp"],
            max_abs_diff=diff,
        )
        for k, v in med.items()
    ]


def markdown(res, ctx_line: str, flags: str) -> str:
    L = [
        heading(TITLE, "ops/uand.py", flags),
        "",
        f"{ctx_line} Medians of {res['repeats']} interleaved repeats; "
        "ratio = peer time / supcomp time (> 1: supcomp faster).",
        "",
        "All pairs (P = m(m-1)/2 estimates per sample), supcomp `read_all_pairs` (C++, [B, P] output "
        "preallocated) vs `torch.sparse.mm(R_csr, a.T)` (R [P, d] CSR built once, "
        f"{res['peer']['R_nnz']:,} nnz, build {res['peer']['R_build_s']:.1f} s not timed):",
        "",
        f"| case | provider | ms | AND estimates / s | speed-up | active neurons | output write GB/s (% of {MEM_CEIL_GBS:.0f}) |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in res["throughput"]:
        L.append(
            f"| {r['case']} | {r['provider']} | {r['median_ms']:.0f} | {r['est_per_s']:.3g} | "
            f"{r['ratio']:.2f}× | {100 * r['active_frac']:.2f}% | {r['out_gbs']:.1f} "
            f"({100 * r['out_gbs'] / MEM_CEIL_GBS:.0f}%) |"
        )
    L += [
        "",
        "Forward + all pairs against the dense torch implementation `relu(x @ C.T + b) @ R.T`:",
        "",
        "| case | provider | ms | AND estimates / s | supcomp speed-up |",
        "|---|---|--:|--:|--:|",
    ]
    for r in res["dense"]:
        L.append(f"| {r['case']} | {r['provider']} | {r['median_ms']:.1f} | {r['est_per_s']:.3g} | {r['ratio']:.1f}× |")
    L += [
        "",
        f"Peak memory above the baseline (RSS high-water mark, fresh subprocess, model state built inside; "
        f"{res['dense'][0]['case']}):",
        "",
        "| provider | extra MB | fraction of dense torch |",
        "|---|--:|--:|",
    ]
    dense_mb = next(r["extra"] for r in res["memory"] if r["provider"] == "dense torch") / 2**20
    for r in res["memory"]:
        mb = r["extra"] / 2**20
        L.append(f"| {r['provider']} | {mb:.1f} | {mb / dense_mb:.3f} |")
    L += ["", "<!-- uand rows", json.dumps(res), "-->", ""]
    return "\n".join(L)


def run(opts: cli.Options) -> str:
    """Run both parts and the memory subprocesses; return the RESULTS.md section."""
    ctx = RunContext()
    res = dict(quick=opts.quick, repeats=REPEATS)
    m = 600 if opts.quick else 2000
    dm, dd = (200, 2000) if opts.quick else (500, 2000)
    opts.log(f"uand: all pairs, m={m}")
    res["throughput"], res["peer"] = throughput(m, 8000, 0.05, 256, (3, 5, 10), REPEATS)
    opts.log(f"uand: dense peer and memory, m={dm} d={dd}")
    res["dense"] = dense_time(dm, dd, 0.1, 256, 5, REPEATS)
    res["memory"] = memory(dm, dd, 0.1, 256, 5)
    return markdown(res, ctx.line(), opts.flags)


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
