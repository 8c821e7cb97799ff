"""sparse_encode: padded sparse features -> their d-dimensional superposition (read-in).

Three implementations: ``naive.sparse_encode_forward`` (reference),
``csrc/sparse_encode.cpp`` (CPU), ``kernels/sparse_encode.py`` (Triton).
Test: ``tests/test_sparse_encode.py``.
"""
from __future__ import annotations

import torch

from . import _validate as V
from . import backends


def _impl(indices, W):
    """The backend for this call; checks index values for backends that don't."""
    name = backends.backend_name(W.device, W.dtype)
    if name != "cpp":
        V.check_index_range(indices, W.shape[1])
    return backends.get(name)


def _forward(indices, values, W):
    return _impl(indices, W).sparse_encode_forward(indices, values, W)


@torch.library.custom_op("supcomp::sparse_encode", mutates_args=())
def sparse_encode_op(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Canonical op: indices [I, B, k] int64, values [I, B, k], W [I, n, d] -> h [I, B, d]."""
    return _forward(indices, values, W)


@sparse_encode_op.register_fake
def _(indices, values, W):
    return W.new_empty(W.shape[0], indices.shape[1], W.shape[2])


@torch.library.custom_op("supcomp::sparse_encode_backward", mutates_args=())
def sparse_encode_backward_op(
    grad_h: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor,
    need_values: bool, need_W: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical backward -> (grad_values [I, B, k], grad_W [I, n, d]); an empty tensor for a gradient not needed."""
    gv, gw = _impl(indices, W).sparse_encode_backward(grad_h, indices, values, W, need_values, need_W)
    empty = W.new_empty(0)
    return (gv if gv is not None else empty), (gw if gw is not None else empty)


@sparse_encode_backward_op.register_fake
def _(grad_h, indices, values, W, need_values, need_W):
    return (values.new_empty(values.shape) if need_values else W.new_empty(0),
            W.new_empty(W.shape) if need_W else W.new_empty(0))


def _setup_context(ctx, inputs, output):
    indices, values, W = inputs
    ctx.save_for_backward(indices, values, W)


def _backward(ctx, grad_h):
    indices, values, W = ctx.saved_tensors
    need_values, need_W = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    gv, gw = sparse_encode_backward_op(grad_h.contiguous(), indices, values, W, need_values, need_W)
    return None, (gv if need_values else None), (gw if need_W else None)


sparse_encode_op.register_autograd(_backward, setup_context=_setup_context)


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

    Duplicate ids in a row add up. Differentiable in ``values`` and ``W``; the
    gradient of ``W`` is a scatter into the rows that occur (never a dense
    ``[B, n] x [B, d]`` product).
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
    k = indices.shape[-1]
    args = (V.canon(indices, I, (k,)), V.canon(values, I, (k,)), W.reshape(V.n_inst(I), n, d).contiguous())
    h = _forward(*args) if V.direct_ok(*args) else sparse_encode_op(*args)
    return h.reshape(*((I,) if I is not None else ()), *batch, d)
