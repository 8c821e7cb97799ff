"""Pure-torch reference implementations of every supcomp op.

Short and obviously right: these define what the C++ and Triton kernels must
compute. They run on any device and dtype, and the tests evaluate them in
float64 as the ground truth. They are also the fallback for devices that have
neither kernel (MPS, XPU, ...) and for CPU half precision.

All functions take the *canonical* layout that the backends share (the public
wrappers in ``supcomp.ops`` reshape to it):

    indices  int64  [I, B, k]   feature ids, -1 = empty slot
    values   float  [I, B, k]
    W        float  [I, n, d]   one feature per row
    h        float  [I, B, d]
    b        float  [I, n]
"""
from __future__ import annotations

import torch


def _gather_rows(W: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """W [I, n, d], indices [I, B, k] (-1 allowed) -> rows [I, B, k, d] (zero rows for -1)."""
    I, n, d = W.shape
    if n == 0:  # every slot is empty (-1); there is no row 0 to gather from
        return W.new_zeros(*indices.shape, d)
    # Advanced indexing W[i, idx] with an instance index broadcast over [B, k].
    rows = W[torch.arange(I, device=W.device)[:, None, None], indices.clamp(min=0)]
    # where, not multiply: an inf/NaN in row 0 must not leak into empty slots.
    return torch.where((indices >= 0).unsqueeze(-1), rows, torch.zeros((), dtype=W.dtype, device=W.device))


def sparse_encode_forward(indices, values, W):
    """h[i, b] = sum_j values[i, b, j] * W[i, indices[i, b, j]] -> [I, B, d]."""
    rows = _gather_rows(W, indices)
    # An empty slot contributes nothing, whatever its value (a NaN/inf there must not give NaN via 0 * inf).
    v = torch.where(indices >= 0, values.to(W.dtype), torch.zeros((), dtype=W.dtype, device=W.device))
    return torch.einsum("ibk,ibkd->ibd", v, rows)


def sparse_encode_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    """Gradients of sparse_encode: (grad_values [I, B, k] or None, grad_W [I, n, d] or None)."""
    grad_values = grad_W = None
    valid = indices >= 0
    if need_values:
        rows = _gather_rows(W, indices)
        grad_values = torch.einsum("ibd,ibkd->ibk", grad_h, rows).to(values.dtype)
    if need_W:
        I, n, d = W.shape
        if n == 0:
            return grad_values, W.new_zeros(W.shape)
        contrib = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).unsqueeze(-1).to(grad_h.dtype) * grad_h.unsqueeze(2)  # [I, B, k, d]
        flat = (indices.clamp(min=0) + torch.arange(I, device=W.device)[:, None, None] * n).reshape(-1)
        grad_W = torch.zeros(I * n, d, dtype=grad_h.dtype, device=W.device)
        grad_W.index_add_(0, flat, contrib.reshape(flat.shape[0], d))  # explicit: d may be 0
        grad_W = grad_W.reshape(I, n, d).to(W.dtype)
    return grad_values, grad_W


def relu_readout_forward(h, W, b):
    """y = relu(h @ W^T + b) -> [I, B, n]."""
    return torch.relu(torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2)))


def relu_readout_backward(grad_y, y, h, W):
    """Gradients of relu_readout given its output y: (grad_h [I,B,d], grad_W [I,n,d], grad_b [I,n])."""
    g = grad_y * (y > 0).to(grad_y.dtype)
    return torch.bmm(g, W), torch.bmm(g.transpose(1, 2), h), g.sum(1)


def relu_readout_topk_forward(h, W, b, k: int):
    """The k largest entries of relu(h @ W^T + b) per row, sorted descending.

    Returns (values [I, B, k], indices [I, B, k] int64). Fill rule: a slot whose
    value is 0 (fewer than k positive entries) gets index -1 and value 0, so the
    result is a valid padded sparse code. Ties among positive values go to the
    lower feature index.
    """
    y = relu_readout_forward(h, W, b)
    # NaN scores are never selected (as in the kernels): a sort would put them first and, filled
    # as (0, -1), they would push real positive entries out of the top k.
    y = torch.where(torch.isnan(y), torch.zeros((), dtype=y.dtype, device=y.device), y)
    # Stable descending sort puts the lower index first among equal values.
    vals, idx = torch.sort(y, dim=-1, descending=True, stable=True)
    vals, idx = vals[..., :k], idx[..., :k]
    idx = torch.where(vals > 0, idx, torch.full_like(idx, -1))
    vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
    return vals, idx


def superpose_forward(indices, values, W, b):
    """y = relu(W W[idx]^T values + b): relu_readout(sparse_encode(indices, values, W), W, b)."""
    return relu_readout_forward(sparse_encode_forward(indices, values, W), W, b)
