"""The "cpp" backend: CPU tensors through the C++ kernels of ``supcomp._C``.

Tensors are handed to C++ as zero-copy numpy views (``Tensor.numpy()``);
outputs are allocated here with torch and filled in place. Functions follow
the backend contract in ``supcomp.ops.backends`` (canonical layout, see
``supcomp.ops.naive``).

Dense GEMMs run in the BLAS that torch links (``torch.bmm``): we do not
re-implement SGEMM on CPU. The C++ side does everything sparse and every
epilogue (the ReLU after a GEMM that adds the bias, the ReLU mask and bias gradient, the blockwise top-k),
so that no extra pass over a [B, n] matrix is made and the top-k never holds
one.
"""
from __future__ import annotations

import torch

from .. import _C

# Largest GEMM tile (in elements) that relu_readout_topk materialises at once:
# 4M floats = 16 MiB, a few per cent of the [B, n] matrix at benchmark sizes.
TOPK_TILE_ELEMENTS = 1 << 22


def _np(t: torch.Tensor):
    return t.detach().numpy() if t.requires_grad else t.numpy()


def _threads() -> int:
    # Follow torch's setting, so torch.set_num_threads governs supcomp too.
    return torch.get_num_threads()


def sparse_encode_forward(indices, values, W):
    I, _, d = W.shape
    out = torch.empty(I, indices.shape[1], d, dtype=W.dtype)
    _C.sparse_encode_forward(_np(indices), _np(values), _np(W), _np(out), _threads())
    return out


def sparse_encode_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    grad_values = grad_W = None
    if need_values and need_W:  # one pass over the slots for both
        grad_values, grad_W = torch.empty_like(values), torch.empty_like(W)
        _C.sparse_encode_backward(_np(grad_h), _np(indices), _np(values), _np(W), _np(grad_values), _np(grad_W),
                                  _threads())
        return grad_values, grad_W
    if need_values:
        grad_values = torch.empty_like(values)
        _C.sparse_encode_backward_values(_np(grad_h), _np(indices), _np(W), _np(grad_values), _threads())
    if need_W:
        grad_W = torch.empty_like(W)  # zeroed by the kernel, per column block
        _C.sparse_encode_backward_weight(_np(grad_h), _np(indices), _np(values), _np(grad_W), _threads())
    return grad_values, grad_W


def relu_readout_forward(h, W, b):
    # The bias goes into the GEMM (beta = 1): at small sizes BLAS's baddbmm measured faster than a bare
    # bmm here, and at large sizes the same; the ReLU is then one in-place C++ pass.
    y = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
    _C.relu_(_np(y), _threads())
    return y


def relu_readout_backward(grad_y, y, h, W):
    g = torch.empty_like(y)
    grad_b = torch.empty(y.shape[0], y.shape[2], dtype=y.dtype)
    _C.relu_grad(_np(grad_y), _np(y), _np(g), _np(grad_b), _threads())
    grad_h = torch.bmm(g, W)
    grad_W = torch.bmm(g.transpose(1, 2), h)
    return grad_h, grad_W, grad_b


def _topk_blocks(I: int, B: int, n: int):
    """Row and feature block sizes for the blockwise top-k: one GEMM tile [I, rb, fb] <= TOPK_TILE_ELEMENTS."""
    fb_min = min(n, 512)
    rb = max(1, min(B, TOPK_TILE_ELEMENTS // max(1, I * fb_min)))
    fb = max(fb_min, min(n, TOPK_TILE_ELEMENTS // max(1, I * rb)))
    return rb, fb


def relu_readout_topk_forward(h, W, b, k: int):
    I, B, _ = h.shape
    n = W.shape[1]
    vals = torch.zeros(I, B, k, dtype=h.dtype)
    idx = torch.full((I, B, k), -1, dtype=torch.int64)
    if B == 0 or n == 0 or k == 0:
        return vals, idx
    rb, fb = _topk_blocks(I, B, n)
    buf = torch.empty(I * rb * fb, dtype=h.dtype)
    Wt = W.transpose(1, 2)
    nv, ni, nb = _np(vals), _np(idx), _np(b)
    for r0 in range(0, B, rb):
        r1 = min(B, r0 + rb)
        hb = h[:, r0:r1]
        for f0 in range(0, n, fb):
            f1 = min(n, f0 + fb)
            tile = buf[: I * (r1 - r0) * (f1 - f0)].view(I, r1 - r0, f1 - f0)
            torch.bmm(hb, Wt[:, :, f0:f1], out=tile)
            _C.topk_merge(_np(tile), nb, nv, ni, r0, f0, _threads())
    return vals, idx


def superpose_forward(indices, values, W, b):
    I, n, _ = W.shape
    out = torch.empty(I, indices.shape[1], n, dtype=W.dtype)
    _C.superpose_forward(_np(indices), _np(values), _np(W), _np(b), _np(out), _threads())
    return out
