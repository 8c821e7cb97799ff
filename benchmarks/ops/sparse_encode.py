"""sparse_encode (h = Σ_j values[b, j] · W[indices[b, j]]) against F.embedding_bag, dense x @ W and torch.sparse.

    python benchmarks/ops/sparse_encode.py [--quick] [--append benchmarks/RESULTS.md]
    python benchmarks/ops/sparse_encode.py --matrix [--quick] [--append benchmarks/RESULTS.md]   (CPU, vs embedding_bag)

Cases, providers and work counts: ``common/cases.py``; timing and tables: ``common/optable.py``.
"""

from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from common import cli, optable  # noqa: E402
from common.machine import MEM_CEILING  # noqa: E402

OP = TITLE = "sparse_encode"

NOTES = f"""\
- Work: bytes, fwd = 4·B·k·d (the B·k gathered rows of W) + 12·B·k (int64 indices + fp32 values) + 4·B·d (write h); \
fwd+bwd = fwd + 12·B·k·d + 4·n·d + 8·B·d + 24·B·k (gather of W rows again for grad_values, read-modify-write of the \
touched rows of grad_W, zeroing grad_W, reading grad_h twice, indices/values and grad_values). A traffic model, not \
measured traffic, charged to every provider alike; % of ceiling is against {MEM_CEILING / 1e9:.0f} GB/s.
- Peers: `F.embedding_bag(indices, W, per_sample_weights=values, mode="sum")` (the strongest), dense `x @ W` with x \
the dense [B, n] matrix (built outside the timing; 4·B·n bytes, 2 GiB at B=8192, n=65536), `torch.sparse.mm` with x \
as a coalesced COO or a CSR tensor. fwd+bwd computes the gradients of values and W (torch.sparse: of x and W)."""

TARGETS = [
    ("fwd", "embedding_bag", 1.5, ">= 1.5x F.embedding_bag"),
    ("fwd+bwd", "embedding_bag", 1.5, ">= 1.5x F.embedding_bag"),
]
MEMORY_PROVIDERS = ["supcomp", "embedding_bag", "dense_mm", "sparse_csr"]


def run(opts: cli.Options) -> str:
    return optable.section(OP, opts, notes=NOTES, targets=TARGETS, memory_providers=MEMORY_PROVIDERS)


# ---------------------------------------------------------------- CPU matrix against F.embedding_bag

MATRIX_TITLE = "sparse_encode on CPU against F.embedding_bag, the matrix"
MATRIX = {
    "full": [
        dict(B=8192, k=k, n=n, d=d, dist=dist)
        for (n, d) in ((1 << 16, 256), (1 << 16, 768), (1 << 20, 256))
        for k in (32, 64, 128)
        for dist in (("uniform", "zipf") if (n, d, k) == (1 << 16, 256, 32) else ("uniform",))
    ],
    "quick": [dict(B=512, k=k, n=4096, d=d, dist=dist) for k in (8, 32) for d in (64, 96) for dist in ("uniform",)],
}
FWD_BWD_K = 32  # fwd+bwd is timed at this k only (the time budget of a 2-core run)


def matrix_inputs(B, k, n, d, dist, seed=0):
    """fp32 inputs of one matrix case: ids uniform on [0, n) or Zipf (P(f) ~ 1 / (f + 1), shuffled ids)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if dist == "zipf":
        p = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
        idx = torch.multinomial(p, B * k, replacement=True, generator=g).view(B, k)
        idx = torch.randperm(n, generator=g)[idx]
    else:
        idx = torch.randint(0, n, (B, k), generator=g)
    return idx, torch.rand(B, k, generator=g), torch.randn(n, d, generator=g) / d**0.5, torch.randn(B, d, generator=g)


def matrix_section(quick: bool, log=print) -> str:
    """Time supcomp.ops.sparse_encode and F.embedding_bag, interleaved, over the matrix; a RESULTS.md section."""
    import datetime
    import time

    import torch
    import torch.nn.functional as F
    from common.machine import loadavg

    from supcomp.ops import sparse_encode
    from supcomp.utils.timing import time_interleaved

    t0, start_load = time.time(), loadavg()
    rows = []
    for s in MATRIX["quick" if quick else "full"]:
        idx, val, W, gh = matrix_inputs(s["B"], s["k"], s["n"], s["d"], s["dist"])
        Wg, vg = W.clone().requires_grad_(), val.clone().requires_grad_()

        def fb(f):
            def go():
                Wg.grad = vg.grad = None
                f(idx, vg, Wg).backward(gh)

            return go

        def eb(i, v, w):
            return F.embedding_bag(i, w, mode="sum", per_sample_weights=v)

        modes = [("fwd", {"supcomp": lambda: sparse_encode(idx, val, W), "embedding_bag": lambda: eb(idx, val, W)})]
        if s["k"] == FWD_BWD_K or quick:
            modes.append(("fwd+bwd", {"supcomp": fb(sparse_encode), "embedding_bag": fb(eb)}))
        for mode, fns in modes:
            torch.testing.assert_close(fns["supcomp"](), fns["embedding_bag"](), rtol=2e-3, atol=2e-3)
            load = loadavg().split()[0]
            t = time_interleaved(fns, reps=25 if quick else 9, warmup=1, budget_s=None if quick else 20.0)
            sm, em = t["supcomp"].median * 1e3, t["embedding_bag"].median * 1e3
            size = f"B={s['B']} k={s['k']} n={s['n']} d={s['d']} {s['dist']}"
            rows.append((mode, size, sm, em, load))
            log(f"{mode} {size}: supcomp {sm:.3g} ms, embedding_bag {em:.3g} ms, ratio {em / sm:.2f} (load {load})")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"## {MATRIX_TITLE}",
        "",
        f"{when}, `python benchmarks/ops/sparse_encode.py --matrix{' --quick' if quick else ''}`, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load average {start_load} at start, {loadavg()} "
        f'at end, {time.time() - t0:.0f} s. fp32; supcomp and `F.embedding_bag(mode="sum", per_sample_weights)` '
        "timed interleaved (`supcomp.utils.timing.time_interleaved`), medians; **ratio = embedding_bag time / supcomp "
        "time** (>= 1: supcomp at least as fast). fwd+bwd: gradients of values and W. Load is the 1-min average "
        "when the case started; the machine (2 cores) is shared, so a load above 2 makes every time pessimistic and "
        "ratios within about +-10% of 1 a tie.",
        "",
        "| mode | size | supcomp ms | embedding_bag ms | ratio | load |",
        "|---|---|--:|--:|--:|--:|",
    ]
    out += [f"| {m} | {sz} | {a:.3g} | {b:.3g} | {b / a:.2f}x | {ld} |" for m, sz, a, b, ld in rows]
    return "\n".join(out) + "\n"


def matrix_main(argv) -> int:
    import argparse

    import torch
    from common.results import put_section

    ap = argparse.ArgumentParser(description=MATRIX_TITLE)
    ap.add_argument("--matrix", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--append", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = matrix_section(args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(text)
    if args.append:
        put_section(args.append, text)
    return 0


if __name__ == "__main__":
    if "--matrix" in sys.argv[1:]:
        sys.exit(matrix_main(sys.argv[1:]))
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
