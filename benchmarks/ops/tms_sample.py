"""tms_sample: drawing a toy-model batch, supcomp's samplers against the TMS notebook's torch.rand masks.

    python benchmarks/ops/tms_sample.py [--quick] [--append benchmarks/RESULTS.md]

One batch of I instances x B rows x n features, every feature on with probability p (I=100, n=400,
B=1024, p=0.05; ``--quick``: I=20). Providers (same run, interleaved rounds, medians):

* supcomp C++ CSR sampler   ``supcomp.tms.data.BatchSampler(config, B).sample(step)`` (what the CPU
                            trainer draws; counter-based, the same numbers whatever the thread count)
* supcomp dense sampler     ``supcomp.tms.data.DeviceBatchSampler(config, B, device="cpu").sample(step)``:
                            the same numbers as a dense [I, B, n] tensor, in pure torch on CPU
* TMS notebook              ``torch.where(torch.rand(I, B, n) <= p, torch.rand(I, B, n), 0)``

Each call draws a new step's batch. Rates: (row, feature) draws per second, I·B·n per call for every
provider; and each provider's output bytes per second (CSR: 12 bytes a nonzero + 8 an offset; dense:
4·I·B·n) against the machine's memory bandwidth, the floor of any sampler that writes that output.
"""

from __future__ import annotations

import os
import sys

import torch

_BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from common import cli  # noqa: E402
from common.machine import MEM_CEILING, RunContext  # noqa: E402
from common.results import heading  # noqa: E402

from supcomp.tms import ToyModelConfig  # noqa: E402
from supcomp.tms.data import BatchSampler, DeviceBatchSampler  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

TITLE = "tms_sample"
SIZES = {"full": dict(I=100, n=400, B=1024, p=0.05), "quick": dict(I=20, n=400, B=1024, p=0.05)}
REF = "supcomp C++ CSR sampler"
TIMING = {"full": dict(reps=30, budget_s=20.0, min_reps=5), "quick": dict(reps=5, budget_s=2.0, min_reps=3)}


def providers(I: int, n: int, B: int, p: float) -> dict:
    """name -> (call, bytes of its output given the call's result)."""
    cfg = ToyModelConfig(n, 1, n_instances=I, feature_probability=p)
    csr, dense = BatchSampler(cfg, B), DeviceBatchSampler(cfg, B, device="cpu")
    step = {"csr": 0, "dense": 0}

    def draw(sampler, key):
        def call():
            step[key] += 1
            return sampler.sample(step[key])

        return call

    def notebook():
        return torch.where(torch.rand(I, B, n) <= p, torch.rand(I, B, n), torch.zeros(()))

    return {
        REF: (draw(csr, "csr"), lambda b: 12 * b.indices.numel() + 8 * b.offsets.numel()),
        "supcomp dense sampler (pure torch, CPU)": (draw(dense, "dense"), lambda x: 4 * x.numel()),
        "TMS notebook: torch.where(torch.rand <= p, torch.rand, 0)": (notebook, lambda x: 4 * x.numel()),
    }


def density(out) -> float:
    if isinstance(out, torch.Tensor):
        return float((out != 0).float().mean())
    return out.indices.numel() / (out.n_instances * out.batch_size * out.n_features)


def run_rows(quick: bool, log=print) -> list[dict]:
    s = SIZES["quick" if quick else "full"]
    I, n, B, p = s["I"], s["n"], s["B"], s["p"]
    provs = providers(I, n, B, p)
    first = {k: call() for k, (call, _) in provs.items()}  # warm-up call, also the density check
    out_bytes = {k: provs[k][1](v) for k, v in first.items()}
    dens = {k: density(v) for k, v in first.items()}
    del first
    times = time_interleaved(
        {k: call for k, (call, _) in provs.items()}, warmup=0, **TIMING["quick" if quick else "full"]
    )
    ref = times[REF].median
    size = f"I={I} n={n} B={B} p={p}"
    rows = []
    for k, t in times.items():
        gbs = out_bytes[k] / t.median / 1e9
        rows.append(
            dict(
                size=size,
                provider=k,
                ms=1e3 * t.median,
                p20_ms=1e3 * t.p20,
                p80_ms=1e3 * t.p80,
                ratio=t.median / ref,
                draws_per_s=I * B * n / t.median,
                out_mb=out_bytes[k] / 2**20,
                out_gbs=gbs,
                pct=100 * gbs / (MEM_CEILING / 1e9),
                density=dens[k],
            )
        )
        log(f"{size:<28} {k:<58} {1e3 * t.median:9.2f} ms")
    return rows


def format_table(rows: list[dict]) -> str:
    out = [
        "| size | provider | ms (p20–p80) | supcomp speed-up | draws / s | output MB | output GB/s "
        f"(% of {MEM_CEILING / 1e9:.0f}) | density |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        prov = f"**{r['provider']}**" if r["provider"] == REF else r["provider"]
        out.append(
            f"| {r['size']} | {prov} | {r['ms']:.1f} ({r['p20_ms']:.1f}–{r['p80_ms']:.1f}) | "
            f"{r['ratio']:.2f}× | {r['draws_per_s']:.3g} | {r['out_mb']:.0f} | {r['out_gbs']:.1f} "
            f"({r['pct']:.0f}%) | {r['density']:.4f} |"
        )
    return "\n".join(out)


def run(opts: cli.Options) -> str:
    ctx = RunContext()
    rows = run_rows(opts.quick, log=opts.log)
    return (
        f"{heading(TITLE, 'ops/tms_sample.py', opts.flags)}\n\n{ctx.line()} One batch per call, a new step "
        "each call; medians of interleaved rounds. Speed-up = provider time / C++ sampler time (> 1: the C++ "
        "sampler is faster). Draws / s counts I·B·n (row, feature) decisions for every provider; output GB/s "
        "counts each provider's own output (CSR: 12 bytes a nonzero + 8 an offset; dense: 4·I·B·n).\n\n"
        + format_table(rows)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
