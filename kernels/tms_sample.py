"""tms_sample: the independent features of a dense toy-model batch, drawn in one Triton kernel.

The "triton" implementation of ``supcomp.ops.tms_sample`` (see the recipe there): for rows with
keys ``kon``, ``kval`` (uint32 values held in int64, ``[R]``) and thresholds ``thr`` ``[i, n]``,
feature f of a row is on when ``mix32(kon + f * 0x9E3779B9) <= thr[f]`` and its value is
``(mix32(kval + f * 0x9E3779B9) >> 8) / 2^24`` (``2u - 1`` when signed). One program per
(row, block of features); all arithmetic is uint32, which wraps modulo 2^32 as the recipe needs.
The reference does the same in about ten int64 tensor passes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import check_sizes, clamp_pow2, on_tensor_device


@triton.jit
def _mix32(x):
    """murmur3's 32-bit finaliser (uint32 in, uint32 out)."""
    x = x ^ (x >> 16)
    x = x * 0x85EBCA6B
    x = x ^ (x >> 13)
    x = x * 0xC2B2AE35
    return x ^ (x >> 16)


@triton.jit
def _independent_kernel(kon_ptr, kval_ptr, thr_ptr, on_ptr, u_ptr, B, n, SIGNED: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # row = i * B + b
    inst = row // B
    f = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = f < n
    kon = tl.load(kon_ptr + row).to(tl.uint32)
    kval = tl.load(kval_ptr + row).to(tl.uint32)
    fo = f.to(tl.uint32) * 0x9E3779B9
    thr = tl.load(thr_ptr + inst * n + f, mask=mask, other=0)
    on = _mix32(kon + fo).to(tl.int64) <= thr
    u = (_mix32(kval + fo) >> 8).to(tl.float32) * (1.0 / 16777216.0)
    if SIGNED:
        u = 2.0 * u - 1.0
    tl.store(on_ptr + row * n + f, on.to(tl.int8), mask=mask)
    tl.store(u_ptr + row * n + f, u, mask=mask)


@on_tensor_device
def tms_sample_independent(kon: torch.Tensor, kval: torch.Tensor, thr: torch.Tensor, signed: bool):
    """kon, kval ``[i, B]`` int64 (uint32 values), thr ``[i, n]`` int64 -> (on [i, B, n] bool, u [i, B, n] float32)."""
    i, B = kon.shape
    n = thr.shape[1]
    on = torch.empty(i, B, n, dtype=torch.int8, device=kon.device)
    u = torch.empty(i, B, n, dtype=torch.float32, device=kon.device)
    if i * B * n == 0:
        return on.bool(), u
    BLOCK = clamp_pow2(n, 16, 1024)
    grid = (i * B, triton.cdiv(n, BLOCK))
    check_sizes("tms_sample", grid, n_features=n)
    _independent_kernel[grid](
        kon.contiguous(), kval.contiguous(), thr.contiguous(), on, u, B, n, SIGNED=bool(signed), BLOCK=BLOCK
    )
    return on.view(torch.bool), u
