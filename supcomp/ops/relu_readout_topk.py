"""relu_readout_topk: the k largest entries of ``relu(h @ W^T + b)`` per row, computed blockwise.

The [B, n] matrix is never held whole by the kernels: it is produced a tile at a time and each tile
is folded into a running per-row top-k, so dictionaries of 2^16..2^20 features fit in memory.

Implementations (one table, :data:`IMPLS`): the pure-torch reference below (holds the full
matrix); on CPU BLAS GEMM tiles folded by the C++ merge of ``csrc/relu_readout_topk.cpp``, or, for
large float32 problems on CPUs with bfloat16 matrix units, the exact screened route of
``relu_readout_topk_screen.py`` (a bfloat16 GEMM picks candidates, float32 rescoring decides); the
Triton kernel ``kernels/relu_readout_topk.py`` on CUDA. Tests: ``tests/ops/test_relu_readout_topk.py``;
benchmark: ``benchmarks/ops/relu_readout_topk.py``.

Canonical layout: h [I, B, d], W [I, n, d], b [I, n] -> SparseCode(indices [I, B, k] int64, values [I, B, k]),
the ``(indices, values)`` order of every sparse code in supcomp (:class:`supcomp.ops.SparseCode`).
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from . import checks
from . import relu_readout_topk_screen as screen
from .cpu_views import as_numpy, threads
from .dispatch import Impl, Table
from .relu_readout import check_readout_args
from .relu_readout import reference_forward as relu_readout_reference
from .sparse_code import SparseCode
from .sparse_encode import reference_backward as sparse_encode_reference_backward
from .sparse_encode import reference_forward as sparse_encode_reference
from .sparse_encode import sparse_encode_backward_op, sparse_encode_op

# ---------------------------------------------------------------- reference (pure torch)


def reference_forward(h, W, b, k: int):
    """The k largest entries of relu(h @ W^T + b) per row, sorted descending.

    Returns SparseCode(indices [I, B, k] int64, values [I, B, k]). Fill rule: a slot whose value is 0 (fewer
    than k positive entries) gets index -1 and value 0, so the result is a valid padded sparse code.
    Ties among positive values go to the lower feature index.
    """
    y = relu_readout_reference(h, W, b)
    # NaN scores are never selected (as in the kernels): a sort would put them first and, filled
    # as (0, -1), they would push real positive entries out of the top k.
    y = torch.where(torch.isnan(y), torch.zeros((), dtype=y.dtype, device=y.device), y)
    # Stable descending sort puts the lower index first among equal values.
    vals, idx = torch.sort(y, dim=-1, descending=True, stable=True)
    vals, idx = vals[..., :k], idx[..., :k]
    idx = torch.where(vals > 0, idx, torch.full_like(idx, -1))
    vals = torch.where(vals > 0, vals, torch.zeros_like(vals))
    return SparseCode(idx, vals)


# ---------------------------------------------------------------- C++ (CPU): GEMM tiles + C++ merge

# Largest GEMM tile (in elements) materialised at once: 4M floats = 16 MiB, a few per cent of the
# [B, n] matrix at benchmark sizes.
TOPK_TILE_ELEMENTS = 1 << 22


def topk_blocks(I: int, B: int, n: int) -> tuple[int, int]:
    """Row and feature block sizes of the blockwise top-k: one GEMM tile [I, rb, fb] <= TOPK_TILE_ELEMENTS."""
    fb_min = min(n, 512)
    rb = max(1, min(B, TOPK_TILE_ELEMENTS // max(1, I * fb_min)))
    fb = max(fb_min, min(n, TOPK_TILE_ELEMENTS // max(1, I * rb)))
    return rb, fb


_HALF_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def cpp_forward(h, W, b, k: int):
    """The CPU forward: the screened route for large float32 problems on CPUs with bfloat16 matrix
    units (:mod:`supcomp.ops.relu_readout_topk_screen`, exact), else :func:`tiles_forward`."""
    if screen.screen_wanted(h, W, k):
        return SparseCode(*screen.screened_forward(h, W, b, k, tiles_forward))
    return tiles_forward(h, W, b, k)


def tiles_forward(h, W, b, k: int):
    """GEMM tiles from torch's BLAS, each folded into the running top-k by ``_C.topk_merge``.

    bfloat16 / float16: each tile is computed in float32 from blocks of h and W widened one at a time
    (memory stays a few tiles), the bias goes to ``_C.topk_merge_half`` as its raw 16-bit patterns and
    is widened there, and the values are rounded to the input dtype at the end.
    """
    I, B, d = h.shape
    n = W.shape[1]
    half = _HALF_NAMES.get(h.dtype)
    acc = torch.float32 if half else h.dtype
    vals = torch.zeros(I, B, k, dtype=acc)
    idx = torch.full((I, B, k), -1, dtype=torch.int64)
    if B == 0 or n == 0 or k == 0:
        return SparseCode(idx, vals.to(h.dtype))
    rb, fb = topk_blocks(I, B, n)
    if half:  # the widened blocks of h and W stay within a tile's size as well
        rb = max(1, min(rb, TOPK_TILE_ELEMENTS // max(1, I * d)))
        fb = max(1, min(fb, TOPK_TILE_ELEMENTS // max(1, I * d)))
    buf = torch.empty(I * rb * fb, dtype=acc)
    Wt = W.transpose(1, 2)
    nv, ni = as_numpy(vals), as_numpy(idx)
    nb = as_numpy(b.view(torch.uint16) if half else b)
    for r0 in range(0, B, rb):
        r1 = min(B, r0 + rb)
        hb = h[:, r0:r1].to(acc)
        for f0 in range(0, n, fb):
            f1 = min(n, f0 + fb)
            tile = buf[: I * (r1 - r0) * (f1 - f0)].view(I, r1 - r0, f1 - f0)
            torch.bmm(hb, Wt[:, :, f0:f1].to(acc), out=tile)
            if half:
                _C.topk_merge_half(as_numpy(tile), nb, nv, ni, r0, f0, half, threads())
            else:
                _C.topk_merge(as_numpy(tile), nb, nv, ni, r0, f0, threads())
    if half:  # a value that rounds to 0 (below float16's range) leaves its slot empty, as the fill rule says
        vals = vals.to(h.dtype)
        idx = torch.where(vals > 0, idx, torch.full_like(idx, -1))
    return SparseCode(idx, vals)


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import relu_readout_topk as kernel
    from . import gpu_table

    routed = gpu_table.routed("relu_readout_topk", kernel.relu_readout_topk_forward)

    def forward(h, W, b, k):
        vals, idx = routed(h, W, b, k)  # the kernel and the peer routes return (values, indices)
        return SparseCode(idx, vals)

    return Impl(forward=forward)


IMPLS = Table(
    "relu_readout_topk",
    reference=Impl(forward=reference_forward),
    cpp=Impl(forward=cpp_forward),
    triton=_triton_impl,
    cpp_dtypes=(torch.float32, torch.float64, torch.bfloat16, torch.float16),
)

# ---------------------------------------------------------------- torch.library registration


def _forward(h, W, b, k):
    return tuple(IMPLS.impl_for(W).forward(h, W, b, k))


@torch.library.custom_op("supcomp::relu_readout_topk", mutates_args=())
def relu_readout_topk_op(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical op: h [I, B, d], W [I, n, d], b [I, n] -> (indices [I, B, k] int64, values [I, B, k])."""
    return _forward(h, W, b, k)


@relu_readout_topk_op.register_fake
def _(h, W, b, k):
    shape = (h.shape[0], h.shape[1], k)
    return h.new_empty(shape, dtype=torch.int64), h.new_empty(shape)


def _setup_context(ctx, inputs, output):
    h, W, b, k = inputs
    idx, vals = output
    ctx.mark_non_differentiable(idx)
    ctx.save_for_backward(h, W, vals, idx)


def _backward(ctx, grad_idx, grad_vals):
    # Only the selected entries carry gradient, and only where relu is active (a selected value is
    # > 0 exactly when its slot is filled). With g = grad_vals on the selected (row, feature) pairs,
    # the pre-activation gradient is a padded sparse matrix, so
    #   grad_h = sparse_encode(idx, g, W)               (gather-sum of W rows)
    #   grad_W = scatter of g * h into the selected rows (sparse_encode's W grad)
    #   grad_b = scatter-add of g
    h, W, vals, idx = ctx.saved_tensors
    g = torch.where(vals > 0, grad_vals, torch.zeros_like(grad_vals)).contiguous()
    need = ctx.needs_input_grad
    if torch.is_grad_enabled():  # create_graph=True: reference formulas, differentiable again
        grad_h = sparse_encode_reference(idx, g, W) if need[0] else None
        grad_W = sparse_encode_reference_backward(h, idx, g, W, False, True)[1] if need[1] else None
    else:
        grad_h = sparse_encode_op(idx, g, W) if need[0] else None
        grad_W = sparse_encode_backward_op(h, idx, g, W, False, True)[1] if need[1] else None
    grad_b = None
    if need[2]:
        I, n = W.shape[0], W.shape[1]
        flat, gf = idx.flatten(1), g.flatten(1)  # not reshape(I, -1): ambiguous when I == 0
        grad_b = torch.zeros(I, n, dtype=g.dtype, device=g.device).scatter_add_(
            1, flat.clamp(min=0), torch.where(flat >= 0, gf, torch.zeros_like(gf))
        )
    return grad_h, grad_W, grad_b, None


relu_readout_topk_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- public function


def relu_readout_topk(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, k: int) -> SparseCode:
    """Top-k read-out: the ``k`` largest entries of ``relu(h @ W.T + b)``, sorted descending.

    Args:
        h: ``[..., d]`` (``[I, ..., d]`` with an instance axis).
        W: ``[n_features, d]`` (``[I, n_features, d]``).
        b: ``[n_features]`` (``[I, n_features]``), or None for zero.
        k: number of entries kept per row, ``0 <= k <= n_features``: an int, a numpy integer or a 0-d
            integer tensor.

    Returns:
        :class:`~supcomp.ops.SparseCode` ``(indices, values)``, each ``[..., k]``; indices int64.
        The order is that of ``sparse_encode``'s arguments (``torch.topk`` returns the reverse);
        ``.indices`` and ``.values`` name the fields.

    Raises:
        TypeError: ``k`` is not integer-like (a bool or a float); a tensor argument has the wrong
            type or dtype (mixed float dtypes included).
        ValueError: ``k`` is out of range; shapes or devices do not match.

    Fill rule: when a row has fewer than ``k`` positive entries, the remaining slots hold value 0
    and index -1 (so the result is a padded sparse code that ``sparse_encode`` accepts directly).
    Ties between equal positive values go to the lower feature index. NaN scores are never
    selected. Gradients flow to ``h``, ``W`` and ``b`` through the selected entries. Forward-mode
    AD, ``torch.func`` transforms and double backward run the pure-torch reference, which holds
    the ``[B, n]`` scores (docs/ops.md, "Autograd").


    GPU, TF32 and determinism: float32 scores use TF32 only when
    ``torch.backends.cuda.matmul.allow_tf32`` is on (``torch.set_float32_matmul_precision``), which can
    change which near-equal entries are selected. Deterministic. On CUDA the forward runs the route
    :mod:`supcomp.ops.gpu_table` names; on its ``topk(relu(addmm))`` route ties between equal values
    may go to another feature (same values), and the [B, n] scores are held in memory.
    """
    k = checks.check_int_like(k, "k")
    I, n, d, batch, hc, Wc, bc = check_readout_args(h, W, b)
    if k < 0 or k > n:
        raise ValueError(f"k: expected 0 <= k <= n_features = {n}, got {k}")
    if checks.reference_needed(hc, Wc, bc):
        idx, vals = reference_forward(hc, Wc, bc, k)
    elif checks.direct_ok(hc, Wc, bc):
        idx, vals = _forward(hc, Wc, bc, k)
    else:
        idx, vals = relu_readout_topk_op(hc, Wc, bc, k)
    lead = ((I,) if I is not None else ()) + batch
    return SparseCode(idx.reshape(*lead, k), vals.reshape(*lead, k))
