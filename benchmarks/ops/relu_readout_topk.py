"""relu_readout_topk (the k largest of relu(h Wᵀ + b), without the [B, n] matrix) against topk(relu(addmm)).

    python benchmarks/ops/relu_readout_topk.py [--quick] [--append benchmarks/RESULTS.md]

Cases, providers and work counts: ``common/cases.py``; timing and tables: ``common/optable.py``.
"""

from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from common import cli, optable  # noqa: E402
from common.machine import FLOP_CEILING  # noqa: E402

OP = TITLE = "relu_readout_topk"

NOTES = f"""\
- Work: 2·B·n·d FLOPs (the GEMM; the epilogue and the top-k are not counted); % of ceiling against \
{FLOP_CEILING / 1e9:.0f} GFLOP/s.
- Peer: `torch.topk(torch.relu(torch.addmm(b, h, W.T)), k)`, which writes the [B, n] matrix the fused kernel never \
materialises (hence the peak-memory comparison). Top-k values and indices are checked (indices agree on ≥ 99%)."""

TARGETS = [("fwd", "addmm_relu_topk", 2.0, ">= 2x topk(relu(addmm))")]
MEMORY_PROVIDERS = ["supcomp", "addmm_relu_topk"]
MEMORY_TARGET = ("addmm_relu_topk", 10.0, "< 1/10 the peak memory of topk(relu(addmm))")


def run(opts: cli.Options) -> str:
    return optable.section(
        OP, opts, notes=NOTES, targets=TARGETS, memory_providers=MEMORY_PROVIDERS, memory_target=MEMORY_TARGET
    )


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
