"""relu_readout: y = relu(h @ W^T + b), the read-out with ReLU filtering.

Three implementations: ``naive.relu_readout_forward`` (reference),
``supcomp/ops/cpu.py`` + ``csrc/readout.cpp`` (CPU: BLAS GEMM with fused C++
epilogues), ``kernels/relu_readout.py`` (Triton). Test: ``tests/test_relu_readout.py``.
"""
from __future__ import annotations

import torch

from . import _validate as V
from . import backends


def _forward(h, W, b):
    return backends.for_tensor(W).relu_readout_forward(h, W, b)


@torch.library.custom_op("supcomp::relu_readout", mutates_args=())
def relu_readout_op(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Canonical op: h [I, B, d], W [I, n, d], b [I, n] -> y [I, B, n]."""
    return _forward(h, W, b)


@relu_readout_op.register_fake
def _(h, W, b):
    return h.new_empty(h.shape[0], h.shape[1], W.shape[1])


@torch.library.custom_op("supcomp::relu_readout_backward", mutates_args=())
def relu_readout_backward_op(
    grad_y: torch.Tensor, y: torch.Tensor, h: torch.Tensor, W: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical backward -> (grad_h [I, B, d], grad_W [I, n, d], grad_b [I, n])."""
    return tuple(backends.for_tensor(W).relu_readout_backward(grad_y, y, h, W))


@relu_readout_backward_op.register_fake
def _(grad_y, y, h, W):
    return h.new_empty(h.shape), W.new_empty(W.shape), W.new_empty(W.shape[0], W.shape[1])


def _setup_context(ctx, inputs, output):
    h, W, b = inputs
    ctx.save_for_backward(h, W, output)


def _backward(ctx, grad_y):
    h, W, y = ctx.saved_tensors
    gh, gw, gb = relu_readout_backward_op(grad_y.contiguous(), y, h, W)
    need = ctx.needs_input_grad
    return (gh if need[0] else None), (gw if need[1] else None), (gb if need[2] else None)


relu_readout_op.register_autograd(_backward, setup_context=_setup_context)


def check_readout_args(h, W, b):
    """Validate (h, W, b) and return (I, n, d, batch, canonical h, W, b)."""
    I, n, d = V.check_weight(W)
    V.check_float(h, "h")
    V.check_same_dtype(h, "h", W, "W")
    V.check_same_device(h, "h", W, "W")
    batch = V.split_instance(h, "h", I, 1, "d")
    if h.shape[-1] != d:
        raise ValueError(f"h: last dimension {h.shape[-1]} does not match W's d = {d} (W is {V.shape_str(W)})")
    bc = V.check_bias(b, W, I, n)
    return I, n, d, batch, V.canon(h, I, (d,)), W.reshape(V.n_inst(I), n, d).contiguous(), bc


def relu_readout(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Read features out of a superposition with ReLU filtering: ``y = relu(h @ W.T + b)``.

    Args:
        h: ``[..., d]`` hidden vectors (``[I, ..., d]`` with an instance axis).
        W: ``[n_features, d]`` (``[I, n_features, d]``), one feature per row.
        b: ``[n_features]`` (``[I, n_features]``) bias, or None for zero. A
            negative bias filters small interference.

    Returns:
        y: ``[..., n_features]`` (``[I, ..., n_features]``).

    Differentiable in ``h``, ``W`` and ``b``.
    """
    I, n, d, batch, hc, Wc, bc = check_readout_args(h, W, b)
    y = _forward(hc, Wc, bc) if V.direct_ok(hc, Wc, bc) else relu_readout_op(hc, Wc, bc)
    return y.reshape(*((I,) if I is not None else ()), *batch, n)
