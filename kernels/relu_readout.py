"""relu_readout: y = relu(h @ W^T + b), per instance, and its backward.

Shapes (canonical layout; the reference is in ``supcomp/ops/<op>.py``):
    h  [I, B, d]    W  [I, n, d]    b  [I, n]    y  [I, B, n]

Forward: a tiled ``tl.dot`` GEMM per (instance, BLOCK_M rows, BLOCK_N features)
with the bias add and the ReLU fused into the epilogue.

Backward, with g = grad_y * (y > 0) (never materialised: the mask is applied
to the grad_y tiles as they are loaded):
    grad_h = g @ W          [I, B, d]   (_relu_readout_backward_dh_kernel)
    grad_W = g^T @ h        [I, n, d]   (_relu_readout_backward_dw_kernel)
    grad_b = g.sum(B)       [I, n]      (same kernel, from the g tiles it loads anyway)

Two GEMM strategies (``GEMM``, or the environment variable ``SUPCOMP_TRITON_GEMM``):

* ``"fused"``: the three Triton GEMM kernels above, epilogues fused.
* ``"cublas"``: the GEMMs by cuBLAS (``torch.baddbmm`` / ``torch.bmm``) and in
  Triton only the epilogues cuBLAS lacks: the in-place ReLU
  (``_relu_inplace_kernel``) and the masked gradient with the per-block partial
  sums of grad_b (``_relu_grad_kernel``; the partial sums are added in a fixed
  order, so grad_b is deterministic). The same split as the CPU backend (BLAS +
  C++ epilogues).
* ``"auto"`` (default): ``"cublas"`` on CUDA, ``"fused"`` elsewhere (the
  interpreter). Why: on an H100 (torch 2.11, Triton 3.6) cuBLAS ran the fp32
  forward 5x and the fp16 forward+backward 4x faster than the fused Triton GEMMs
  at B=4096, d=256, n=65536 (benchmarks/RESULTS.md, GPU section).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._utils import acc_dtype, check_sizes, dot_dtype, dot_precision, gemm_blocks, num_warps_for, on_tensor_device


@triton.jit
def _relu_readout_forward_kernel(
    h_ptr,  # [I, B, d]
    W_ptr,  # [I, n, d]
    b_ptr,  # [I, n]
    y_ptr,  # [I, B, n] output
    B,
    n,
    d,
    n_m_blocks,  # cdiv(B, BLOCK_M)
    n_n_blocks,  # cdiv(n, BLOCK_N)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,  # operand dtype for tl.dot
    PREC: tl.constexpr,  # tl.dot input_precision
    ACC: tl.constexpr,  # accumulator dtype
):
    """One program per (instance, BLOCK_M rows, BLOCK_N features); loop over d in BLOCK_K steps."""
    pid = tl.program_id(0)
    per_inst = n_m_blocks * n_n_blocks
    inst = (pid // per_inst).to(tl.int64)
    r = pid % per_inst
    # Row blocks vary fastest: consecutive programs reuse the same W tile from L2.
    pid_n = r // n_m_blocks
    pid_m = r % n_m_blocks

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < B
    mask_n = offs_n < n
    # int64 row offsets: B*n or n*d of a single instance may exceed 2^31.
    rows_m = offs_m.to(tl.int64)
    rows_n = offs_n.to(tl.int64)
    h_base = h_ptr + inst * B * d
    W_base = W_ptr + inst * n * d

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
    for k0 in range(0, d, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < d
        a = tl.load(
            h_base + rows_m[:, None] * d + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0
        )  # [BLOCK_M, BLOCK_K]
        wt = tl.load(
            W_base + rows_n[None, :] * d + offs_k[:, None], mask=mask_n[None, :] & mask_k[:, None], other=0.0
        )  # [BLOCK_K, BLOCK_N] = W^T tile
        acc += tl.dot(a.to(DOT_DTYPE), wt.to(DOT_DTYPE), input_precision=PREC).to(ACC)

    bias = tl.load(b_ptr + inst * n + offs_n, mask=mask_n, other=0.0).to(ACC)
    acc += bias[None, :]
    # where(acc < 0, 0, acc) rather than maximum: keeps NaN like torch.relu.
    acc = tl.where(acc < 0, 0.0, acc)
    y_base = y_ptr + inst * B * n
    tl.store(
        y_base + rows_m[:, None] * n + offs_n[None, :],
        acc.to(y_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_n[None, :],
    )


@triton.jit
def _relu_readout_backward_dh_kernel(
    gy_ptr,  # [I, B, n]
    y_ptr,  # [I, B, n]
    W_ptr,  # [I, n, d]
    gh_ptr,  # [I, B, d] output
    B,
    n,
    d,
    n_m_blocks,
    n_d_blocks,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PREC: tl.constexpr,
    ACC: tl.constexpr,
):
    """grad_h = (grad_y * (y > 0)) @ W: one program per (instance, BLOCK_M rows, BLOCK_D columns), loop over n."""
    pid = tl.program_id(0)
    per_inst = n_m_blocks * n_d_blocks
    inst = (pid // per_inst).to(tl.int64)
    r = pid % per_inst
    pid_d = r // n_m_blocks
    pid_m = r % n_m_blocks

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_m = offs_m < B
    mask_d = offs_d < d
    rows_m = offs_m.to(tl.int64)
    gy_base = gy_ptr + inst * B * n
    y_base = y_ptr + inst * B * n
    W_base = W_ptr + inst * n * d

    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=ACC)
    for k0 in range(0, n, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < n
        gmask = mask_m[:, None] & mask_k[None, :]
        goff = rows_m[:, None] * n + offs_k[None, :]
        gy = tl.load(gy_base + goff, mask=gmask, other=0.0)
        yv = tl.load(y_base + goff, mask=gmask, other=0.0)
        # Multiply by the mask (not where) so a NaN gradient propagates as in the reference.
        g = gy * (yv > 0).to(gy.dtype)  # [BLOCK_M, BLOCK_K]
        w = tl.load(
            W_base + offs_k.to(tl.int64)[:, None] * d + offs_d[None, :],
            mask=mask_k[:, None] & mask_d[None, :],
            other=0.0,
        )  # [BLOCK_K, BLOCK_D]
        acc += tl.dot(g.to(DOT_DTYPE), w.to(DOT_DTYPE), input_precision=PREC).to(ACC)

    gh_base = gh_ptr + inst * B * d
    tl.store(
        gh_base + rows_m[:, None] * d + offs_d[None, :],
        acc.to(gh_ptr.dtype.element_ty),
        mask=mask_m[:, None] & mask_d[None, :],
    )


@triton.jit
def _relu_readout_backward_dw_kernel(
    gy_ptr,  # [I, B, n]
    y_ptr,  # [I, B, n]
    h_ptr,  # [I, B, d]
    gW_ptr,  # [I, n, d] output
    gb_ptr,  # [I, n] output
    B,
    n,
    d,
    n_n_blocks,
    n_d_blocks,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PREC: tl.constexpr,
    ACC: tl.constexpr,
):
    """grad_W = g^T @ h and grad_b = sum_B g: one program per (instance, BLOCK_N features, BLOCK_D columns), loop over B.

    Programs with pid_d == 0 also write grad_b; the column sums of the g tile
    are computed by every program (cheap next to the tl.dot) and stored by those.
    """
    pid = tl.program_id(0)
    per_inst = n_n_blocks * n_d_blocks
    inst = (pid // per_inst).to(tl.int64)
    r = pid % per_inst
    pid_d = r // n_n_blocks
    pid_n = r % n_n_blocks

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_n = offs_n < n
    mask_d = offs_d < d
    gy_base = gy_ptr + inst * B * n
    y_base = y_ptr + inst * B * n
    h_base = h_ptr + inst * B * d

    acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC)
    gb = tl.zeros([BLOCK_N], dtype=ACC)
    for k0 in range(0, B, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < B
        rows_k = offs_k.to(tl.int64)
        # g^T tile [BLOCK_N, BLOCK_K] loaded directly transposed.
        gmask = mask_n[:, None] & mask_k[None, :]
        goff = rows_k[None, :] * n + offs_n[:, None]
        gy = tl.load(gy_base + goff, mask=gmask, other=0.0)
        yv = tl.load(y_base + goff, mask=gmask, other=0.0)
        gt = gy * (yv > 0).to(gy.dtype)
        hh = tl.load(
            h_base + rows_k[:, None] * d + offs_d[None, :], mask=mask_k[:, None] & mask_d[None, :], other=0.0
        )  # [BLOCK_K, BLOCK_D]
        acc += tl.dot(gt.to(DOT_DTYPE), hh.to(DOT_DTYPE), input_precision=PREC).to(ACC)
        gb += tl.sum(gt.to(ACC), axis=1)

    gW_base = gW_ptr + inst * n * d
    tl.store(
        gW_base + offs_n.to(tl.int64)[:, None] * d + offs_d[None, :],
        acc.to(gW_ptr.dtype.element_ty),
        mask=mask_n[:, None] & mask_d[None, :],
    )
    if pid_d == 0:
        tl.store(gb_ptr + inst * n + offs_n, gb.to(gb_ptr.dtype.element_ty), mask=mask_n)


GEMM = os.environ.get("SUPCOMP_TRITON_GEMM", "auto")
_GEMMS = ("auto", "fused", "cublas")


def _gemm_strategy(t: torch.Tensor) -> str:
    if GEMM not in _GEMMS:
        raise ValueError(f"SUPCOMP_TRITON_GEMM: unknown strategy {GEMM!r}, expected one of {_GEMMS}")
    if GEMM == "auto":
        return "cublas" if t.device.type == "cuda" else "fused"
    return GEMM


@triton.jit
def _relu_inplace_kernel(y_ptr, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, tl.maximum(y, 0.0).to(y.dtype), mask=mask)


@triton.jit
def _relu_grad_kernel(
    gy_ptr, y_ptr, g_ptr, part_ptr, B, n, n_b_blocks, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, ACC: tl.constexpr
):
    """g = grad_y * (y > 0) for one [BLOCK_B, BLOCK_N] tile; part[inst, b_block, :] = its column sums."""
    inst = tl.program_id(0).to(tl.int64)
    pb = tl.program_id(1)
    pn = tl.program_id(2)
    rows = pb * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = pn * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < B)[:, None] & (cols < n)[None, :]
    off = (inst * B + rows.to(tl.int64))[:, None] * n + cols[None, :]
    gy = tl.load(gy_ptr + off, mask=mask, other=0.0)
    y = tl.load(y_ptr + off, mask=mask, other=0.0)
    g = tl.where(y > 0, gy, 0.0)
    tl.store(g_ptr + off, g, mask=mask)
    colsum = tl.sum(g.to(ACC), axis=0)
    tl.store(part_ptr + (inst * n_b_blocks + pb) * n + cols, colsum, mask=cols < n)


def _cublas_forward(h, W, b):
    if h.shape[0] == 1:
        # One instance: addmm puts the bias in cuBLAS's epilogue; baddbmm with a broadcast bias
        # first copies it into all of y (an extra write and read of y, measured 25% slower on an H100).
        y = torch.addmm(b[0], h[0], W[0].t()).unsqueeze(0)
    else:
        y = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
    N = y.numel()
    if N:
        BLOCK = 1024
        _relu_inplace_kernel[(triton.cdiv(N, BLOCK),)](y, N, BLOCK=BLOCK)
    return y


def _cublas_backward(grad_y, y, h, W):
    I, B, n = y.shape
    g = torch.empty_like(y)
    BLOCK_B, BLOCK_N = 32, 128
    n_b_blocks = triton.cdiv(B, BLOCK_B)
    acc_t = torch.float64 if y.dtype == torch.float64 else torch.float32
    check_sizes("relu_readout backward (epilogue)", (I, n_b_blocks, triton.cdiv(n, BLOCK_N)), I=I, B=B, n=n)
    part = torch.empty((I, n_b_blocks, n), dtype=acc_t, device=y.device)
    _relu_grad_kernel[(I, n_b_blocks, triton.cdiv(n, BLOCK_N))](
        grad_y, y, g, part, B, n, n_b_blocks, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, ACC=acc_dtype(y.dtype)
    )
    grad_b = part.sum(1).to(y.dtype)
    grad_h = torch.bmm(g, W)
    grad_W = torch.bmm(g.transpose(1, 2), h)
    return grad_h, grad_W, grad_b


def _launch_forward(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> None:
    I, B, d = h.shape
    n = W.shape[1]
    BLOCK_M, BLOCK_N, BLOCK_K = gemm_blocks(B, n, d)
    n_m_blocks, n_n_blocks = triton.cdiv(B, BLOCK_M), triton.cdiv(n, BLOCK_N)
    grid = (I * n_m_blocks * n_n_blocks,)
    check_sizes("relu_readout", grid, I=I, B=B, n=n, d=d)
    _relu_readout_forward_kernel[grid](
        h,
        W,
        b,
        y,
        B,
        n,
        d,
        n_m_blocks,
        n_n_blocks,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
        DOT_DTYPE=dot_dtype(h.dtype),
        PREC=dot_precision(h.dtype),
        ACC=acc_dtype(h.dtype),
        num_warps=num_warps_for(BLOCK_M * BLOCK_N),
    )


@on_tensor_device
def relu_readout_forward(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h [I, B, d], W [I, n, d], b [I, n] -> y = relu(h @ W^T + b) [I, B, n]."""
    I, B, _ = h.shape
    n = W.shape[1]
    if _gemm_strategy(h) == "cublas":
        return _cublas_forward(h, W, b)
    y = torch.empty((I, B, n), dtype=h.dtype, device=h.device)
    if y.numel() == 0:
        return y
    _launch_forward(h, W, b, y)
    return y


@on_tensor_device
def relu_readout_backward(grad_y: torch.Tensor, y: torch.Tensor, h: torch.Tensor, W: torch.Tensor):
    """Gradients given the forward output y: (grad_h [I, B, d], grad_W [I, n, d], grad_b [I, n])."""
    I, B, d = h.shape
    n = W.shape[1]
    dt = h.dtype
    grad_h = torch.empty((I, B, d), dtype=dt, device=h.device)
    grad_W = torch.empty((I, n, d), dtype=dt, device=h.device)
    grad_b = torch.empty((I, n), dtype=dt, device=h.device)
    if I == 0 or B == 0 or n == 0:
        return grad_h.zero_(), grad_W.zero_(), grad_b.zero_()  # empty sums: all zero
    if _gemm_strategy(h) == "cublas":
        return _cublas_backward(grad_y, y, h, W)
    check_sizes(
        "relu_readout backward", (I * triton.cdiv(max(B, n), 16) * triton.cdiv(max(d, 1), 16),), I=I, B=B, n=n, d=d
    )
    # From here every element of the three outputs is written by a kernel.
    common = dict(DOT_DTYPE=dot_dtype(dt), PREC=dot_precision(dt), ACC=acc_dtype(dt))

    if d > 0:
        BLOCK_M, BLOCK_D, BLOCK_K = gemm_blocks(B, d, n)
        n_m_blocks, n_d_blocks = triton.cdiv(B, BLOCK_M), triton.cdiv(d, BLOCK_D)
        _relu_readout_backward_dh_kernel[(I * n_m_blocks * n_d_blocks,)](
            grad_y,
            y,
            W,
            grad_h,
            B,
            n,
            d,
            n_m_blocks,
            n_d_blocks,
            BLOCK_M=BLOCK_M,
            BLOCK_D=BLOCK_D,
            BLOCK_K=BLOCK_K,
            num_warps=num_warps_for(BLOCK_M * BLOCK_D),
            **common,
        )

    BLOCK_N, BLOCK_D, BLOCK_K = gemm_blocks(n, d, B)
    # At least one d block, so that grad_b is written even when d == 0.
    n_n_blocks, n_d_blocks = triton.cdiv(n, BLOCK_N), max(1, triton.cdiv(d, BLOCK_D))
    _relu_readout_backward_dw_kernel[(I * n_n_blocks * n_d_blocks,)](
        grad_y,
        y,
        h,
        grad_W,
        grad_b,
        B,
        n,
        d,
        n_n_blocks,
        n_d_blocks,
        BLOCK_N=BLOCK_N,
        BLOCK_D=BLOCK_D,
        BLOCK_K=BLOCK_K,
        num_warps=num_warps_for(BLOCK_N * BLOCK_D),
        **common,
    )
    return grad_h, grad_W, grad_b
