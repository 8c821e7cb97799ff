"""superpose: the fused tied-weight toy-model forward ``y = relu(W^T W x + b)`` for sparse x.

Equal to ``relu_readout(sparse_encode(indices, values, W), W, b)`` but one kernel: the hidden
vector h never goes to memory.

Implementations (one table, :data:`IMPLS`): the pure-torch reference below, the C++ kernel
``csrc/superpose.cpp`` (CPU) and the Triton kernel ``kernels/superpose.py`` (CUDA).
Tests: ``tests/ops/test_superpose.py``; benchmark: ``benchmarks/ops/superpose.py``.

Canonical layout: indices/values [I, B, k], W [I, n, d], b [I, n] -> y [I, B, n].
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from . import checks
from .cpu_views import as_numpy, threads
from .dispatch import Impl, Table
from .relu_readout import reference_backward as relu_readout_reference_backward
from .relu_readout import reference_forward as relu_readout_reference
from .relu_readout import relu_readout_backward_op
from .sparse_encode import reference_backward as sparse_encode_reference_backward
from .sparse_encode import reference_forward as sparse_encode_reference
from .sparse_encode import sparse_encode_backward_op, sparse_encode_op

# ---------------------------------------------------------------- reference (pure torch)


def reference_forward(indices, values, W, b):
    """y = relu(W W[idx]^T values + b): relu_readout(sparse_encode(indices, values, W), W, b)."""
    return relu_readout_reference(sparse_encode_reference(indices, values, W), W, b)


# ---------------------------------------------------------------- C++ (CPU)


def cpp_forward(indices, values, W, b):
    """``reference_forward`` in one C++ kernel; the kernel checks the index range itself."""
    I, n, _ = W.shape
    out = torch.empty(I, indices.shape[1], n, dtype=W.dtype)
    _C.superpose_forward(as_numpy(indices), as_numpy(values), as_numpy(W), as_numpy(b), as_numpy(out), threads())
    return out


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import superpose as kernel
    from . import gpu_table

    return Impl(forward=gpu_table.routed("superpose", kernel.superpose_forward))


IMPLS = Table(
    "superpose",
    reference=Impl(forward=reference_forward),
    cpp=Impl(forward=cpp_forward),
    triton=_triton_impl,
)

# ---------------------------------------------------------------- torch.library registration


def _forward(indices, values, W, b):
    backend = IMPLS.backend(W.device, W.dtype)
    if backend != "cpp":
        checks.check_index_range(indices, W.shape[1])
    return IMPLS.get(backend).forward(indices, values, W, b)


@torch.library.custom_op("supcomp::superpose", mutates_args=())
def superpose_op(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Canonical op: indices/values [I, B, k], W [I, n, d], b [I, n] -> y [I, B, n]."""
    return _forward(indices, values, W, b)


@superpose_op.register_fake
def _(indices, values, W, b):
    return W.new_empty(W.shape[0], indices.shape[1], W.shape[1])


def _setup_context(ctx, inputs, output):
    indices, values, W, b = inputs
    ctx.save_for_backward(indices, values, W, output)


def _backward(ctx, grad_y):
    # y = relu(h W^T + b), h = sparse_encode(x): W gets a dense part (the read-out) plus a sparse
    # scatter (the read-in). h is recomputed (B*k*d work) rather than saved.
    indices, values, W, y = ctx.saved_tensors
    need = ctx.needs_input_grad
    if torch.is_grad_enabled():  # create_graph=True: the reference backward is differentiable again
        h = sparse_encode_reference(indices, values, W)
        grad_h, grad_W_out, grad_b = relu_readout_reference_backward(grad_y, y, h, W)
        grad_values, grad_W_in = sparse_encode_reference_backward(grad_h, indices, values, W, need[1], need[2])
    else:
        h = sparse_encode_op(indices, values, W)
        grad_h, grad_W_out, grad_b = relu_readout_backward_op(grad_y.contiguous(), y, h, W)
        grad_values, grad_W_in = sparse_encode_backward_op(grad_h, indices, values, W, need[1], need[2])
    return (
        None,
        grad_values if need[1] else None,
        (grad_W_out + grad_W_in) if need[2] else None,
        grad_b if need[3] else None,
    )


superpose_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- public function


def superpose(
    indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None
) -> torch.Tensor:
    """Tied-weight superposition round trip ``y = relu(W^T W x + b)`` with ``x`` given sparsely.

    Args:
        indices: ``[..., k]`` int64/int32 feature ids, ``-1`` = empty (``[I, ..., k]`` with instances).
        values: ``[..., k]`` feature values, dtype of ``W``.
        W: ``[n_features, d]`` or ``[I, n_features, d]``.
        b: ``[n_features]`` (``[I, n_features]``) or None for zero.

    Returns:
        y: ``[..., n_features]`` (``[I, ..., n_features]``).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong dtype.
        ValueError: shapes or devices do not match.
        IndexError: an index is outside ``[-1, n_features)``.

    Differentiable in ``values``, ``W`` and ``b``; forward-mode AD, ``torch.func`` transforms and
    double backward run the pure-torch reference (docs/ops.md, "Autograd").


    GPU, TF32 and determinism: float32 products use TF32 only when
    ``torch.backends.cuda.matmul.allow_tf32`` is on (``torch.set_float32_matmul_precision``). The
    gradient of ``W``'s read-in part is a feature-sorted segment reduction, bit-identical run to run.
    On CUDA the index range is checked on the device (no host sync): a bad index raises a
    device-side assertion (RuntimeError) at the next synchronisation.
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
    bc = checks.check_bias(b, W, I, n)
    k = indices.shape[-1]
    args = (checks.canon(indices, I, (k,)), checks.canon(values, I, (k,)), checks.canon_weight(W, I, n, d), bc)
    if checks.reference_needed(*args):
        checks.check_index_range_transformed(args[0], n)
        y = reference_forward(*args)
    elif checks.direct_ok(*args):
        y = _forward(*args)
    else:
        y = superpose_op(*args)
    return y.reshape(*((I,) if I is not None else ()), *batch, n)
