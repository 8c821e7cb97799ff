"""The quick benchmark ratios that ``supcomp demo`` prints.

The full benchmark suite (peers, byte / FLOP counts, fraction of the machine's ceiling) lives in
``benchmarks/`` of the repository; this is a few-second version of its headline comparisons at
smaller sizes, timed with the same harness (``supcomp.utils.timing``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops import relu_readout_topk, sparse_encode, superpose
from ..sparse import random_sparse
from ..utils.timing import time_interleaved

__all__ = ["quick_ratios", "format_ratios"]


def quick_ratios(progress=None) -> list[dict]:
    """Headline comparisons at demo sizes. Ratio = peer time / supcomp time (> 1: supcomp faster)."""
    g = torch.Generator().manual_seed(0)
    rows = []

    def add(op, size, ours, peer_name, peer):
        med = time_interleaved({"ours": ours, "peer": peer}, reps=7)
        t_ours, t_peer = 1e3 * med["ours"].median, 1e3 * med["peer"].median
        rows.append(dict(op=op, size=size, peer=peer_name, supcomp_ms=t_ours, peer_ms=t_peer, ratio=t_peer / t_ours))
        if progress is not None:
            progress.update(1)

    B, k, n, d = 4096, 32, 16384, 128
    W = torch.randn(n, d, generator=g)
    idx = torch.randint(0, n, (B, k), generator=g)
    val = torch.rand(B, k, generator=g)
    add(
        "sparse_encode fwd",
        f"B={B} k={k} n={n} d={d}",
        lambda: sparse_encode(idx, val, W),
        "F.embedding_bag",
        lambda: F.embedding_bag(idx, W, per_sample_weights=val, mode="sum"),
    )
    Wg, vg = W.clone().requires_grad_(), val.clone().requires_grad_()
    gh = torch.randn(B, d, generator=g)

    def enc_fb(fn):
        def run():
            fn().backward(gh)
            Wg.grad = vg.grad = None

        return run

    add(
        "sparse_encode fwd+bwd",
        f"B={B} k={k} n={n} d={d}",
        enc_fb(lambda: sparse_encode(idx, vg, Wg)),
        "F.embedding_bag",
        enc_fb(lambda: F.embedding_bag(idx, Wg, per_sample_weights=vg, mode="sum")),
    )

    B, d, n, kk = 1024, 128, 16384, 32
    h = torch.randn(B, d, generator=g)
    W = torch.randn(n, d, generator=g) / d**0.5
    b = torch.full((n,), -0.1)
    add(
        "relu_readout_topk",
        f"B={B} d={d} n={n} k={kk}",
        lambda: relu_readout_topk(h, W, b, kk),
        "torch.topk(relu(addmm))",
        lambda: torch.topk(torch.relu(torch.addmm(b, h, W.T)), kk),
    )

    I, B, n, d = 100, 1024, 400, 30
    idx, val = random_sparse((I, B), n, 0.05, generator=g)
    x = torch.zeros(I, B, n).scatter_add_(-1, idx.clamp(min=0), val * (idx >= 0))
    W = torch.randn(I, n, d, generator=g) * 0.1
    b = torch.zeros(I, n)

    def einsum_model():
        hh = torch.einsum("ibn,ind->ibd", x, W)
        return torch.relu(torch.einsum("ibd,ind->ibn", hh, W) + b[:, None])

    add(
        "superpose (toy model fwd)",
        f"I={I} B={B} n={n} d={d} p=0.05",
        lambda: superpose(idx, val, W, b),
        "TMS einsum",
        einsum_model,
    )
    return rows


def format_ratios(rows: list[dict]) -> str:
    """The rows of :func:`quick_ratios` as a text table: per op and size, supcomp's time beside its peer's
    and the ratio peer / supcomp (> 1: supcomp is faster)."""
    head = f"{'op':<28}{'size':<34}{'peer':<26}{'supcomp ms':>11}{'peer ms':>10}{'ratio':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['op']:<28}{r['size']:<34}{r['peer']:<26}{r['supcomp_ms']:>11.2f}{r['peer_ms']:>10.2f}"
            f"{r['ratio']:>7.2f}x"
        )
    return "\n".join(lines)
