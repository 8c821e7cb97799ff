"""relu_readout_topk: the k largest entries of relu(h @ W^T + b) per row, without forming y.

Shapes (canonical layout; the reference is in ``supcomp/ops/<op>.py``):
    h  [I, B, d]    W  [I, n, d]    b  [I, n]
    -> values [I, B, k] (h's dtype), indices [I, B, k] int64

Result conventions (as the reference): sorted descending, ties go to the lower
feature index, slots beyond the positive entries hold index -1 and value 0.
When k > n the result has n slots, like ``sort(...)[..., :k]``.

Design. The dictionaries this is for have n = 2^16 .. 2^20 features, so the
[I, B, n] matrix must never exist. The feature axis is cut into n_chunks
chunks (a multiple of BLOCK_N each). One program owns (instance, BLOCK_M rows,
one chunk): it walks the chunk in BLOCK_N-wide tiles, computes each tile of
y with tl.dot, and merges it into a running top-k per row held in registers.
Each program writes its k candidates to a small buffer [I, B, n_chunks, k];
a final torch step picks the k best of the n_chunks * k candidates per row.

Merging a tile: the running list is unsorted; its worst entry (smallest value,
and the highest index among equal smallest values) is the one to evict. For as
many rounds as the most any row could insert (its tile entries above its worst
entry, at most k; usually 0 once the list holds large values), take each row's
tile maximum (lowest index among ties), let it replace the worst entry where it
is strictly larger, and remove it from the tile. Tiles are visited in increasing feature
order and extracted in (value desc, index asc) order, so a candidate equal to
the worst entry always has the higher index and rightly loses the tie; the
running list is therefore exactly the top-k of what the program has seen under
the order (value desc, index asc). Only values > 0 are ever inserted (an empty
slot is value 0, index -1), which gives the -1 / 0 fill for free. Once the list
holds large values most tiles need no merge iterations at all.

GEMM strategy (``kernels.relu_readout.GEMM``, environment ``SUPCOMP_TRITON_GEMM``;
"auto" = "cublas" on CUDA, "fused" elsewhere). "fused" is the kernel above.
"cublas" computes y tile by tile (at most ``CUBLAS_TILE_ELEMENTS`` entries at a
time, so memory stays bounded) with cuBLAS (``torch.baddbmm``), then one Triton
pass (``_topk_key_kernel``) turns each score into an int64 sort key
``(float bits of max(y, 0)) << 32 | (2^32 - 1 - feature)``: for non-negative
floats the bit pattern orders like the value, so the largest keys are exactly
the top-k under (value desc, index asc). ``torch.topk`` on the keys of a tile
gives its candidates, and a last ``torch.topk`` over the candidates of every
tile the answer, exact with ties, with no sort. Why: on an H100 the fused fp32
kernel (Triton's fp32 dot without TF32) ran at a quarter of cuBLAS's speed.
Used for fp32 only (fp16/bf16 measured faster fused; fp64 bits do not fit the 32-bit half).

Limits: k above ``MAX_KERNEL_K`` (register budget of the running list) falls
back to computing y for slices of rows with the readout kernel and sorting
them with torch (still never the whole [I, B, n]). NaN scores are never
selected (the reference's sort puts NaN first).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import relu_readout as _rr
from ._utils import (
    acc_dtype,
    acc_torch_dtype,
    check_sizes,
    clamp_pow2,
    dot_dtype,
    dot_precision,
    is_interpreting,
    next_pow2,
    on_tensor_device,
)
from .relu_readout import relu_readout_forward

# Largest k handled by the kernel (the running list is a [BLOCK_M, next_pow2(k)] register tile).
MAX_KERNEL_K = 128
# Bound on candidates per row written by the kernel (n_chunks * k), keeps the final torch step small.
MAX_CANDIDATES = 4096
# Fallback: rows of y computed at once, in elements.
FALLBACK_SLICE_ELEMS = 1 << 26
# Widest feature tile. Tests lower it to get several tiles per chunk on small n.
MAX_BLOCK_N = 128
# Programs to aim for when choosing n_chunks; None: 4 per SM on CUDA, 1 under the
# interpreter (which runs programs one after the other). Tests raise it to get several chunks.
TARGET_PROGRAMS = None


@triton.jit
def _worst_slot(tv, ti, slots, slot_ok, BLOCK_TOPK: tl.constexpr):
    """The entry to evict from each row's running list: smallest value, highest index among ties.

    tv [BLOCK_M, BLOCK_TOPK] values, ti [BLOCK_M, BLOCK_TOPK] int32 indices (-1 = empty, value 0).
    Returns (worst value [BLOCK_M], its slot [BLOCK_M]); padding slots (slot >= k) are never chosen.
    """
    vv = tl.where(slot_ok[None, :], tv, float("inf"))
    wv = tl.min(vv, axis=1)
    is_w = slot_ok[None, :] & (vv == wv[:, None])
    wi = tl.max(tl.where(is_w, ti, -2), axis=1)
    # Several empty slots all read (0, -1): take the first one.
    wpos = tl.min(tl.where(is_w & (ti == wi[:, None]), slots[None, :], BLOCK_TOPK), axis=1)
    return wv, wpos


@triton.jit
def _relu_readout_topk_forward_kernel(
    h_ptr,  # [I, B, d]
    W_ptr,  # [I, n, d]
    b_ptr,  # [I, n]
    cv_ptr,  # [I, B, n_chunks, k] candidate values (ACC dtype) output
    ci_ptr,  # [I, B, n_chunks, k] candidate indices (int64) output
    B,
    n,
    d,
    k,
    chunk,  # features per chunk, a multiple of BLOCK_N
    n_chunks,
    n_m_blocks,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_TOPK: tl.constexpr,  # next_pow2(k)
    DOT_DTYPE: tl.constexpr,
    PREC: tl.constexpr,
    ACC: tl.constexpr,
):
    """One program per (instance, BLOCK_M rows, chunk of features): running top-k over the chunk's tiles."""
    pid = tl.program_id(0)
    per_inst = n_m_blocks * n_chunks
    inst = (pid // per_inst).to(tl.int64)
    r = pid % per_inst
    c = r // n_m_blocks
    pid_m = r % n_m_blocks

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < B
    rows_m = offs_m.to(tl.int64)
    h_base = h_ptr + inst * B * d
    W_base = W_ptr + inst * n * d
    b_base = b_ptr + inst * n

    slots = tl.arange(0, BLOCK_TOPK)
    slot_ok = slots < k
    tv = tl.zeros([BLOCK_M, BLOCK_TOPK], dtype=ACC)  # empty slot: value 0 ...
    ti = tl.full([BLOCK_M, BLOCK_TOPK], -1, dtype=tl.int32)  # ... index -1
    wv, wpos = _worst_slot(tv, ti, slots, slot_ok, BLOCK_TOPK)

    start = c * chunk
    end = tl.minimum(start + chunk, n)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        rows_n = offs_n.to(tl.int64)
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=ACC)
        for k0 in range(0, d, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < d
            a = tl.load(
                h_base + rows_m[:, None] * d + offs_k[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0
            )
            wt = tl.load(
                W_base + rows_n[None, :] * d + offs_k[:, None], mask=mask_n[None, :] & mask_k[:, None], other=0.0
            )
            acc += tl.dot(a.to(DOT_DTYPE), wt.to(DOT_DTYPE), input_precision=PREC).to(ACC)
        acc += tl.load(b_base + offs_n, mask=mask_n, other=0.0).to(ACC)[None, :]
        # Out-of-range rows/features become 0: never inserted (only values > 0 are).
        # Negative scores likewise; no explicit ReLU needed.
        cur = tl.where(mask_m[:, None] & mask_n[None, :] & (acc > 0), acc, 0.0)

        # Upper bound on the insertions this tile can make in any row: the
        # entries above the row's current worst, and at most k. Usually 0 once
        # the list holds large values, so most tiles skip the loop entirely.
        # (A data-dependent scf.for rather than a while loop: Triton 3.6's
        # layout pass crashes on scf.while here.)
        n_better = tl.sum((cur > wv[:, None]).to(tl.int32), axis=1)
        n_iter = tl.minimum(tl.max(n_better, axis=0), k)
        for _ in range(0, n_iter):
            m = tl.max(cur, axis=1)
            am = tl.min(tl.where(cur == m[:, None], offs_n[None, :], 2147483647), axis=1)
            ins = m > wv  # strictly: an equal value has a higher index than the entry it would evict
            repl = ins[:, None] & (slots[None, :] == wpos[:, None])
            tv = tl.where(repl, m[:, None], tv)
            ti = tl.where(repl, am[:, None], ti)
            cur = tl.where(ins[:, None] & (offs_n[None, :] == am[:, None]), 0.0, cur)
            wv, wpos = _worst_slot(tv, ti, slots, slot_ok, BLOCK_TOPK)

    out_off = ((inst * B + rows_m) * n_chunks + c)[:, None] * k + slots[None, :]
    out_mask = mask_m[:, None] & slot_ok[None, :]
    tl.store(cv_ptr + out_off, tv, mask=out_mask)
    tl.store(ci_ptr + out_off, ti.to(tl.int64), mask=out_mask)


def _select(cand_v: torch.Tensor, cand_i: torch.Tensor, k: int, n: int, out_dtype: torch.dtype):
    """Final step: the k best candidates per row, (value desc, index asc), with the -1 / 0 fill."""
    # Order by index first (empty slots, index -1, last), then a stable sort by
    # value keeps the lower index first among equal values.
    key = torch.where(cand_i >= 0, cand_i, torch.full_like(cand_i, n))
    key, perm = torch.sort(key, dim=-1)
    v = torch.gather(cand_v, -1, perm)
    v, perm2 = torch.sort(v, dim=-1, descending=True, stable=True)
    v, perm2 = v[..., :k], perm2[..., :k]
    idx = torch.gather(key, -1, perm2)
    # Fill rule on the values as returned (a tiny fp32 score may round to 0 in fp16).
    v = v.to(out_dtype)
    pos = v > 0
    idx = torch.where(pos, idx, torch.full_like(idx, -1))
    v = torch.where(pos, v, torch.zeros_like(v))
    return v, idx


def _topk_fallback(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int):
    """Large k: y for slices of rows with the readout kernel, then a stable torch sort (the reference's recipe)."""
    I, B, _ = h.shape
    n = W.shape[1]
    vals = torch.empty((I, B, k), dtype=h.dtype, device=h.device)
    idx = torch.empty((I, B, k), dtype=torch.int64, device=h.device)
    rows = max(1, FALLBACK_SLICE_ELEMS // max(1, I * n))
    for b0 in range(0, B, rows):
        y = relu_readout_forward(h[:, b0 : b0 + rows].contiguous(), W, b)
        v, ix = torch.sort(y, dim=-1, descending=True, stable=True)
        v, ix = v[..., :k], ix[..., :k]
        pos = v > 0
        idx[:, b0 : b0 + rows] = torch.where(pos, ix, torch.full_like(ix, -1))
        vals[:, b0 : b0 + rows] = torch.where(pos, v, torch.zeros_like(v))
    return vals, idx


# cublas strategy: largest y tile [I, rows, features] computed at once (fp32: 4 bytes + 8 for its keys).
CUBLAS_TILE_ELEMENTS = 1 << 23


@triton.jit
def _topk_key_kernel(y_ptr, key_ptr, N, w, f0, BLOCK: tl.constexpr):
    """key = bits(max(y, 0) as fp32) << 32 | (2^32 - 1 - (f0 + column)); y is [R, w] flattened."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.where(y > 0, y, 0.0)  # NaN and -0.0 become +0.0: never selected, key of an empty slot
    bits = v.to(tl.int32, bitcast=True).to(tl.int64)
    col = (offs % w) + f0
    key = (bits << 32) | (4294967295 - col)
    tl.store(key_ptr + offs, key, mask=mask)


def _topk_cublas(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int):
    I, B, d = h.shape
    n = W.shape[1]
    rb = max(1, min(B, 1024, CUBLAS_TILE_ELEMENTS // max(1, I * min(n, 512))))
    fb = max(1, min(n, CUBLAS_TILE_ELEMENTS // max(1, I * rb)))
    Wt = W.transpose(1, 2)
    vals = torch.empty((I, B, k), dtype=h.dtype, device=h.device)
    idx = torch.empty((I, B, k), dtype=torch.int64, device=h.device)
    BLOCK = 1024
    for r0 in range(0, B, rb):
        r1 = min(B, r0 + rb)
        cands = []
        for f0 in range(0, n, fb):
            f1 = min(n, f0 + fb)
            y = torch.baddbmm(b[:, None, f0:f1], h[:, r0:r1], Wt[:, :, f0:f1])  # [I, r, w]
            key = torch.empty(y.shape, dtype=torch.int64, device=h.device)
            N = y.numel()
            _topk_key_kernel[(triton.cdiv(N, BLOCK),)](y, key, N, f1 - f0, f0, BLOCK=BLOCK)
            cands.append(torch.topk(key, min(k, f1 - f0), dim=-1, sorted=False).values)
        c = torch.cat(cands, dim=-1) if len(cands) > 1 else cands[0]
        top = torch.topk(c, k, dim=-1, sorted=True).values  # (value desc, index asc)
        vals[:, r0:r1] = (top >> 32).to(torch.int32).view(torch.float32).to(h.dtype)
        idx[:, r0:r1] = 4294967295 - (top & 4294967295)
    # The fill rule, on the values as returned: an empty slot (key of +0.0) and a score that rounds to 0.
    idx.masked_fill_(vals == 0, -1)
    return vals, idx


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


@on_tensor_device
def relu_readout_topk_forward(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int):
    """h [I, B, d], W [I, n, d], b [I, n], k -> (values [I, B, min(k, n)], indices int64 [I, B, min(k, n)])."""
    I, B, d = h.shape
    n = W.shape[1]
    k = min(int(k), n)
    if I * B * k == 0:
        return (
            torch.zeros((I, B, k), dtype=h.dtype, device=h.device),
            torch.full((I, B, k), -1, dtype=torch.int64, device=h.device),
        )
    # cublas for fp32 only: with fp16/bf16 the fused kernel's tensor-core dots were faster on an
    # H100 (4.5 ms against 14 ms at B=4096, d=256, n=65536, k=32); fp32 the other way (18 ms against 25).
    if _rr._gemm_strategy(h) == "cublas" and h.dtype == torch.float32:
        return _topk_cublas(h, W, b, k)
    if k > MAX_KERNEL_K:
        return _topk_fallback(h, W, b, k)

    BLOCK_TOPK = next_pow2(k)
    BLOCK_M = min(clamp_pow2(B, 16, 64), max(16, 4096 // BLOCK_TOPK))
    BLOCK_N = 64 if BLOCK_M >= 64 else 128
    BLOCK_N = min(BLOCK_N, MAX_BLOCK_N, clamp_pow2(n, 16, 128))
    BLOCK_K = clamp_pow2(d, 16, 32)
    n_m_blocks = triton.cdiv(B, BLOCK_M)
    n_tiles = triton.cdiv(n, BLOCK_N)
    # Enough chunks to fill the GPU (about 4 programs per SM), but at most
    # MAX_CANDIDATES // k of them. The interpreter runs programs one by one:
    # there a single chunk per row block is fastest.
    if TARGET_PROGRAMS is not None:
        target = TARGET_PROGRAMS
    else:
        target = 1 if is_interpreting() else 4 * _num_sms(h.device)
    want = triton.cdiv(target, I * n_m_blocks)
    n_chunks = max(1, min(want, n_tiles, MAX_CANDIDATES // k))
    chunk = triton.cdiv(n_tiles, n_chunks) * BLOCK_N
    n_chunks = triton.cdiv(n, chunk)

    acc_t = acc_torch_dtype(h.dtype)
    cand_v = torch.empty((I, B, n_chunks, k), dtype=acc_t, device=h.device)
    cand_i = torch.empty((I, B, n_chunks, k), dtype=torch.int64, device=h.device)
    grid = (I * n_m_blocks * n_chunks,)
    check_sizes("relu_readout_topk", grid, I=I, B=B, n=n, d=d, k=k)
    _relu_readout_topk_forward_kernel[grid](
        h,
        W,
        b,
        cand_v,
        cand_i,
        B,
        n,
        d,
        k,
        chunk,
        n_chunks,
        n_m_blocks,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
        BLOCK_TOPK=BLOCK_TOPK,
        DOT_DTYPE=dot_dtype(h.dtype),
        PREC=dot_precision(h.dtype),
        ACC=acc_dtype(h.dtype),
        # acc, the tile copy and the running list all live in registers: 8 warps for the big tiles.
        num_warps=8 if BLOCK_M * max(BLOCK_N, BLOCK_TOPK) >= 2048 else 4,
    )
    return _select(cand_v.reshape(I, B, n_chunks * k), cand_i.reshape(I, B, n_chunks * k), k, n, h.dtype)
