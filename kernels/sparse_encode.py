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


@on_tensor_device
def sparse_encode_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    """Gradients of sparse_encode: (grad_values [I, B, k] | None, grad_W [I, n, d] | None).

    grad_W is accumulated with atomics in fp32 (fp64 for fp64 inputs) and cast
    to W's dtype at the end, so it is not bitwise deterministic run to run: the
    order in which programs add into one row of grad_W depends on scheduling.
    With ``torch.use_deterministic_algorithms(True)`` the kernel computes only
    grad_values and grad_W takes an atomic-free path instead
    (``_grad_W_deterministic``: a sorted, sequential index_put_ accumulation in
    row chunks), slower but bitwise reproducible.
    """
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    # grad_values is written whole by the kernel; grad_W is a zeroed fp32 (fp64) atomics target.
    grad_values = torch.empty((I, B, k), dtype=values.dtype, device=values.device) if need_values else None
    grad_W = torch.zeros((I, n, d), dtype=acc_torch_dtype(W.dtype), device=W.device) if need_W else None
    if I * B * k == 0 or d == 0 or not (need_values or need_W):
        # Empty sums: both gradients are zero (or empty).
        return (
            grad_values.zero_() if grad_values is not None else None,
            grad_W.to(W.dtype) if grad_W is not None else None,
        )

    BLOCK_K = clamp_pow2(k, 1, 16)
    BLOCK_D = clamp_pow2(d, 1, 64)
    BLOCK_B = clamp_pow2(4096 // (BLOCK_K * BLOCK_D), 1, 64)
    BLOCK_B = min(BLOCK_B, next_pow2(B))
    n_row_blocks = triton.cdiv(B, BLOCK_B)
    grid = (I * n_row_blocks,)
    check_sizes("sparse_encode backward", grid, I=I, B=B, n=n, d=d, k=k)
    deterministic_W = need_W and torch.are_deterministic_algorithms_enabled()
    if deterministic_W:
        need_W = False  # the kernel skips its atomics; grad_W is filled below
        if not need_values:
            return None, _grad_W_deterministic(grad_h, indices, values, grad_W).to(W.dtype)
    # Unused outputs get a valid dummy pointer; the constexpr flags compile their code out.
    gv_arg = grad_values if need_values else grad_h
    gW_arg = grad_W if need_W else grad_h
    _sparse_encode_backward_kernel[grid](
        grad_h,
        indices,
        values,
        W,
        gv_arg,
        gW_arg,
        B,
        n,
        d,
        k,
        n_row_blocks,
        BLOCK_B=BLOCK_B,
        BLOCK_K=BLOCK_K,
        BLOCK_D=BLOCK_D,
        NEED_VALUES=bool(need_values),
        NEED_W=bool(need_W),
        ACC=acc_dtype(W.dtype),
        num_warps=num_warps_for(BLOCK_B * BLOCK_K * BLOCK_D),
    )
    if deterministic_W:
        _grad_W_deterministic(grad_h, indices, values, grad_W)
    if grad_W is not None:
        grad_W = grad_W.to(W.dtype)
    return grad_values, grad_W


# Slots per chunk of the deterministic grad_W path: bounds its [chunk, d] contribution buffer.
DETERMINISTIC_CHUNK_ELEMS = 1 << 24


def _grad_W_deterministic(grad_h, indices, values, grad_W):
    """grad_W[i, f] += sum over slots with id f of values * grad_h, without atomics (in place, returned).

    index_put_(accumulate=True) is one of torch's deterministic algorithms (on CUDA it sorts the
    ids and sums each run in order), and the row chunks are processed one after the other, so
    the result does not depend on scheduling. Memory: one [chunk rows * k, d] buffer, never [B, n].
    """
    I, B, k = indices.shape
    n, d = grad_W.shape[1], grad_W.shape[2]
    acc = grad_W.dtype
    rows = max(1, DETERMINISTIC_CHUNK_ELEMS // max(1, k * d))
    flat = grad_W.view(I * n, d)
    inst = torch.arange(I, device=indices.device).view(I, 1, 1) * n
    for b0 in range(0, B, rows):
        idx = indices[:, b0 : b0 + rows]
        valid = idx >= 0
        contrib = values[:, b0 : b0 + rows].to(acc).unsqueeze(-1) * grad_h[:, b0 : b0 + rows].to(acc).unsqueeze(2)
        # where, not a multiply by 0: an empty slot adds exactly 0 even next to an inf gradient
        contrib = torch.where(valid.unsqueeze(-1), contrib, torch.zeros((), dtype=acc, device=idx.device))
        target = torch.where(valid, idx + inst, torch.zeros_like(idx))  # empty slots add 0 to row 0
        flat.index_put_((target.reshape(-1),), contrib.reshape(-1, d), accumulate=True)
    return grad_W
