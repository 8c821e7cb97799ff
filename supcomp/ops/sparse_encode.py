"""sparse_encode: padded sparse features -> their d-dimensional superposition (the read-in).

``h[i, b] = sum_j values[i, b, j] * W[i, indices[i, b, j]]``.

Implementations (one table, :data:`IMPLS`): the pure-torch reference below, the C++ kernel
``csrc/sparse_encode.cpp`` (CPU) and the Triton kernel ``kernels/sparse_encode.py`` (CUDA).
Tests: ``tests/ops/test_sparse_encode.py``; benchmark: ``benchmarks/ops/sparse_encode.py``.

Canonical layout of the implementations (the public :func:`sparse_encode` reshapes to it; inputs
arrive contiguous, of one float dtype, with int64 indices checked to lie in [-1, n)):

    indices  int64  [I, B, k]   feature ids, -1 = empty slot
    values   float  [I, B, k]
    W        float  [I, n, d]   one feature per row
    h        float  [I, B, d]
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from . import checks, peer_routes
from .cpu_views import as_numpy, threads
from .dispatch import Impl, Table

# ---------------------------------------------------------------- reference (pure torch)


def gather_rows(W: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """W [I, n, d], indices [I, B, k] (-1 allowed) -> rows [I, B, k, d] (zero rows for -1)."""
    I, n, d = W.shape
    if n == 0:  # every slot is empty (-1); there is no row 0 to gather from
        return W.new_zeros(*indices.shape, d)
    rows = W[torch.arange(I, device=W.device)[:, None, None], indices.clamp(min=0)]
    # where, not multiply: an inf/NaN in row 0 must not leak into empty slots.
    return torch.where((indices >= 0).unsqueeze(-1), rows, torch.zeros((), dtype=W.dtype, device=W.device))


def reference_forward(indices, values, W):
    """h[i, b] = sum_j values[i, b, j] * W[i, indices[i, b, j]] -> [I, B, d]."""
    rows = gather_rows(W, indices)
    # An empty slot contributes nothing, whatever its value (a NaN/inf there must not give NaN via 0 * inf).
    v = torch.where(indices >= 0, values.to(W.dtype), torch.zeros((), dtype=W.dtype, device=W.device))
    return torch.einsum("ibk,ibkd->ibd", v, rows)


def reference_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    """Gradients of sparse_encode: (grad_values [I, B, k] or None, grad_W [I, n, d] or None)."""
    grad_values = grad_W = None
    valid = indices >= 0
    if need_values:
        rows = gather_rows(W, indices)
        grad_values = torch.einsum("ibd,ibkd->ibk", grad_h, rows).to(values.dtype)
    if need_W:
        I, n, d = W.shape
        if n == 0:
            return grad_values, W.new_zeros(W.shape)
        zero = torch.zeros((), dtype=values.dtype, device=values.device)
        contrib = torch.where(valid, values, zero).unsqueeze(-1).to(grad_h.dtype) * grad_h.unsqueeze(2)  # [I,B,k,d]
        flat = (indices.clamp(min=0) + torch.arange(I, device=W.device)[:, None, None] * n).reshape(-1)
        grad_W = torch.zeros(I * n, d, dtype=grad_h.dtype, device=W.device)
        grad_W.index_add_(0, flat, contrib.reshape(flat.shape[0], d))  # explicit: d may be 0
        grad_W = grad_W.reshape(I, n, d).to(W.dtype)
    return grad_values, grad_W


# ---------------------------------------------------------------- C++ (CPU)


def cpp_forward(indices, values, W):
    """``reference_forward`` on CPU: ``F.embedding_bag`` where it is at least as fast, else the C++ kernel.

    Rule (float32, one instance, every slot filled -- the benchmark matrix of benchmarks/RESULTS.md):
    ``F.embedding_bag(indices, W, mode="sum", per_sample_weights=values)``, FBGEMM's prefetching gather,
    measured 1.03-1.3x the C++ row-major kernel there (both gather-bound). Codes with an empty slot
    ``-1`` are found first (a numpy ``min``, a few per cent of the gather) and run the C++ kernel, as
    failing inside embedding_bag costs about half a forward. An index out of range makes embedding_bag
    raise before any result is used and falls back to the checked C++ kernel, which raises the op's own
    IndexError: the same values and errors either way. float64 and several instances run the C++ kernel.
    """
    I, B, k = indices.shape
    if (
        W.dtype == torch.float32
        and I == 1
        and B * k > 0
        and W.shape[1] * W.shape[2] > 0
        and as_numpy(indices).min() >= 0
    ):
        try:
            return peer_routes.embedding_bag_2d(indices, values, W)
        except (RuntimeError, IndexError):  # an empty slot or a bad index: the C++ kernel decides
            pass
    return cpp_kernel_forward(indices, values, W)


def cpp_kernel_forward(indices, values, W):
    """``reference_forward`` on the C++ kernel; the kernel checks the index range itself."""
    I, _, d = W.shape
    out = torch.empty(I, indices.shape[1], d, dtype=W.dtype)
    _C.sparse_encode_forward(as_numpy(indices), as_numpy(values), as_numpy(W), as_numpy(out), threads())
    return out


def cpp_backward(grad_h, indices, values, W, need_values=True, need_W=True):
    """``reference_backward`` on the C++ kernels (one pass over the slots when both are needed)."""
    grad_values = grad_W = None
    g, idx, nt = as_numpy(grad_h), as_numpy(indices), threads()
    if need_values and need_W:
        grad_values, grad_W = torch.empty_like(values), torch.empty_like(W)
        _C.sparse_encode_backward(g, idx, as_numpy(values), as_numpy(W), as_numpy(grad_values), as_numpy(grad_W), nt)
        return grad_values, grad_W
    if need_values:
        grad_values = torch.empty_like(values)
        _C.sparse_encode_backward_values(g, idx, as_numpy(W), as_numpy(grad_values), nt)
    if need_W:
        grad_W = torch.empty_like(W)  # zeroed by the kernel, per column block
        _C.sparse_encode_backward_weight(g, idx, as_numpy(values), as_numpy(grad_W), nt)
    return grad_values, grad_W


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import sparse_encode as kernel
    from . import gpu_table

    return Impl(
        forward=gpu_table.routed("sparse_encode", kernel.sparse_encode_forward), backward=kernel.sparse_encode_backward
    )


IMPLS = Table(
    "sparse_encode",
    reference=Impl(forward=reference_forward, backward=reference_backward),
    cpp=Impl(forward=cpp_forward, backward=cpp_backward),
    triton=_triton_impl,
)


def impl_checked(indices: torch.Tensor, W: torch.Tensor) -> Impl:
    """The implementation for this call; checks the index values for the backends that do not."""
    backend = IMPLS.backend(W.device, W.dtype)
    if backend != "cpp":
        checks.check_index_range(indices, W.shape[1])
    return IMPLS.get(backend)


# ---------------------------------------------------------------- torch.library registration


def _forward(indices, values, W):
    return impl_checked(indices, W).forward(indices, values, W)


@torch.library.custom_op("supcomp::sparse_encode", mutates_args=())
def sparse_encode_op(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Canonical op: indices [I, B, k] int64, values [I, B, k], W [I, n, d] -> h [I, B, d]."""
    return _forward(indices, values, W)


@sparse_encode_op.register_fake
def _(indices, values, W):
    return W.new_empty(W.shape[0], indices.shape[1], W.shape[2])


@torch.library.custom_op("supcomp::sparse_encode_backward", mutates_args=())
def sparse_encode_backward_op(
    grad_h: torch.Tensor,
    indices: torch.Tensor,
    values: torch.Tensor,
    W: torch.Tensor,
    need_values: bool,
    need_W: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical backward -> (grad_values [I, B, k], grad_W [I, n, d]); an empty tensor for a gradient not needed."""
    gv, gw = impl_checked(indices, W).backward(grad_h, indices, values, W, need_values, need_W)
    empty = W.new_empty(0)
    return (gv if gv is not None else empty), (gw if gw is not None else empty)


@sparse_encode_backward_op.register_fake
def _(grad_h, indices, values, W, need_values, need_W):
    return (
        values.new_empty(values.shape) if need_values else W.new_empty(0),
        W.new_empty(W.shape) if need_W else W.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    indices, values, W = inputs
    ctx.save_for_backward(indices, values, W)


def _backward(ctx, grad_h):
    indices, values, W = ctx.saved_tensors
    need_values, need_W = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    if torch.is_grad_enabled():  # create_graph=True: the reference backward is differentiable again
        gv, gw = reference_backward(grad_h, indices, values, W, need_values, need_W)
    else:
        gv, gw = sparse_encode_backward_op(grad_h.contiguous(), indices, values, W, need_values, need_W)
    return None, (gv if need_values else None), (gw if need_W else None)


sparse_encode_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- public function


def sparse_encode(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Superpose padded sparse features: ``h = sum_j values[..., j] * W[indices[..., j]]``.

    Args:
        indices: ``[..., k]`` int64 (or int32) feature ids; ``-1`` marks an empty slot.
            With an instance axis: ``[I, ..., k]``.
        values: ``[..., k]`` (``[I, ..., k]``) feature values, same float dtype as ``W``.
        W: ``[n_features, d]`` feature directions, one per row, or ``[I, n_features, d]``
            for ``I`` independent models in one call.

    Returns:
        h: ``[..., d]`` (``[I, ..., d]``), dtype of ``W``.

    Raises:
        TypeError: an argument is not a tensor, or has the wrong dtype.
        ValueError: shapes or devices do not match.
        IndexError: an index is outside ``[-1, n_features)``.

    Duplicate ids in a row add up. Differentiable in ``values`` and ``W``; the gradient of ``W``
    is a scatter into the rows that occur (never a dense ``[B, n] x [B, d]`` product). Forward-mode
    AD, ``torch.func`` transforms and double backward run the pure-torch reference (docs/ops.md,
    "Autograd").


    GPU, TF32 and determinism: no matrix product, so TF32 settings change nothing. On CUDA the
    forward runs the route :mod:`supcomp.ops.gpu_table` names for the GPU (the Triton kernel,
    ``F.embedding_bag`` or a cuSPARSE CSR product; all deterministic) and the gradient of ``W`` is a
    feature-sorted segment reduction, bit-identical run to run with or without
    ``torch.use_deterministic_algorithms``. On CUDA the index range is checked on the device (no host
    sync): a bad index raises a device-side assertion (RuntimeError) at the next synchronisation.
    """
    I, n, d = checks.check_weight(W)
    indices = checks.check_indices(indices)
    checks.check_float(values, "values")
    checks.check_same_dtype(values, "values", W, "W")
    checks.check_same_device(indices, "indices", W, "W")
    checks.check_same_device(values, "values", W, "W")
    if indices.shape != values.shape:
        raise ValueError(f"values: shape {checks.shape_str(values)} does not match indices {checks.shape_str(indices)}")
    batch = checks.split_instance(indices, "indices", I, 1, "k")
    k = indices.shape[-1]
    args = (checks.canon(indices, I, (k,)), checks.canon(values, I, (k,)), checks.canon_weight(W, I, n, d))
    if checks.reference_needed(*args):
        checks.check_index_range_transformed(args[0], n)
        h = reference_forward(*args)
    elif checks.direct_ok(*args):
        h = _forward(*args)
    else:
        h = sparse_encode_op(*args)
    return h.reshape(*((I,) if I is not None else ()), *batch, d)
