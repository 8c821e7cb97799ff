"""relu_readout: ``y = relu(h @ W^T + b)``, the read-out with ReLU filtering.

Implementations (one table, :data:`IMPLS`): the pure-torch reference below; on CPU the BLAS GEMM
that torch links plus the C++ epilogues of ``csrc/relu_readout.cpp`` (the ReLU, and the ReLU mask
with the bias gradient: no extra pass over a [B, n] matrix); the Triton kernel
``kernels/relu_readout.py`` on CUDA. Tests: ``tests/ops/test_relu_readout.py``; benchmark:
``benchmarks/ops/relu_readout.py``.

Canonical layout: h [I, B, d], W [I, n, d], b [I, n] -> y [I, B, n].
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from . import checks
from .cpu_views import as_numpy, threads
from .dispatch import Impl, Table

# ---------------------------------------------------------------- reference (pure torch)


def reference_forward(h, W, b):
    """y = relu(h @ W^T + b) -> [I, B, n]."""
    return torch.relu(torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2)))


def reference_backward(grad_y, y, h, W):
    """Gradients given the output y: (grad_h [I, B, d], grad_W [I, n, d], grad_b [I, n])."""
    g = grad_y * (y > 0).to(grad_y.dtype)
    return torch.bmm(g, W), torch.bmm(g.transpose(1, 2), h), g.sum(1)


# ---------------------------------------------------------------- C++ (CPU): BLAS GEMM + C++ epilogues


def cpp_forward(h, W, b):
    """The GEMM with the bias folded in (beta = 1; baddbmm measured as fast as bmm), then an in-place ReLU."""
    y = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
    _C.relu_(as_numpy(y), threads())
    return y


def cpp_backward(grad_y, y, h, W):
    """The ReLU mask and the bias gradient in one C++ pass, then two GEMMs."""
    g = torch.empty_like(y)
    grad_b = torch.empty(y.shape[0], y.shape[2], dtype=y.dtype)
    _C.relu_grad(as_numpy(grad_y), as_numpy(y), as_numpy(g), as_numpy(grad_b), threads())
    return torch.bmm(g, W), torch.bmm(g.transpose(1, 2), h), grad_b


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import relu_readout as kernel
    from . import gpu_table

    return Impl(
        forward=gpu_table.routed("relu_readout", kernel.relu_readout_forward), backward=kernel.relu_readout_backward
    )


IMPLS = Table(
    "relu_readout",
    reference=Impl(forward=reference_forward, backward=reference_backward),
    cpp=Impl(forward=cpp_forward, backward=cpp_backward),
    triton=_triton_impl,
)

# ---------------------------------------------------------------- torch.library registration


def _forward(h, W, b):
    return IMPLS.impl_for(W).forward(h, W, b)


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
    return tuple(IMPLS.impl_for(W).backward(grad_y, y, h, W))


@relu_readout_backward_op.register_fake
def _(grad_y, y, h, W):
    return h.new_empty(h.shape), W.new_empty(W.shape), W.new_empty(W.shape[0], W.shape[1])


def _setup_context(ctx, inputs, output):
    h, W, b = inputs
    ctx.save_for_backward(h, W, output)


def _backward(ctx, grad_y):
    h, W, y = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: the reference backward is differentiable again
        gh, gw, gb = reference_backward(grad_y, y, h, W)
    else:
        gh, gw, gb = relu_readout_backward_op(grad_y.contiguous(), y, h, W)
    need = ctx.needs_input_grad
    return (gh if need[0] else None), (gw if need[1] else None), (gb if need[2] else None)


relu_readout_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- public function


def check_readout_args(h, W, b):
    """Validate (h, W, b) of a read-out and return (I, n, d, batch, canonical h, W, b).

    Raises:
        TypeError: wrong type or dtype. ValueError: shapes or devices do not match.
    """
    I, n, d = checks.check_weight(W)
    checks.check_float(h, "h")
    checks.check_same_dtype(h, "h", W, "W")
    checks.check_same_device(h, "h", W, "W")
    batch = checks.split_instance(h, "h", I, 1, "d")
    if h.shape[-1] != d:
        raise ValueError(f"h: last dimension {h.shape[-1]} does not match W's d = {d} (W is {checks.shape_str(W)})")
    bc = checks.check_bias(b, W, I, n)
    return I, n, d, batch, checks.canon(h, I, (d,)), checks.canon_weight(W, I, n, d), bc


def relu_readout(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Read features out of a superposition with ReLU filtering: ``y = relu(h @ W.T + b)``.

    Args:
        h: ``[..., d]`` hidden vectors (``[I, ..., d]`` with an instance axis).
        W: ``[n_features, d]`` (``[I, n_features, d]``), one feature per row.
        b: ``[n_features]`` (``[I, n_features]``) bias, or None for zero. A
            negative bias filters small interference.

    Returns:
        y: ``[..., n_features]`` (``[I, ..., n_features]``).

    Raises:
        TypeError: an argument is not a tensor, or has the wrong dtype.
        ValueError: shapes or devices do not match.

    Differentiable in ``h``, ``W`` and ``b``; forward-mode AD, ``torch.func`` transforms and double
    backward run the pure-torch reference (docs/ops.md, "Autograd").


    GPU, TF32 and determinism: float32 products use TF32 only when
    ``torch.backends.cuda.matmul.allow_tf32`` is on (``torch.set_float32_matmul_precision("high")``
    turns it on), as torch's own matmuls do. Forward and backward are cuBLAS GEMMs plus elementwise
    epilogues, deterministic whatever ``torch.use_deterministic_algorithms`` says; on CUDA the
    forward runs the route :mod:`supcomp.ops.gpu_table` names (Triton epilogue or ``relu(addmm)``).
    """
    I, n, d, batch, hc, Wc, bc = check_readout_args(h, W, b)
    if checks.reference_needed(hc, Wc, bc):
        y = reference_forward(hc, Wc, bc)
    elif checks.direct_ok(hc, Wc, bc):
        y = _forward(hc, Wc, bc)
    else:
        y = relu_readout_op(hc, Wc, bc)
    return y.reshape(*((I,) if I is not None else ()), *batch, n)
