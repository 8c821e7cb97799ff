"""relu_readout (relu(h Wᵀ + b), forward and backward) against relu(addmm(b, h, W.T)).

    python benchmarks/ops/relu_readout.py [--quick] [--append benchmarks/RESULTS.md]

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

OP = TITLE = "relu_readout"

NOTES = f"""\
- Work: fwd 2·B·n·d FLOPs (the GEMM), fwd+bwd 6·B·n·d (the forward GEMM and the two backward GEMMs); the epilogue is \
not counted; % of ceiling against {FLOP_CEILING / 1e9:.0f} GFLOP/s.
- Peer: `torch.relu(torch.addmm(b, h, W.T))` with torch autograd; fwd+bwd computes the gradients of h, W and b."""

TARGETS = [
    ("fwd", "addmm_relu", 0.9, "parity with relu(addmm) (>= 0.9x)"),
    ("fwd+bwd", "addmm_relu", 0.9, "parity with relu(addmm) (>= 0.9x)"),
]
MEMORY_PROVIDERS = ["supcomp", "addmm_relu"]


def run(opts: cli.Options) -> str:
    return optable.section(OP, opts, notes=NOTES, targets=TARGETS, memory_providers=MEMORY_PROVIDERS)


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
