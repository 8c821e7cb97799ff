"""The screened CPU route of ``relu_readout_topk`` in float32: a bfloat16 GEMM finds the candidates, float32 decides.

On CPUs with bfloat16 matrix units (Intel AMX, AVX-512 BF16) torch's bfloat16 GEMM runs several times
faster than its float32 GEMM. This route computes approximate scores ``bf16(h) @ bf16(W)^T`` (float32
accumulation) a block of rows at a time, and ``_C.topk_screen`` (``csrc/relu_readout_topk_screen.cpp``)
bounds each score's error from the norms of the operands and of their rounding residuals, keeps only the
features whose upper bound can reach the k-th largest lower bound, rescores those exactly in float32 and
selects among them. The result is the exact float32 top-k: which features are selected does not depend
on the bfloat16 GEMM's rounding, only on the rescored values. Rows where the bound is useless (non-finite
inputs) or leaves too many candidates go to the exact path.

The bound assumes the bfloat16 GEMM accumulates in float32 and rounds once at the end. That is checked
on the first call for each shape, on inputs where an accumulation in bfloat16 would break it; if the
check fails the route is not used. ``SUPCOMP_TOPK_SCREEN=0`` turns the route off, ``=1`` uses it at every
size and on every CPU (tests).
"""

from __future__ import annotations

import functools
import os
import threading

import torch

from .. import _C
from .cpu_views import as_numpy, threads

__all__ = ["screen_wanted", "screened_forward", "clear_workspace"]

# The route pays for two casts and the rescoring: below this many multiply-adds (B * n * d), or below
# this input width (the GEMM is then bound by its output, not by its multiply-adds), the float32 tiles
# are as fast (measured: 3x at B = 1024, n = 16384, d = 128; no gain at d = 64 or d = 16).
MIN_WORK = 1 << 28
MIN_D = 128
# Largest k screened: the candidates grow with k, and the exact path's merge is already cheap there.
MAX_K = 256
# Rows of approximate scores held at once: up to BLOCK_ROWS (their rescoring then reads each row of W
# once for many rows of h), fewer when a block would exceed BLOCK_ELEMENTS (64 MiB of bfloat16).
BLOCK_ROWS = 512
BLOCK_ELEMENTS = 1 << 25


def _env() -> str:
    return os.environ.get("SUPCOMP_TOPK_SCREEN", "auto")


@functools.cache
def _bf16_matrix_units() -> bool:
    """Whether this CPU has bfloat16 matrix instructions torch's oneDNN GEMM uses (AMX or AVX-512 BF16)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
    return False


@functools.cache
def _gemm_accumulates_in_float32(rows: int, n: int, d: int) -> bool:
    """Check the assumption of the bound on this torch build and shape.

    With nonnegative inputs every partial sum grows, so a GEMM that accumulated in bfloat16 would be
    off by far more than one final rounding; one that accumulates in float32 stays within
    ``u (1 + u) + g`` of the float64 result (relative).
    """
    gen = torch.Generator().manual_seed(0)
    h = torch.rand(rows, d, generator=gen).bfloat16()
    w = torch.rand(min(n, 4096), d, generator=gen).bfloat16()
    ref = h.double() @ w.double().T
    got = _approx_gemm(h, w, torch.empty(rows, w.shape[0], dtype=torch.bfloat16)).double()
    de = d * 2.0**-24
    tol = 2.0**-8 * (1 + 2.0**-8) + 1.01 * de / (1 - de)
    return bool(((got - ref).abs() <= tol * ref).all())


def _approx_gemm(hb: torch.Tensor, Wb: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out [R, n] = hb [R, d] @ Wb [n, d]^T`` in bfloat16 (torch's oneDNN GEMM; into a kept buffer)."""
    return torch.mm(hb, Wb.t(), out=out)


def screen_wanted(h: torch.Tensor, W: torch.Tensor, k: int) -> bool:
    """Whether ``relu_readout_topk(h [I, B, d], W [I, n, d], ., k)`` takes the screened route on this CPU."""
    mode = _env()
    if mode == "0" or h.dtype != torch.float32 or W.dtype != torch.float32 or h.device.type != "cpu":
        return False
    I, B, d = h.shape
    n = W.shape[1]
    if k == 0 or B == 0 or n == 0 or d == 0 or d > (1 << 20):
        return False
    if mode != "1" and (k > MAX_K or d < MIN_D or B * n * d < MIN_WORK or not _bf16_matrix_units()):
        return False
    return _gemm_accumulates_in_float32(_block_rows(B, n), n, d)


def _block_rows(B: int, n: int) -> int:
    return max(1, min(B, BLOCK_ROWS, BLOCK_ELEMENTS // max(1, n)))


# Buffers kept between calls, per thread: fresh allocations of this size cost more in page faults than
# the work done in them (at n = 65536, d = 768: about 170 MiB, the bfloat16 copy of W the largest).
_local = threading.local()


def _buffer(name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    bufs = _local.__dict__.setdefault("buffers", {})
    t = bufs.get(name)
    if t is None or t.shape != shape or t.dtype != dtype:
        bufs[name] = t = torch.empty(shape, dtype=dtype)
    return t


def clear_workspace() -> None:
    """Free the buffers the screened route keeps between calls on this thread (they are rebuilt on the next call)."""
    _local.__dict__.pop("buffers", None)


def _split(x: torch.Tensor, name: str):
    """``(bf16(x), [rows, 2] float32)``: x [rows, d] in bfloat16 and, per row, |bf16(x_r)| and |x_r - bf16(x_r)|."""
    xb = _buffer(name, tuple(x.shape), torch.bfloat16)
    terms = _buffer(name + "_terms", (x.shape[0], 2), torch.float32)
    _C.bf16_split(as_numpy(x), as_numpy(xb.view(torch.uint16)), as_numpy(terms), threads())
    return xb, terms


def screened_forward(h, W, b, k: int, exact_forward):
    """``(indices [I, B, k] int64, values [I, B, k])`` of relu(h @ W^T + b) for float32 CPU tensors.

    ``exact_forward(h, W, b, k)`` (same layout) recomputes the rows the screen flags.
    """
    I, B, d = h.shape
    n = W.shape[1]
    vals = torch.zeros(I, B, k, dtype=torch.float32)
    idx = torch.full((I, B, k), -1, dtype=torch.int64)
    rows = _block_rows(B, n)
    cap = min(n, max(8 * k, n // 32))  # more candidates than this: the float32 tiles are cheaper
    flags = torch.zeros(B, dtype=torch.uint8)
    for i in range(I):
        hi, Wi, bi = h[i].contiguous(), W[i].contiguous(), b[i].contiguous()
        hb, row_terms = _split(hi, "h")
        Wb, col_terms = _split(Wi, "W")
        nh, nW, nb, nr, nc = as_numpy(hi), as_numpy(Wi), as_numpy(bi), as_numpy(row_terms), as_numpy(col_terms)
        nv, ni, nf = as_numpy(vals[i]), as_numpy(idx[i]), as_numpy(flags)
        flags.zero_()
        flagged = 0
        block = _buffer("approx", (rows, n), torch.bfloat16)
        for r0 in range(0, B, rows):
            approx = block[: min(rows, B - r0)]
            _approx_gemm(hb[r0 : r0 + rows], Wb, approx)
            flagged += _C.topk_screen(
                as_numpy(approx.view(torch.uint16)), nh, nW, nb, nr, nc, nv, ni, nf, r0, cap, threads()
            )
        if flagged:
            redo = flags.nonzero().squeeze(1)
            ri, rv = exact_forward(hi[redo][None], Wi[None], bi[None], k)
            idx[i, redo], vals[i, redo] = ri[0], rv[0]
    return idx, vals
