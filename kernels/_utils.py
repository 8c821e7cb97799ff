"""Helpers shared by the Triton kernels: dtype mapping, interpreter detection, block sizes.

Block sizes are fixed per call from the problem shape (no ``@triton.autotune``):
autotuning does not run under ``TRITON_INTERPRET=1`` and would make the first
call on every new shape slow; the shapes of superposition toy models are
regular enough that a simple rule does well.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


def is_interpreting() -> bool:
    """True when Triton runs kernels on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def tl_dtype(dtype: torch.dtype):
    """The Triton dtype of a torch float dtype."""
    try:
        return _TL_DTYPES[dtype]
    except KeyError:
        raise TypeError(
            f"supcomp.kernels: unsupported dtype {dtype}, expected float16/bfloat16/float32/float64"
        ) from None


def acc_dtype(dtype: torch.dtype):
    """Accumulator dtype: fp64 for fp64 inputs, fp32 for everything narrower."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_dtype(dtype: torch.dtype):
    """dtype of the operands handed to ``tl.dot``.

    The input dtype (tensor cores for fp16/bf16), except under the interpreter,
    whose bf16 ``tl.dot`` gives wrong numbers: there bf16 tiles are upcast to fp32.
    """
    if dtype == torch.bfloat16 and is_interpreting():
        return tl.float32
    return tl_dtype(dtype)


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` for ``tl.dot``.

    fp32 GEMMs follow torch: TF32 only when ``torch.backends.cuda.matmul.allow_tf32``
    is set (off by default), so the kernels agree with the reference to fp32
    rounding. For the other dtypes the precision flag does not matter and we
    pass Triton's default.
    """
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def next_pow2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


def clamp_pow2(x: int, lo: int, hi: int) -> int:
    """next_pow2(x) clamped to [lo, hi] (lo, hi powers of two)."""
    return max(lo, min(hi, next_pow2(x)))


def gather_blocks(B: int, d: int, k: int = 1, budget: int = 4096):
    """(BLOCK_B, BLOCK_D) for the gather kernels: a [BLOCK_B, (k,) BLOCK_D] tile of about ``budget`` elements."""
    BLOCK_D = clamp_pow2(d, 1, 128)
    BLOCK_B = clamp_pow2(budget // (BLOCK_D * next_pow2(k)), 1, 128)
    BLOCK_B = min(BLOCK_B, next_pow2(B))
    return BLOCK_B, BLOCK_D


def gemm_blocks(M: int, N: int, K: int):
    """(BLOCK_M, BLOCK_N, BLOCK_K) for the tl.dot kernels; every block >= 16 (tl.dot's minimum)."""
    BLOCK_M = clamp_pow2(M, 16, 64)
    BLOCK_N = clamp_pow2(N, 16, 128 if BLOCK_M <= 32 else 64)
    BLOCK_K = clamp_pow2(K, 16, 32)
    return BLOCK_M, BLOCK_N, BLOCK_K


def num_warps_for(elems: int) -> int:
    """Warps for a tile of ``elems`` elements (the interpreter ignores it).

    8 warps from 4096 elements on: with 4 warps the 64-bit gather addresses and
    the fp32 FMA dots of these kernels spill registers on sm_80/sm_90 (checked
    with ptxas through Triton 3.6).
    """
    if elems >= 4096:
        return 8
    return 4 if elems >= 1024 else 2


def on_tensor_device(fn):
    """Run a launcher with its first tensor's CUDA device current.

    Triton launches on the current device, not on the tensors' device; without
    this a call on cuda:1 tensors while cuda:0 is current would fail.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = args[0]
        if t.device.type == "cuda":
            with torch.cuda.device(t.device):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


# ---- 32-bit index arithmetic -------------------------------------------------------------------
# Triton's program ids and the in-block offsets ``pid * BLOCK + tl.arange(0, BLOCK)`` are int32.
# Every kernel here widens to int64 before multiplying by a stride (the ``.to(tl.int64)`` casts),
# so pointer offsets cannot wrap, but an offset along one axis must itself fit in int32 and a grid
# axis has a hardware limit (axis 0: 2^31 - 1 programs, axes 1/2: 65535). Larger sizes are
# rejected here, before launch, instead of wrapping silently.
MAX_DIM = 2**31 - 2**16  # room for one block past the end
MAX_GRID = (2**31 - 1, 65535, 65535)


def check_sizes(op: str, grid=(), **sizes) -> None:
    """Raise ValueError if a size or the launch grid is too large for 32-bit Triton offsets."""
    for name, v in sizes.items():
        if int(v) > MAX_DIM:
            raise ValueError(
                f"{op}: {name} = {int(v)} exceeds {MAX_DIM}, the largest size the Triton kernels "
                "index with 32-bit offsets; split the call into smaller pieces"
            )
    for axis, (g, lim) in enumerate(zip(grid, MAX_GRID)):
        if int(g) > lim:
            raise ValueError(
                f"{op}: the launch needs {int(g)} programs along grid axis {axis} (limit {lim}); "
                "split the call into smaller pieces"
            )
