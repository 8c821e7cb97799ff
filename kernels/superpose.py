"""superpose: y = relu(h @ W^T + b) with h = sparse_encode(indices, values, W), fused.

Shapes (canonical layout; the reference is in ``supcomp/ops/<op>.py``):
    indices int64 [I, B, k]   values [I, B, k]   W [I, n, d]   b [I, n]   -> y [I, B, n]

One program per (instance, BLOCK_M rows, BLOCK_N features). For every BLOCK_K
slice of d it first gathers the h tile [BLOCK_M, BLOCK_K] from the k W rows
named by ``indices`` (fp32 accumulation, rounded to the input dtype like the
unfused composition), then feeds it to tl.dot against the W^T tile. h never
goes to global memory; the price is that each of the cdiv(n, BLOCK_N) feature
blocks recomputes it, k * BLOCK_M * d gathered numbers against
BLOCK_M * BLOCK_N * d multiply-adds, i.e. negligible while k << BLOCK_N.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import (
    acc_dtype,
    check_sizes,
    dot_dtype,
    dot_precision,
    gemm_blocks,
    num_warps_for,
    on_tensor_device,
    tl_dtype,
)


@triton.jit
def _superpose_forward_kernel(
    idx_ptr,  # [I, B, k] int64
    val_ptr,  # [I, B, k]
    W_ptr,  # [I, n, d]
    b_ptr,  # [I, n]
    y_ptr,  # [I, B, n] output
    B,
    n,
    d,
    k,
    n_m_blocks,
    n_n_blocks,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    IN_DTYPE: tl.constexpr,  # input dtype: h is rounded to it before the GEMM
    DOT_DTYPE: tl.constexpr,
    PREC: tl.constexpr,
    ACC: tl.constexpr,
):
    pid = tl.program_id(0)
    per_inst = n_m_blocks * n_n_blocks
    inst = (pid // per_inst).to(tl.int64)
    r = pid % per_inst
    # Row blocks fastest: neighbouring programs share the W^T tile.
    pid_n = r // n_m_blocks
    pid_m = r % n_m_blocks

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < B
    mask_n = offs_n < n
    rows = inst * B + offs_m  # flat row id in [0, I*B), int64
    rows_n = offs_n.to(tl.int64)
    W_base = W_ptr + inst * n * d

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for k0 in range(0, d, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < d
        # h[:, k0:k0+BLOCK_K] = sum_j values[:, j] * W[idx[:, j], k0:k0+BLOCK_K]
        hacc = tl.zeros([BLOCK_M, BLOCK_K], dtype=ACC)
        for j in range(0, k):
            idx = tl.load(idx_ptr + rows * k + j, mask=mask_m, other=-1)
            v = tl.load(val_ptr + rows * k + j, mask=mask_m & (idx >= 0), other=0.0).to(ACC)  # empty: unread
            w = tl.load(
                W_base + idx[:, None] * d + offs_k[None, :], mask=(idx >= 0)[:, None] & mask_k[None, :], other=0.0
            ).to(ACC)
            hacc += v[:, None] * w
        # Columns past d hold v * 0, which is NaN for an infinite value: zero them, or the dot
        # against W^T's zero padding would turn a valid inf into NaN (found by the fuzz tests).
        a = tl.where(mask_k[None, :], hacc, 0.0).to(IN_DTYPE)
        wt = tl.load(
            W_base + rows_n[None, :] * d + offs_k[:, None], mask=mask_n[None, :] & mask_k[:, None], other=0.0
        )  # [BLOCK_K, BLOCK_N]
        acc += tl.dot(a.to(DOT_DTYPE), wt.to(DOT_DTYPE), input_precision=PREC).to(ACC)

    bias = tl.load(b_ptr + inst * n + offs_n, mask=mask_n, other=0.0).to(ACC)
    acc += bias[None, :]
    acc = tl.where(acc < 0, 0.0, acc)  # keeps NaN, like torch.relu
    y_base = y_ptr + inst * B * n
    tl.store(
        y_base + offs_m.to(tl.int64)[:, None] * n + offs_n[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_n[None, :],
    )


@on_tensor_device
def superpose_forward(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """indices [I, B, k], values [I, B, k], W [I, n, d], b [I, n] -> y [I, B, n]."""
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    y = torch.empty((I, B, n), dtype=W.dtype, device=W.device)
    if y.numel() == 0:
        return y
    BLOCK_M, BLOCK_N, BLOCK_K = gemm_blocks(B, n, d)
    n_m_blocks, n_n_blocks = triton.cdiv(B, BLOCK_M), triton.cdiv(n, BLOCK_N)
    grid = (I * n_m_blocks * n_n_blocks,)
    check_sizes("superpose", grid, I=I, B=B, n=n, d=d, k=k)
    _superpose_forward_kernel[grid](
        indices,
        values,
        W,
        b,
        y,
        B,
        n,
        d,
        k,
        n_m_blocks,
        n_n_blocks,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
        IN_DTYPE=tl_dtype(W.dtype),
        DOT_DTYPE=dot_dtype(W.dtype),
        PREC=dot_precision(W.dtype),
        ACC=acc_dtype(W.dtype),
        num_warps=num_warps_for(BLOCK_M * BLOCK_N),
    )
    return y
