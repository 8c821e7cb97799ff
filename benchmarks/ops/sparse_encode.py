"""sparse_encode (h = Σ_j values[b, j] · W[indices[b, j]]) against F.embedding_bag, dense x @ W and torch.sparse.

    python benchmarks/ops/sparse_encode.py [--quick] [--append benchmarks/RESULTS.md]

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


if __name__ == "__main__":
    sys.exit(cli.main(run, __doc__.split("\n")[0]))
