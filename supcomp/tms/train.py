"""Training a batch of toy models: the fused trainer and the plain einsum reference.

Both trainers draw identical batches (``BatchSampler``), start from identical weights
(``ToyModel(config, seed)``), and step AdamW or Adam (torch's, or on CPU the same update inside the fused
C++ step); they differ only in how the loss gradient is computed (``supcomp.ops.tms_step``):

* ``backend="fused"``: on CPU one C++ call per step draws the batch, runs forward, loss and
  backward of every instance and applies AdamW, instance by instance (``FusedAdamW``:
  torch's AdamW update to float rounding). ``fused_loss_and_grad`` runs the op's table on a
  batch already drawn (C++ on CPU, the Triton kernels on CUDA).
* ``train`` off the CPU (a GPU) draws each batch on the device (``DeviceBatchSampler``: the same
  numbers as the C++ sampler, dense) and runs the dense einsum step for either backend, measured
  faster there (see the comment in ``train``).
* ``backend="reference"``: the papers' einsum code on the dense batch, with torch autograd.

Loss: the importance-weighted squared error, meaned over batch and features, summed over
instances (as in the TMS notebook), so each instance's gradient is that of its own mean loss.
"""

from __future__ import annotations

import logging
import math
import os

import torch

from ..ops import tms_step
from ..ops.tms_sample import instance_seed_tensor
from ..utils.callbacks import loss_metrics
from ..utils.optim_state import restore_torch_optimizer, torch_optimizer_tensors
from ..utils.progress import progress_bar
from .config import ToyModelConfig
from .data import BatchSampler, DeviceBatchSampler, SparseBatch, to_instance_major
from .model import ToyModel

BACKENDS = ("fused", "reference")
OPTIMIZERS = ("adamw", "adam")
logger = logging.getLogger(__name__)


def _set_grads(model: ToyModel, grads) -> torch.Tensor:
    loss, gE, gD, gb = grads
    model.W.grad = gE
    if model.W_out is not None:
        model.W_out.grad = gD
    model.b.grad = gb
    return loss


def fused_loss_and_grad(model: ToyModel, batch: SparseBatch, dense_strategy: int = 0) -> torch.Tensor:
    """Per-instance losses ``[I]``; writes ``.grad`` of W (W_out) and b.

    Runs ``supcomp.ops.tms_step``'s table: one C++ call on CPU (``dense_strategy`` forces its
    read-in layout, see ``tms_step.cpp_loss_and_grad``; the other backends have no such choice),
    the Triton kernels on CUDA, the reference elsewhere; ``supcomp.ops.use_backend`` picks one.
    """
    W = model.W
    backend = tms_step.IMPLS.backend(W.device, W.dtype)
    args = (batch, W, model.decoder, model.b, model.importance, model.config.kind)
    if backend == "cpp":
        return _set_grads(model, tms_step.cpp_loss_and_grad(*args, dense_strategy=dense_strategy))
    return _set_grads(model, tms_step.IMPLS.get(backend).loss_and_grad(*args))


def fused_sampled_loss_and_grad(
    model: ToyModel, sampler: BatchSampler, step: int, dense_strategy: int = 0, lane_strategy: int = 0
) -> torch.Tensor:
    """``fused_loss_and_grad(model, sampler.sample(step))`` in one C++ call: the step draws its rows as it
    goes instead of reading a batch from memory. The same numbers, so the same losses and gradients, bit
    for bit. Per-instance losses ``[I]``; writes ``.grad`` of W (W_out) and b. CPU, float32 / float64 only.

    Raises:
        ValueError: the model is not float32/float64 on CPU. TypeError: the sampler's dtype differs.
    """
    grads = tms_step.cpp_sample_loss_and_grad(
        sampler,
        step,
        model.W,
        model.decoder,
        model.b,
        model.importance,
        model.config.kind,
        dense_strategy,
        lane_strategy,
    )
    return _set_grads(model, grads)


class FusedAdamW:
    """AdamW for the fused CPU trainer, run inside the C++ step (``_C.tms_sample_adamw_step``): each
    instance's weights are updated as soon as its gradients are complete, while they are still in
    cache, instead of a separate pass of ``torch.optim.AdamW`` over every tensor (1.9 ms of a 67 ms
    step at I=100, n=400, m=30). The update is ``torch.optim.AdamW``'s (decoupled weight decay,
    bias-corrected moments, ``eps`` outside the square root), equal to it to float rounding (tested).

    State: ``exp_avg`` / ``exp_avg_sq`` shaped like ``W`` (and ``W_out``) and ``b``, and the step count.
    The same operations on every element, so each instance's update is independent of the others
    (a packed sweep still equals its lone runs bit for bit)."""

    def __init__(
        self, model: ToyModel, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01
    ):
        if not (lr > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas: expected two values in [0, 1), got {betas!r}")
        if not (eps > 0) or not (weight_decay >= 0):
            raise ValueError(
                f"eps / weight_decay: expected eps > 0 and weight_decay >= 0, got {eps!r}, {weight_decay!r}"
            )
        self.lr, self.betas, self.eps, self.weight_decay = (
            float(lr),
            (float(betas[0]), float(betas[1])),
            float(eps),
            float(weight_decay),
        )
        self.steps = 0
        W = model.W.detach()
        self.exp_avg_W, self.exp_avg_sq_W = torch.zeros_like(W), torch.zeros_like(W)
        if model.W_out is None:  # tied: the decoder's moments are W's
            self.exp_avg_D, self.exp_avg_sq_D = self.exp_avg_W, self.exp_avg_sq_W
        else:
            self.exp_avg_D, self.exp_avg_sq_D = torch.zeros_like(W), torch.zeros_like(W)
        self.exp_avg_b, self.exp_avg_sq_b = torch.zeros_like(model.b.detach()), torch.zeros_like(model.b.detach())

    def state_tensors(self) -> list[torch.Tensor]:
        """[exp_avg_W, exp_avg_sq_W, exp_avg_D, exp_avg_sq_D, exp_avg_b, exp_avg_sq_b] (the D pair is W's when tied)."""
        return [self.exp_avg_W, self.exp_avg_sq_W, self.exp_avg_D, self.exp_avg_sq_D, self.exp_avg_b, self.exp_avg_sq_b]


def fused_sampled_adamw_step(
    model: ToyModel, sampler: BatchSampler, step: int, opt: FusedAdamW, dense_strategy: int = 0, lane_strategy: int = 0
) -> torch.Tensor:
    """One training step of ``train()`` on CPU in one C++ call: draw the batch of ``step``, forward, loss,
    backward, then ``opt``'s AdamW update of ``W`` (``W_out``) and ``b`` in place, instance by instance.
    The losses and gradients are those of :func:`fused_sampled_loss_and_grad`; no ``.grad`` is written.
    Per-instance losses ``[I]`` (before the update).

    Raises:
        ValueError: the model is not float32/float64 on CPU, or ``opt`` was made for another model.
        TypeError: the sampler's dtype differs from the model's.
    """
    W = model.W
    if opt.exp_avg_W.shape != W.shape or opt.exp_avg_W.dtype != W.dtype:
        raise ValueError("opt: a FusedAdamW made for another model (shape or dtype differs)")
    opt.steps += 1
    return tms_step.cpp_sample_adamw_step(
        sampler,
        step,
        W,
        model.decoder,
        model.b,
        model.importance,
        model.config.kind,
        opt.state_tensors(),
        opt.lr,
        opt.betas,
        opt.eps,
        opt.weight_decay,
        opt.steps,
        dense_strategy,
        lane_strategy,
    )


def reference_loss_and_grad(model: ToyModel, batch: SparseBatch) -> torch.Tensor:
    """The papers' einsum implementation on the dense batch; per-instance losses ``[I]``, sets ``.grad``."""
    return dense_loss_and_grad(model, batch.to_dense().to(model.W.device))


def dense_loss_and_grad(model: ToyModel, x: torch.Tensor, layout: str = "IBn") -> torch.Tensor:
    """The einsum step on a dense batch ``x [I, B, n]`` (``layout="BIn"``: ARENA's ``[B, I, n]``; never
    inferred from the sizes); per-instance losses ``[I]``, sets ``.grad``."""
    x = to_instance_major(x, layout, model.config.n_instances, model.config.n_features)
    model.zero_grad(set_to_none=True)
    target = x.abs() if model.config.kind == "abs" else x
    y = model(x)
    loss = (model.importance[:, None] * (y - target) ** 2).mean((1, 2))
    loss.sum().backward()
    return loss.detach()


def resolve_weight_decay(optimizer: str, weight_decay: float | None) -> float:
    """``weight_decay``, or the default of ``optimizer`` when None: 0.01 for ``"adamw"`` (the TMS
    notebook's: torch's AdamW default), 0 for ``"adam"`` (ARENA's: torch's Adam default).

    Raises:
        ValueError: ``optimizer`` is not one of :data:`OPTIMIZERS`, or ``weight_decay`` is negative or not finite.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer: expected one of {OPTIMIZERS} ('adamw': the notebook's, 'adam': ARENA's), got {optimizer!r}"
        )
    if weight_decay is None:
        return 0.01 if optimizer == "adamw" else 0.0
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < math.inf:
        raise ValueError(f"weight_decay: expected a finite number >= 0, got {weight_decay!r}")
    return float(weight_decay)


def make_optimizer(optimizer: str, model: ToyModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` (``"adamw"``) or ``torch.optim.Adam`` (``"adam"``) over the model's parameters."""
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    return cls(list(model.parameters()), lr=lr, weight_decay=weight_decay)


def _draws_on_device(device: torch.device) -> bool:
    """Whether train() draws batches on the model's device (a GPU) rather than with the C++ sampler."""
    return device.type != "cpu"


def train(
    config: ToyModelConfig,
    steps: int = 10_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    device=None,
    progress: bool = True,
    backend: str = "fused",
    weight_decay: float | None = None,
    log_every: int = 1,
    dtype=torch.float32,
    instance_seeds=None,
    optimizer: str = "adamw",
    callback=None,
    checkpoint=None,
    checkpoint_every: int = 0,
    resume_from=None,
) -> ToyModel:
    """Train ``config.n_instances`` toy models at once (constant ``lr``). Returns the ``ToyModel`` with
    ``loss_history`` logged every ``log_every`` steps. ``seed`` fixes both the initial weights and every batch.

    The optimizer, spelled out: ``optimizer="adamw"`` (default; the TMS notebook's): ``torch.optim.AdamW``,
    decoupled weight decay, ``weight_decay`` 0.01 when None (torch's AdamW default, which the notebook
    keeps). ``optimizer="adam"`` (ARENA's): ``torch.optim.Adam``, ``weight_decay`` 0 when None (a nonzero
    one is Adam's L2 term, added to the gradient). Betas (0.9, 0.999) and eps 1e-8 (torch's) in both.
    On CPU the fused backend runs AdamW, and Adam without decay (the same update), inside its C++ step;
    Adam with an L2 term steps ``torch.optim.Adam`` after the fused gradient.

    ``instance_seeds`` (``[I]`` ints, optional) replaces ``seed`` per instance: instance i then trains
    exactly as a lone run (``n_instances=1``, its own probabilities and importances) with
    ``seed=instance_seeds[i]`` would (same weights, same batches; every update is per instance), which
    is what lets ``supcomp.sweep`` pack grid points into one run.

    Watching and resuming (see docs/training.md):

    * ``callback(step, loss, metrics)`` is called every ``log_every`` steps and at the last step with
      plain floats (``supcomp.utils.callbacks``: TensorBoard and Weights & Biases adapters).
    * ``checkpoint``: a ``.safetensors`` file or a folder; the model with its training state (steps done,
      seed, lr, batch size, optimizer moments, ...) is saved there every ``checkpoint_every`` steps (0:
      only at the end) and at the end. ``{step}`` in the path is replaced by the steps done
      (``"run/step{step}.safetensors"`` keeps every checkpoint).
    * ``resume_from``: a checkpoint written that way (a path, or a ``ToyModel`` returned by ``train`` or
      ``ToyModel.load``, trained further in place). The run continues at the saved step up to ``steps``
      (the total), with the saved weights, optimizer state and loss history; the result equals an
      uninterrupted run bit for bit (same backend and device). ``config``, ``seed``, ``instance_seeds``,
      ``batch_size``, ``lr``, ``weight_decay``, ``optimizer`` and ``dtype`` must be those of the saved run.

    Raises:
        ValueError: a bad argument (named), or ``resume_from`` saved with other settings or more steps.
        CheckpointError: ``resume_from`` is not a readable checkpoint (CheckpointNotFoundError: none there).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    weight_decay = resolve_weight_decay(optimizer, weight_decay)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected a non-negative int, got {steps!r}")
    if not (lr > 0):
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every: expected a positive int, got {log_every!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every: expected a non-negative int, got {checkpoint_every!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable (step, loss, metrics), got {type(callback).__name__}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    hparams = dict(
        _hparams(seed, instance_seeds, config.n_instances, batch_size, lr, weight_decay, dtype), optimizer=optimizer
    )
    if resume_from is not None:
        model = _resumed_model(resume_from, config, hparams, steps).to(device)
        start = model.training_state["steps_done"]
        logger.info("resuming a tms run at step %d of %d", start, steps)
    else:
        model = ToyModel(config, seed=seed, device=device, dtype=dtype, instance_seeds=instance_seeds)
        start = 0
    logger.info(
        "tms: %d instances of %s, %d steps, batch %d, %s backend",
        config.n_instances,
        config.kind,
        steps,
        batch_size,
        backend,
    )
    fused_opt = None
    opt = None  # torch's optimizer, stepped after each step_fn; None where the step runs its own (FusedAdamW)
    if not _draws_on_device(device):
        sampler = BatchSampler(config, batch_size, seed=seed, dtype=dtype, instance_seeds=instance_seeds)
        if backend == "fused" and (optimizer == "adamw" or weight_decay == 0):
            # one C++ call: the batch drawn inside (same numbers as sampler.sample), the update too
            # (Adam without decay is AdamW with weight_decay 0)
            fused_opt = FusedAdamW(model, lr=lr, weight_decay=weight_decay)

            def step_fn(model, step):
                return fused_sampled_adamw_step(model, sampler, step, fused_opt)
        elif backend == "fused":  # Adam with an L2 term: the fused gradient, then torch's Adam
            opt = make_optimizer(optimizer, model, lr, weight_decay)

            def step_fn(model, step):
                return fused_sampled_loss_and_grad(model, sampler, step)
        else:
            opt = make_optimizer(optimizer, model, lr, weight_decay)

            def step_fn(model, step):
                return reference_loss_and_grad(model, sampler.sample(step, copy=False))
    else:
        # Off the CPU (a GPU): batches are drawn on the device, the same numbers as the C++ sampler
        # (supcomp.ops.tms_sample), and the step is the dense einsum one for both backends: on an H100 at
        # TMS sizes the dense GEMMs beat the sparse Triton ops (superpose fwd+bwd 4.2 ms against
        # 1.1 ms for the einsum at I=100, n=400, m=30, B=1024), and drawing on the host cost ~340 ms/step.
        dsampler = DeviceBatchSampler(
            config, batch_size, seed=seed, dtype=dtype, device=device, instance_seeds=instance_seeds
        )

        opt = make_optimizer(optimizer, model, lr, weight_decay)

        def step_fn(model, step):
            return dense_loss_and_grad(model, dsampler.sample(step))

    if start:
        _restore_optimizer(model, opt, fused_opt)
    history, logged = _resumed_history(model, start, steps, log_every)
    state = dict(hparams, steps=steps, backend=backend, log_every=log_every)
    bar = progress_bar(range(start, steps), desc=f"tms {config.kind} I={config.n_instances}", enabled=progress)
    for step in bar:
        loss = step_fn(model, step)
        if opt is not None:
            opt.step()
        if step % log_every == 0 or step == steps - 1:
            history.append(loss.detach().float().cpu())
            logged.append(step)
            if progress and len(history) % 50 == 0:
                bar.set_postfix(loss=f"{float(history[-1].mean()):.4g}")
            if callback is not None:
                callback(step, *loss_metrics(loss, lr))
        if checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _record(model, history, logged, state, step + 1, opt, fused_opt)
            logger.debug("checkpoint: %s", model.save(_checkpoint_path(checkpoint, step + 1)))
    _record(model, history, logged, state, max(start, steps), opt, fused_opt)
    if checkpoint is not None:
        logger.debug("checkpoint: %s", model.save(_checkpoint_path(checkpoint, max(start, steps))))
    return model


# ---- training state for checkpoints and resumed runs ---------------------------------------------------
def _hparams(seed, instance_seeds, n_instances, batch_size, lr, weight_decay, dtype) -> dict:
    """The settings a resumed run must share with the saved one (JSON)."""
    seeds = instance_seed_tensor(instance_seeds, n_instances)  # validated here, with its own error
    seeds = None if seeds is None else seeds.tolist()
    return {
        "seed": _plain(seed, int),
        "instance_seeds": seeds,
        "batch_size": _plain(batch_size, int),
        "lr": _plain(lr, float),
        "weight_decay": _plain(weight_decay, float),
        "dtype": str(dtype).replace("torch.", ""),
    }


def _plain(value, kind):
    """``value`` as a JSON number; a value that is not one is kept as its repr (and rejected, with its
    name, by the sampler or optimizer that validates it)."""
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)


def _named_params(model: ToyModel) -> dict:
    return {name: p for name, p in model.named_parameters()}


def _record(model: ToyModel, history, logged, state, steps_done, opt, fused_opt):
    """Put the run so far on ``model``: loss history, training state, optimizer state."""
    model.loss_history = torch.stack(history) if history else torch.zeros(0, model.config.n_instances)
    model.loss_steps = list(logged)
    if fused_opt is not None:
        names = ["W", "W_out", "b"] if model.W_out is not None else ["W", "b"]
        pairs = {
            "W": (fused_opt.exp_avg_W, fused_opt.exp_avg_sq_W),
            "W_out": (fused_opt.exp_avg_D, fused_opt.exp_avg_sq_D),
            "b": (fused_opt.exp_avg_b, fused_opt.exp_avg_sq_b),
        }
        tensors = {}
        for name in names:
            tensors[f"optim.exp_avg.{name}"], tensors[f"optim.exp_avg_sq.{name}"] = pairs[name]
        opt_steps = fused_opt.steps
    elif opt is not None:
        tensors, opt_steps = torch_optimizer_tensors(opt, _named_params(model))
    else:
        tensors, opt_steps = {}, 0
    model.optimizer_state = tensors
    model.training_state = dict(state, steps_done=int(steps_done), optimizer_steps=int(opt_steps))


def _checkpoint_path(checkpoint, steps_done: int) -> str:
    return os.fspath(checkpoint).replace("{step}", str(steps_done))


def _resumed_model(resume_from, config: ToyModelConfig, hparams: dict, steps: int) -> ToyModel:
    from ..utils.checkpoint import check_resumable

    model = resume_from if isinstance(resume_from, ToyModel) else ToyModel.load(resume_from)
    state = check_resumable(model, config, hparams)
    if state["steps_done"] > steps:
        raise ValueError(f"steps: the checkpoint has {state['steps_done']} steps done, more than steps={steps}")
    return model


def _restore_optimizer(model: ToyModel, opt, fused_opt):
    """Give the run's optimizer the moments and step count saved with ``model``."""
    tensors, steps = model.optimizer_state or {}, int(model.training_state.get("optimizer_steps", 0))
    if fused_opt is not None:
        dst = {
            "exp_avg.W": fused_opt.exp_avg_W,
            "exp_avg_sq.W": fused_opt.exp_avg_sq_W,
            "exp_avg.b": fused_opt.exp_avg_b,
            "exp_avg_sq.b": fused_opt.exp_avg_sq_b,
        }
        if model.W_out is not None:
            dst.update({"exp_avg.W_out": fused_opt.exp_avg_D, "exp_avg_sq.W_out": fused_opt.exp_avg_sq_D})
        for key, t in dst.items():
            src = tensors.get("optim." + key)
            if src is None or src.shape != t.shape:
                raise ValueError(
                    f"resume_from: the checkpoint's optimizer state lacks optim.{key} (or its shape differs)"
                )
            t.copy_(src)
        fused_opt.steps = steps
    elif opt is not None:
        restore_torch_optimizer(opt, _named_params(model), tensors, steps)


def _resumed_history(model: ToyModel, start: int, steps: int, log_every: int) -> tuple[list, list]:
    """The saved history up to ``start`` on this run's logging grid (every ``log_every`` steps and step
    ``steps - 1``): the saved run's entry at its own last step is dropped when it is off that grid, so a
    resumed run logs what an uninterrupted one does."""
    if not start:
        return [], []
    keep = [i for i, s in enumerate(model.loss_steps) if s < start and (s % log_every == 0 or s == steps - 1)]
    return [model.loss_history[i].float() for i in keep], [model.loss_steps[i] for i in keep]
