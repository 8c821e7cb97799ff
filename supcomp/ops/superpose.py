"""superpose: the fused tied-weight toy-model forward y = relu(W^T W x + b) for sparse x.

Equal to ``relu_readout(sparse_encode(indices, values, W), W, b)`` but one
kernel: the hidden vector h never goes to memory.

Three implementations: ``naive.superpose_forward`` (reference),
``csrc/superpose.cpp`` (CPU), ``kernels/superpose.py`` (Triton).
Test: ``tests/test_superpose.py``.
"""
from __future__ import annotations

import torch

from . import _validate as V
from . import backends
from .relu_readout import relu_readout_backward_op
from .sparse_encode import _impl, sparse_encode_backward_op, sparse_encode_op


def _forward(indices, values, W, b):
    return _impl(indices, W).superpose_forward(indices, values, W, b)


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
    # y = relu(h W^T + b), h = sparse_encode(x): W gets a dense part (the
    # read-out) plus a sparse scatter (the read-in). h is recomputed (B*k*d
    # work) rather than saved.
    indices, values, W, y = ctx.saved_tensors
    need = ctx.needs_input_grad
    h = sparse_encode_op(indices, values, W)
    grad_h, grad_W_out, grad_b = relu_readout_backward_op(grad_y.contiguous(), y, h, W)
    grad_values, grad_W_in = sparse_encode_backward_op(grad_h, indices, values, W, need[1], need[2])
    return (None, grad_values if need[1] else None, (grad_W_out + grad_W_in) if need[2] else None,
            grad_b if need[3] else None)


superpose_op.register_autograd(_backward, setup_context=_setup_context)


def superpose(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Tied-weight superposition round trip ``y = relu(W^T W x + b)`` with ``x`` given sparsely.

    Args:
        indices: ``[..., k]`` int64/int32 feature ids, ``-1`` = empty (``[I, ..., k]`` with instances).
        values: ``[..., k]`` feature values, dtype of ``W``.
        W: ``[n_features, d]`` or ``[I, n_features, d]``.
        b: ``[n_features]`` (``[I, n_features]``) or None for zero.

    Returns:
        y: ``[..., n_features]`` (``[I, ..., n_features]``).

    Differentiable in ``values``, ``W`` and ``b``.
    """
    I, n, d = V.check_weight(W)
    indices = V.check_indices(indices)
    V.check_float(values, "values")
    V.check_same_dtype(values, "values", W, "W")
    V.check_same_device(indices, "indices", W, "W")
    V.check_same_device(values, "values", W, "W")
    if indices.shape != values.shape:
        raise ValueError(f"values: shape {V.shape_str(values)} does not match indices {V.shape_str(indices)}")
    batch = V.split_instance(indices, "indices", I, 1, "k")
    bc = V.check_bias(b, W, I, n)
    k = indices.shape[-1]
    args = (V.canon(indices, I, (k,)), V.canon(values, I, (k,)), W.reshape(V.n_inst(I), n, d).contiguous(), bc)
    y = _forward(*args) if V.direct_ok(*args) else superpose_op(*args)
    return y.reshape(*((I,) if I is not None else ()), *batch, n)
