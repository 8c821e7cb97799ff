"""superpose (the toy model's forward relu(x W Wᵀ + b) of I instances, x sparse) against the TMS einsum code.

    python benchmarks/ops/superpose.py [--quick] [--append benchmarks/RESULTS.md]

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

OP = TITLE = "superpose"

NOTES = f"""\
- Work: useful FLOPs, fwd = 2·I·B·n·d (read-out) + 2·I·B·nnz·d (read-in over the nonzeros; nnz = mean nonzeros \
per row), fwd+bwd = 3× that; the dense einsum's 2·I·B·n·d read-in is not counted as work (its own GEMM rate is \
shown next to it); % of ceiling against {FLOP_CEILING / 1e9:.0f} GFLOP/s.
- Peers: the TMS papers' instance-batched einsum on the dense x [I, B, n] (built outside the timing), its \
`torch.compile` (compiled once before timing; not in --quick), and supcomp unfused, \
`relu_readout(sparse_encode(..))`, whose ratio is unfused / fused time. fwd+bwd: W and b require grad (x is data)."""


def run(opts: cli.Options) -> str:
    return optable.section(OP, opts, notes=NOTES)


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
