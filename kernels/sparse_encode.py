"""sparse_encode: h[i, b] = sum_j values[i, b, j] * W[i, indices[i, b, j]].

Shapes (canonical layout; the reference is in ``supcomp/ops/<op>.py``):
    indices  int64 [I, B, k]   feature ids, -1 = empty slot
    values   float [I, B, k]
    W        float [I, n, d]
    h        float [I, B, d]

The op is a gather of k rows of W per output row, so it is memory bound: the
kernels stream k rows of d numbers per output row and never form the dense
[B, n] code matrix.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import (
    acc_dtype,
    acc_torch_dtype,
    check_sizes,
    clamp_pow2,
    gather_blocks,
    next_pow2,
    num_warps_for,
    on_tensor_device,
)


@triton.jit
def _sparse_encode_forward_kernel(
    idx_ptr,  # [I, B, k] int64
    val_ptr,  # [I, B, k]
    W_ptr,  # [I, n, d]
    h_ptr,  # [I, B, d] output
    B,
    n,
    d,
    k,
    n_row_blocks,  # cdiv(B, BLOCK_B)
    BLOCK_B: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,  # accumulator dtype (fp32, or fp64 for fp64 inputs)
):
    """One program per (instance, block of BLOCK_B rows, block of BLOCK_D columns); loop over the k slots."""
    # Instance and row block share grid axis 0 (axes 1/2 are limited to 65535).
    pid = tl.program_id(0)
    pid_d = tl.program_id(1)
    inst = (pid // n_row_blocks).to(tl.int64)  # int64: I*n*d may exceed 2^31
    rb = pid % n_row_blocks

    offs_b = rb * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_b = offs_b < B
    mask_d = offs_d < d
    rows = inst * B + offs_b  # flat row id in [0, I*B)

    W_inst = W_ptr + inst * n * d
    acc = tl.zeros([BLOCK_B, BLOCK_D], dtype=ACC)
    for j in range(0, k):
        idx = tl.load(idx_ptr + rows * k + j, mask=mask_b, other=-1)
        # Empty slots (-1) load nothing, neither the W row nor the value: masked loads, not a
        # multiply by 0, so an inf/NaN in W row 0 or in the slot's value cannot leak (as in the reference).
        v = tl.load(val_ptr + rows * k + j, mask=mask_b & (idx >= 0), other=0.0).to(ACC)
        wmask = (idx >= 0)[:, None] & mask_d[None, :]
        w = tl.load(W_inst + idx[:, None] * d + offs_d[None, :], mask=wmask, other=0.0).to(ACC)
        acc += v[:, None] * w

    out_mask = mask_b[:, None] & mask_d[None, :]
    tl.store(h_ptr + rows[:, None] * d + offs_d[None, :], acc.to(h_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _sparse_encode_backward_kernel(
    gh_ptr,  # [I, B, d] grad of h
    idx_ptr,  # [I, B, k] int64
    val_ptr,  # [I, B, k]
    W_ptr,  # [I, n, d]
    gv_ptr,  # [I, B, k] grad of values (output; unused unless NEED_VALUES)
    gW_ptr,  # [I, n, d] grad of W, ACC dtype, zero-initialised (unused unless NEED_W)
    B,
    n,
    d,
    k,
    n_row_blocks,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    NEED_VALUES: tl.constexpr,
    NEED_W: tl.constexpr,
    ACC: tl.constexpr,
):
    """One program per (instance, block of BLOCK_B rows); loops over k in BLOCK_K slots and d in BLOCK_D columns.

    grad_values[i, b, j] = <grad_h[i, b], W[i, idx[i, b, j]]>   (row dot products)
    grad_W[i, idx[i, b, j]] += values[i, b, j] * grad_h[i, b]   (scatter with fp32 atomics)

    The scatter touches only rows of W that occur in ``indices``; duplicates,
    within a row or across rows and programs, are summed by the atomics.
    """
    pid = tl.program_id(0)
    inst = (pid // n_row_blocks).to(tl.int64)
    rb = pid % n_row_blocks

    offs_b = rb * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    rows = inst * B + offs_b
    W_inst = W_ptr + inst * n * d
    gW_inst = gW_ptr + inst * n * d

    for k0 in range(0, k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        slot_mask = mask_b[:, None] & (offs_k < k)[None, :]  # [BLOCK_B, BLOCK_K]
        slot_off = rows[:, None] * k + offs_k[None, :]
        idx = tl.load(idx_ptr + slot_off, mask=slot_mask, other=-1)
        valid = idx >= 0
        if NEED_W:
            v = tl.load(val_ptr + slot_off, mask=slot_mask & valid, other=0.0).to(ACC)  # empty slot: value unread
        gv = tl.zeros([BLOCK_B, BLOCK_K], dtype=ACC)
        for d0 in range(0, d, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = offs_d < d
            g = tl.load(
                gh_ptr + rows[:, None] * d + offs_d[None, :], mask=mask_b[:, None] & mask_d[None, :], other=0.0
            ).to(ACC)  # [BLOCK_B, BLOCK_D]
            row_off = idx[:, :, None] * d + offs_d[None, None, :]  # [BLOCK_B, BLOCK_K, BLOCK_D]
            row_mask = valid[:, :, None] & mask_d[None, None, :]
            if NEED_VALUES:
                w = tl.load(W_inst + row_off, mask=row_mask, other=0.0).to(ACC)
                gv += tl.sum(g[:, None, :] * w, axis=2)
            if NEED_W:
                contrib = v[:, :, None] * g[:, None, :]
                tl.atomic_add(gW_inst + row_off, contrib, mask=row_mask)
        if NEED_VALUES:
            tl.store(gv_ptr + slot_off, gv.to(gv_ptr.dtype.element_ty), mask=slot_mask)


@triton.jit
def _sparse_encode_grad_W_csc_kernel(
    gh_ptr,  # [I, B, d] grad of h
    val_ptr,  # [I, B, k]
    perm_ptr,  # [I*B*k] int64: slot ids sorted by (instance, feature), slot order within a feature
    start_ptr,  # [I*n + 1] int64: feature f's slots are perm[start[f]:start[f + 1]]
    gW_ptr,  # [I, n, d] grad of W (output, W's dtype; every row written)
    d,
    k,
    BLOCK_D: tl.constexpr,
    ACC: tl.constexpr,
):
    """One program per (row f of the flattened [I*n, d] grad_W, block of BLOCK_D columns).

    grad_W[f] = sum over the slots s with feature f, in slot order, of values[s] * grad_h[row(s)]:
    a segment reduction over the feature-sorted (CSC) slots. Each element is summed by one program
    in a fixed order, so the result is bit-identical run to run (no atomics), and rows no slot
    touches are written as zeros (no separate zeroing pass).
    """
    f = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < d
    a = tl.load(start_ptr + f)
    e = tl.load(start_ptr + f + 1)
    acc = tl.zeros([BLOCK_D], dtype=ACC)
    q = a
    while q < e:  # a while loop, not range(a, e): Triton 3.6's interpreter cannot index with a loaded scalar
        s = tl.load(perm_ptr + q)
        v = tl.load(val_ptr + s).to(ACC)
        g = tl.load(gh_ptr + (s // k) * d + offs_d, mask=mask_d, other=0.0).to(ACC)
        acc += v * g
        q += 1
    tl.store(gW_ptr + f * d + offs_d, acc.to(gW_ptr.dtype.element_ty), mask=mask_d)


def csc_slots(indices: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The slots of indices [I, B, k] sorted by feature: (perm [I*B*k] int64, start [I*n + 1] int64).

    Slot s (flat over [I, B, k]) of instance i with id f >= 0 has key i*n + f; empty slots get the key
    I*n and sort past every feature. A stable sort keeps slot order within a feature, and
    ``searchsorted`` gives each feature's first position: deterministic, and no host sync.
    """
    I = indices.shape[0]
    base = torch.arange(I, device=indices.device, dtype=torch.int64).view(I, 1, 1) * n
    keys = torch.where(indices >= 0, indices + base, torch.full((), I * n, dtype=torch.int64, device=indices.device))
    sorted_keys, perm = torch.sort(keys.reshape(-1), stable=True)
    start = torch.searchsorted(sorted_keys, torch.arange(I * n + 1, device=indices.device, dtype=torch.int64))
    return perm, start


def grad_W_csc(grad_h: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """grad_W [I, n, d] (values' dtype) of sparse_encode by the CSC segment reduction; deterministic."""
    I = indices.shape[0]
    grad_W = torch.empty((I, n, d), dtype=values.dtype, device=values.device)
    if grad_W.numel() == 0:
        return grad_W
    if indices.numel() == 0:
        return grad_W.zero_()
    perm, start = csc_slots(indices, n)
    BLOCK_D = clamp_pow2(d, 16, 256)
    grid = (I * n, triton.cdiv(d, BLOCK_D))
    check_sizes("sparse_encode backward (grad_W)", grid, I=I, n=n, d=d, k=indices.shape[2])
    _sparse_encode_grad_W_csc_kernel[grid](
        grad_h,
        values,
        perm,
        start,
        grad_W,
        d,
        indices.shape[2],
        BLOCK_D=BLOCK_D,
        ACC=acc_dtype(values.dtype),
        num_warps=num_warps_for(BLOCK_D),
    )
    return grad_W


def _forward_blocks(B, d):
    return gather_blocks(B, d, 1, budget=4096)


@on_tensor_device
def sparse_encode_forward(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """indices [I, B, k] int64, values [I, B, k], W [I, n, d] -> h [I, B, d] (W's dtype)."""
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    h = torch.empty((I, B, d), dtype=W.dtype, device=W.device)
    if h.numel() == 0:
        return h
    if k == 0:
        return h.zero_()
    BLOCK_B, BLOCK_D = _forward_blocks(B, d)
    n_row_blocks = triton.cdiv(B, BLOCK_B)
    grid = (I * n_row_blocks, triton.cdiv(d, BLOCK_D))
    check_sizes("sparse_encode", grid, I=I, B=B, n=n, d=d, k=k)
    _sparse_encode_forward_kernel[grid](
        indices,
        values,
        W,
        h,
        B,
        n,
        d,
        k,
        n_row_blocks,
        BLOCK_B=BLOCK_B,
        BLOCK_D=BLOCK_D,
        ACC=acc_dtype(W.dtype),
        num_warps=num_warps_for(BLOCK_B * BLOCK_D),
    )
    return h


# How grad_W is summed: "csc" (the default: the feature-sorted segment reduction, bit-identical run to
# run) or "atomic" (fp32 atomics from the row-major kernel: not deterministic; never used while
# torch.use_deterministic_algorithms(True) is set).
GRAD_W = "csc"


@on_tensor_device
def sparse_encode_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    """Gradients of sparse_encode: (grad_values [I, B, k] | None, grad_W [I, n, d] | None).

    grad_values: one row-major kernel (a dot product per slot), deterministic. grad_W: by default
    (``GRAD_W = "csc"``) a segment reduction over the slots sorted by feature
    (``_sparse_encode_grad_W_csc_kernel``): every element summed by one program in slot order, no
    atomics, bit-identical run to run. ``GRAD_W = "atomic"`` scatters with fp32 atomics instead (the
    summation order then depends on scheduling); it is ignored while
    ``torch.use_deterministic_algorithms(True)`` is set. Both accumulate in fp32 (fp64 for fp64).
    """
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    atomic_W = need_W and GRAD_W == "atomic" and not torch.are_deterministic_algorithms_enabled()
    # grad_values is written whole by the kernel; the atomics target is a zeroed fp32 (fp64) buffer.
    grad_values = torch.empty((I, B, k), dtype=values.dtype, device=values.device) if need_values else None
    grad_W = torch.zeros((I, n, d), dtype=acc_torch_dtype(W.dtype), device=W.device) if atomic_W else None
    if I * B * k == 0 or d == 0 or not (need_values or need_W):
        # Empty sums: both gradients are zero (or empty).
        return (
            grad_values.zero_() if grad_values is not None else None,
            W.new_zeros(W.shape) if need_W else None,
        )
    if need_values or atomic_W:
        BLOCK_K = clamp_pow2(k, 1, 16)
        BLOCK_D = clamp_pow2(d, 1, 64)
        BLOCK_B = clamp_pow2(4096 // (BLOCK_K * BLOCK_D), 1, 64)
        BLOCK_B = min(BLOCK_B, next_pow2(B))
        n_row_blocks = triton.cdiv(B, BLOCK_B)
        grid = (I * n_row_blocks,)
        check_sizes("sparse_encode backward", grid, I=I, B=B, n=n, d=d, k=k)
        # Unused outputs get a valid dummy pointer; the constexpr flags compile their code out.
        _sparse_encode_backward_kernel[grid](
            grad_h,
            indices,
            values,
            W,
            grad_values if need_values else grad_h,
            grad_W if atomic_W else grad_h,
            B,
            n,
            d,
            k,
            n_row_blocks,
            BLOCK_B=BLOCK_B,
            BLOCK_K=BLOCK_K,
            BLOCK_D=BLOCK_D,
            NEED_VALUES=bool(need_values),
            NEED_W=bool(atomic_W),
            ACC=acc_dtype(W.dtype),
            num_warps=num_warps_for(BLOCK_B * BLOCK_K * BLOCK_D),
        )
    if atomic_W:
        grad_W = grad_W.to(W.dtype)
    elif need_W:
        grad_W = grad_W_csc(grad_h, indices, values, n, d).to(W.dtype)
    return grad_values, grad_W
