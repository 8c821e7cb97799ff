"""relu_readout_topk: the k largest entries of relu(h @ W^T + b), computed blockwise.

The [B, n] matrix is never held whole: it is produced a tile at a time and each
tile is folded into a running per-row top-k, so dictionaries of 2^16..2^20
features fit in memory.

Three implementations: ``naive.relu_readout_topk_forward`` (reference, holds
the full matrix), ``supcomp/ops/cpu.py`` + ``csrc/readout.cpp`` (CPU),
``kernels/relu_readout_topk.py`` (Triton). Test: ``tests/test_relu_readout_topk.py``.
"""
from __future__ import annotations

import torch

from . import _validate as V
from . import backends
from .relu_readout import check_readout_args
from .sparse_encode import sparse_encode_backward_op, sparse_encode_op


def _forward(h, W, b, k):
    return tuple(backends.for_tensor(W).relu_readout_topk_forward(h, W, b, k))


@torch.library.custom_op("supcomp::relu_readout_topk", mutates_args=())
def relu_readout_topk_op(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical op: h [I, B, d], W [I, n, d], b [I, n] -> (values [I, B, k], indices [I, B, k] int64)."""
    return _forward(h, W, b, k)


@relu_readout_topk_op.register_fake
def _(h, W, b, k):
    shape = (h.shape[0], h.shape[1], k)
    return h.new_empty(shape), h.new_empty(shape, dtype=torch.int64)


def _setup_context(ctx, inputs, output):
    h, W, b, k = inputs
    vals, idx = output
    ctx.mark_non_differentiable(idx)
    ctx.save_for_backward(h, W, vals, idx)


def _backward(ctx, grad_vals, grad_idx):
    # Only the selected entries carry gradient, and only where relu is active
    # (a selected value is > 0 exactly when its slot is filled). With
    # g = grad_vals on the selected (row, feature) pairs, the pre-activation
    # gradient is a padded sparse matrix, so
    #   grad_h = sparse_encode(idx, g, W)               (gather-sum of W rows)
    #   grad_W = scatter of g * h into the selected rows (sparse_encode's W grad)
    #   grad_b = scatter-add of g
    h, W, vals, idx = ctx.saved_tensors
    g = torch.where(vals > 0, grad_vals, torch.zeros_like(grad_vals)).contiguous()
    need = ctx.needs_input_grad
    grad_h = sparse_encode_op(idx, g, W) if need[0] else None
    grad_W = sparse_encode_backward_op(h, idx, g, W, False, True)[1] if need[1] else None
    grad_b = None
    if need[2]:
        I, n = W.shape[0], W.shape[1]
        flat, gf = idx.flatten(1), g.flatten(1)  # not reshape(I, -1): ambiguous when I == 0
        grad_b = torch.zeros(I, n, dtype=g.dtype, device=g.device).scatter_add_(
            1, flat.clamp(min=0), torch.where(flat >= 0, gf, torch.zeros_like(gf)))
    return grad_h, grad_W, grad_b, None


relu_readout_topk_op.register_autograd(_backward, setup_context=_setup_context)


def relu_readout_topk(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, k: int):
    """Top-k read-out: the ``k`` largest entries of ``relu(h @ W.T + b)``, sorted descending.

    Args:
        h: ``[..., d]`` (``[I, ..., d]`` with an instance axis).
        W: ``[n_features, d]`` (``[I, n_features, d]``).
        b: ``[n_features]`` (``[I, n_features]``), or None for zero.
        k: number of entries kept per row, ``0 <= k <= n_features``.

    Returns:
        ``(values, indices)``, each ``[..., k]``; indices int64.

    Fill rule: when a row has fewer than ``k`` positive entries, the remaining
    slots hold value 0 and index -1 (so the result is a padded sparse code that
    ``sparse_encode`` accepts directly). Ties between equal positive values go
    to the lower feature index. NaN scores are never selected.
    Gradients flow to ``h``, ``W`` and ``b`` through the selected entries.
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    I, n, d, batch, hc, Wc, bc = check_readout_args(h, W, b)
    if k < 0 or k > n:
        raise ValueError(f"k: expected 0 <= k <= n_features = {n}, got {k}")
    vals, idx = _forward(hc, Wc, bc, k) if V.direct_ok(hc, Wc, bc) else relu_readout_topk_op(hc, Wc, bc, k)
    lead = ((I,) if I is not None else ()) + batch
    return vals.reshape(*lead, k), idx.reshape(*lead, k)
