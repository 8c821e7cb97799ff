"""tms_step: one training step of a batch of toy models: forward, loss and gradients in one call.

The toy models of "Toy Models of Superposition" (Elhage et al. 2022), ``I`` instances at once:

    h = x E                       (E [I, n, m]; x [I, B, n] sparse)
    h = relu(h)                   if hidden_relu  (kinds "relu_hidden", "abs")
    y = h D^T + b                 (D = E for tied models)
    y = relu(y)                   unless kind == "linear"
    loss_i = sum_{b,f} importance_f (y_f - t_f)^2 / (B n),   t = x (|x| for kind "abs")

Implementations (one table, :data:`IMPLS`), each ``loss_and_grad(batch, E, D, b, importance, kind)
-> (loss [I], grad_E, grad_D or None when tied, grad_b)``:

* the pure-torch reference below: the TMS notebook's einsum model with torch autograd;
* the C++ step ``csrc/tms_step.cpp`` (CPU): one call for every instance, with variants that draw
  the batch inside the step (:func:`cpp_sample_loss_and_grad`) and also apply AdamW there
  (:func:`cpp_sample_adamw_step`);
* the Triton composition ``kernels/tms_step.py`` (CUDA): the sparse_encode and relu_readout
  kernels with the backward written out, no autograd.

Tests: ``tests/ops/test_tms_step.py``; benchmark: ``benchmarks/ops/tms_step.py``.
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from .cpu_views import threads
from .dispatch import Impl, Table
from .tms_sample import CsrSampler, SparseBatch

KINDS = ("linear", "relu_output", "relu_hidden", "abs")


def step_flags(kind: str) -> tuple[bool, bool, bool]:
    """(hidden_relu, output_relu, abs_target) of a model kind.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return kind in ("relu_hidden", "abs"), kind != "linear", kind == "abs"


# ---------------------------------------------------------------- reference (pure torch)


def reference_forward(x: torch.Tensor, E: torch.Tensor, D: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """The einsum model: dense ``x [I, B, n]`` -> ``y [I, B, n]``."""
    hidden_relu, output_relu, _ = step_flags(kind)
    h = torch.einsum("ibn,inm->ibm", x, E)
    if hidden_relu:
        h = torch.relu(h)
    y = torch.einsum("ibm,inm->ibn", h, D) + b[:, None]
    return torch.relu(y) if output_relu else y


def reference_loss(x, E, D, b, importance, kind) -> torch.Tensor:
    """Per-instance losses ``[I]`` of the dense batch ``x``."""
    target = x.abs() if kind == "abs" else x
    return (importance[:, None] * (reference_forward(x, E, D, b, kind) - target) ** 2).mean((1, 2))


def reference_dense_loss_and_grad(x, E, D, b, importance, kind):
    """``reference_loss`` and its gradients by torch autograd: (loss, grad_E, grad_D or None if tied, grad_b)."""
    tied = D is E
    with torch.enable_grad():
        E_ = E.detach().requires_grad_()
        D_ = E_ if tied else D.detach().requires_grad_()
        b_ = b.detach().requires_grad_()
        loss = reference_loss(x, E_, D_, b_, importance, kind)
        grads = torch.autograd.grad(loss.sum(), [E_, b_] if tied else [E_, D_, b_])
    if tied:
        return loss.detach(), grads[0], None, grads[1]
    return loss.detach(), grads[0], grads[1], grads[2]


def reference_loss_and_grad(batch: SparseBatch, E, D, b, importance, kind):
    """``reference_dense_loss_and_grad`` on the dense form of a CSR batch."""
    return reference_dense_loss_and_grad(batch.to_dense().to(E.device), E, D, b, importance, kind)


# ---------------------------------------------------------------- C++ (CPU)


def _model_arrays(E, D, b, importance) -> tuple:
    """The model's tensors as the numpy views every C++ step takes: (E, D, b, importance)."""
    return E.detach().numpy(), D.detach().numpy(), b.detach().numpy(), importance.numpy()


def _grads(E, D):
    gE = torch.empty_like(E)
    gD = gE if D is E else torch.empty_like(D)
    return gE, gD


def cpp_loss_and_grad(batch: SparseBatch, E, D, b, importance, kind, dense_strategy: int = 0):
    """The fused C++ step on a CSR batch (``_C.tms_step``): one call for every instance.

    ``dense_strategy`` forces the read-in layout for tests and benchmarks (0 by density, 1 sparse
    rows, 2 dense tiles); the results are the same bit for bit with finite weights.
    """
    hidden_relu, output_relu, abs_target = step_flags(kind)
    gE, gD = _grads(E, D)
    gb = torch.empty_like(b)
    loss = torch.empty(E.shape[0], dtype=torch.float64)
    _C.tms_step(
        batch.offsets.numpy(),
        batch.indices.numpy(),
        batch.values.numpy(),
        *_model_arrays(E, D, b, importance),
        gE.numpy(),
        gD.numpy(),
        gb.numpy(),
        loss.numpy(),
        hidden_relu,
        output_relu,
        abs_target,
        threads(),
        dense=dense_strategy,
    )
    return loss.float(), gE, (None if D is E else gD), gb


def _check_sampler(sampler: CsrSampler, E: torch.Tensor):
    if E.device.type != "cpu" or E.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"E: the fused sampled step needs a float32/float64 model on CPU, got {E.dtype} on {E.device}")
    if E.dtype != sampler.dtype:
        raise TypeError(f"sampler: dtype {sampler.dtype} does not match the model's {E.dtype}")


def cpp_sample_loss_and_grad(
    sampler: CsrSampler, step: int, E, D, b, importance, kind, dense_strategy: int = 0, lane_strategy: int = 0
):
    """``cpp_loss_and_grad(sampler.sample(step), ...)`` in one C++ call (``_C.tms_sample_step``).

    The step draws its rows tile by tile as it goes instead of reading a batch from memory: the same
    numbers, so the same losses and gradients, bit for bit. ``dense_strategy`` as in
    :func:`cpp_loss_and_grad`; ``lane_strategy`` forces how small models run (0 automatic, 1 row
    tiles, 2 batch rows in SIMD lanes); neither changes the results.

    Raises:
        ValueError: the model is not float32/float64 on CPU. TypeError: the sampler's dtype differs.
    """
    _check_sampler(sampler, E)
    hidden_relu, output_relu, abs_target = step_flags(kind)
    gE, gD = _grads(E, D)
    gb = torch.empty_like(b)
    loss = torch.empty(E.shape[0], dtype=torch.float64)
    _C.tms_sample_step(
        *sampler.key_args(step),
        sampler.signed_values,
        *_model_arrays(E, D, b, importance),
        gE.numpy(),
        gD.numpy(),
        gb.numpy(),
        loss.numpy(),
        hidden_relu,
        output_relu,
        abs_target,
        threads(),
        instance_seeds=sampler.instance_seeds,
        dense=dense_strategy,
        lanes=lane_strategy,
    )
    return loss.float(), gE, (None if D is E else gD), gb


def cpp_sample_adamw_step(
    sampler: CsrSampler,
    step: int,
    E,
    D,
    b,
    importance,
    kind,
    state: list[torch.Tensor],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    adam_step: int,
    dense_strategy: int = 0,
    lane_strategy: int = 0,
) -> torch.Tensor:
    """:func:`cpp_sample_loss_and_grad` followed by torch's AdamW update of E, D, b in place, in one C++ call.

    Each instance is updated as soon as its gradients are complete, on the same thread.
    ``state``: the six moment tensors [exp_avg_E, exp_avg_sq_E, exp_avg_D, exp_avg_sq_D, exp_avg_b,
    exp_avg_sq_b] (the D pair is the E pair when tied), updated in place; ``adam_step`` >= 1 is the
    step number of the bias corrections. Returns the per-instance losses ``[I]`` before the update.
    """
    _check_sampler(sampler, E)
    hidden_relu, output_relu, abs_target = step_flags(kind)
    loss = torch.empty(E.shape[0], dtype=torch.float64)
    _C.tms_sample_adamw_step(
        *sampler.key_args(step),
        sampler.signed_values,
        *_model_arrays(E, D, b, importance),
        [t.numpy() for t in state],
        loss.numpy(),
        hidden_relu,
        output_relu,
        abs_target,
        lr,
        betas[0],
        betas[1],
        eps,
        weight_decay,
        adam_step,
        threads(),
        instance_seeds=sampler.instance_seeds,
        dense=dense_strategy,
        lanes=lane_strategy,
    )
    return loss.float()


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import tms_step as kernel

    def loss_and_grad(batch: SparseBatch, E, D, b, importance, kind):
        idx, val = (t.to(E.device) for t in batch.to_padded())
        target = batch.to_dense().to(E.device)
        hidden_relu, output_relu, abs_target = step_flags(kind)
        return kernel.tms_step_loss_and_grad(
            idx,
            val.to(E.dtype),
            target.abs() if abs_target else target,
            E,
            D,
            b,
            importance,
            hidden_relu,
            output_relu,
        )

    return Impl(loss_and_grad=loss_and_grad)


IMPLS = Table(
    "tms_step",
    reference=Impl(loss_and_grad=reference_loss_and_grad),
    cpp=Impl(loss_and_grad=cpp_loss_and_grad),
    triton=_triton_impl,
)
