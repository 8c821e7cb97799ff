"""Training a batch of CC models: the fused trainer (supcomp ops) and the plain einsum reference.

Both trainers draw identical batches (the TMS ``BatchSampler``, C++, counter-based: keyed by
(seed, step, instance, row), values uniform on [-1, 1)), start from identical weights
(``CCModel(config, seed)``) and step torch's AdamW; they differ only in how the loss is computed:

* ``backend="fused"``: the folded form (``CCModel.folded``): ``A = W_E W_in`` and ``B = W_E W_out``
  (two [n, d_embed] x [d_embed, m] batched matmuls per step, dense BLAS), the sparse read-in
  ``pre = sparse_encode(x, A)`` and its backward (supcomp op: C++ on CPU, Triton on CUDA; the backward
  is a scatter into the rows of A that occur), ``relu``, the read-out ``relu(pre) Bᵀ`` (batched matmul)
  and the label mixing ``x Sᵀ = sparse_encode(x, Sᵀ)``, with hand-written gradients (no autograd
  graph; see ``fused_loss_and_grad``). Per sample this costs ~6·n·m FLOPs instead of the
  ~12·d_embed·(n + m) of the literal residual stream.
* ``backend="reference"``: ``CCModel.forward`` on the dense batch (the APD code's einsums through the
  d_embed-wide residual stream), with torch autograd. Kept for tests and benchmarks.

Loss: squared error meaned over batch and features, per instance (the APD "readoff" MSE), summed over
instances for the backward, so each instance's gradient is that of its own mean loss.
Schedule: AdamW (weight decay 0.01), lr ``lr * (1 + cos(π t / steps)) / 2`` at step t (cosine to 0,
torch's ``CosineAnnealingLR``), as in both papers' code.
"""

from __future__ import annotations

import logging
import math
import os

import torch

from ..ops import sparse_encode
from ..ops.sparse_encode import sparse_encode_backward_op
from ..tms.config import ToyModelConfig
from ..tms.data import BatchSampler, SparseBatch
from ..utils.callbacks import loss_metrics
from ..utils.optim_state import restore_torch_optimizer, torch_optimizer_tensors
from ..utils.progress import progress_bar
from .config import CCConfig
from .model import CCModel

BACKENDS = ("fused", "reference")
logger = logging.getLogger(__name__)


def make_sampler(config: CCConfig, batch_size: int, seed: int = 0, dtype=torch.float32) -> BatchSampler:
    """The batches of a CC run: the TMS sampler with ``kind="abs"`` (values uniform on [-1, 1)),
    independent features with each instance's probability."""
    tms_cfg = ToyModelConfig(
        config.n_features,
        1,
        n_instances=config.n_instances,
        feature_probability=torch.tensor(config.probabilities())[:, None],
        kind="abs",
    )
    return BatchSampler(tms_cfg, batch_size, seed=seed, dtype=dtype)


def fused_loss_and_grad(model: CCModel, batch: SparseBatch) -> torch.Tensor:
    """Per-instance losses ``[I]`` of one batch; sets ``.grad`` of W_in and W_out.

    The folded form with hand-written gradients (no autograd graph; a few passes over the ``[I, B, n]``
    error instead of autograd's many):
    ``pre = sparse_encode(x, A)``, ``h = relu(pre)``, ``err = h Bᵀ - x Sᵀ - relu(x)`` (baddbmm on top of
    the sparse ``sparse_encode(x, Sᵀ)``, then a scatter of ``-relu(x)`` into the nnz entries),
    ``loss = Σ err² / (B n)``; ``g = 2 err / (B n)``: ``dB = gᵀ h``, ``dA = sparse_encode_backward(
    (g B) ⊙ [pre > 0])`` (a scatter into the rows of A that occur); residual model:
    ``dW_in = W_Eᵀ dA``, ``dW_out = W_Eᵀ dB``."""
    dev = model.W_in.device
    # At least one slot: an all-empty batch would give k = 0, which the ops' reshape cannot take.
    k = max(1, int(batch.counts().max())) if batch.indices.numel() else 1
    idx, val = (t.to(dev) for t in batch.to_padded(k))
    Bsz, n = idx.shape[1], model.config.n_features
    with torch.no_grad():
        A, B, S = model.folded()
        pre = sparse_encode(idx, val, A)  # [I, B, m]
        h = torch.relu(pre)
        err = torch.baddbmm(
            sparse_encode(idx, val, S.transpose(1, 2).contiguous()), h, B.transpose(1, 2), beta=-1.0
        )  # h Bᵀ - x Sᵀ   [I, B, n]
        on = idx >= 0
        err.scatter_add_(
            -1, idx.clamp(min=0), torch.where(on, -torch.relu(val), torch.zeros((), dtype=val.dtype, device=dev))
        )
        scale = 1.0 / (Bsz * n)
        loss = torch.linalg.vector_norm(err, dim=(1, 2)).double().square() * scale
        g = err.mul_(2.0 * scale)  # dL/dy, in place
        gB = torch.bmm(g.transpose(1, 2), h)  # [I, n, m]
        gpre = torch.bmm(g, B).mul_(pre > 0)  # [I, B, m]
        _, gA = sparse_encode_backward_op(gpre, idx, val, A.contiguous(), False, True)
        if model.residual:
            WEt = model.W_E.transpose(1, 2)
            gA, gB = torch.bmm(WEt, gA), torch.bmm(WEt, gB)
    model.W_in.grad = gA
    model.W_out.grad = gB
    return loss.to(model.W_in.dtype)


def reference_loss_and_grad(model: CCModel, batch: SparseBatch) -> torch.Tensor:
    """The literal architecture (plain einsum) on the dense batch; per-instance losses ``[I]``, sets ``.grad``."""
    model.zero_grad(set_to_none=True)
    x = batch.to_dense().to(model.W_in.device)
    loss = ((model(x) - model.labels(x)) ** 2).mean((1, 2))
    loss.sum().backward()
    return loss.detach()


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate at ``step`` of ``steps``: cosine from ``lr`` to 0."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))


def train(
    config: CCConfig,
    steps: int = 10_000,
    batch_size: int = 2048,
    seed: int = 0,
    progress: bool = True,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    backend: str = "fused",
    device=None,
    dtype=torch.float32,
    log_every: int = 1,
    threads: int | None = None,
    callback=None,
    checkpoint=None,
    checkpoint_every: int = 0,
    resume_from=None,
) -> CCModel:
    """Train ``config.n_instances`` CC models at once (AdamW, cosine lr from 3e-3, weight decay 0.01, batch
    2048: the APD paper's settings; 10,000 steps as in the Bhagat et al. code).

    Args:
        config: the models (see ``CCConfig``).
        steps, batch_size: training steps and samples per step and instance.
        seed: fixes each instance's fixed matrices, initial weights and batches (see ``CCConfig``).
        progress: a tqdm bar.
        backend: ``"fused"`` (supcomp ops, folded form) or ``"reference"`` (plain einsum); same result up to
            float rounding.
        threads: torch / OpenMP threads for this call (None: leave ``torch.get_num_threads()``). The
            default-size step is ~1 ms of small kernels, so on a shared 2-core machine one thread is often
            faster (a busy second core stalls every parallel region; measured 10x slower under load 4).

        callback: ``callback(step, loss, metrics)`` every ``log_every`` steps and at the last step, plain
            floats (``supcomp.utils.callbacks``: TensorBoard and Weights & Biases adapters).
        checkpoint, checkpoint_every: save the model with its training state (steps done, lr, batch size,
            seed, optimizer moments) to ``checkpoint`` (a ``.safetensors`` file or a folder; ``{step}`` in
            it is replaced by the steps done) every ``checkpoint_every`` steps (0: only at the end) and at
            the end.
        resume_from: a checkpoint written that way (a path, or a ``CCModel`` from ``train`` /
            ``CCModel.load``, trained further in place): the run continues at the saved step up to
            ``steps`` and equals an uninterrupted run bit for bit (same backend, device and threads).
            ``config``, ``seed``, ``steps`` (the cosine schedule's length), ``batch_size``, ``lr``,
            ``weight_decay`` and ``dtype`` must be the saved run's.

    Returns:
        the trained ``CCModel``; ``loss_history [n_logged, I]`` holds the training-batch losses every
        ``log_every`` steps (and the last step).

    Raises:
        TypeError / ValueError: a bad argument (named), or ``resume_from`` saved with other settings.
        CheckpointError: ``resume_from`` is not a readable checkpoint (CheckpointNotFoundError: none there).
    """
    if not isinstance(config, CCConfig):
        raise TypeError(f"config: expected a CCConfig, got {type(config).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    _check_int("steps", steps, 0)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    _check_int("log_every", log_every, 1)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive finite learning rate, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a finite number >= 0, got {weight_decay!r}")
    if threads is not None:
        _check_int("threads", threads, 1)
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return train(
                config,
                steps,
                batch_size,
                seed,
                progress,
                lr,
                weight_decay,
                backend,
                device,
                dtype,
                log_every,
                None,
                callback,
                checkpoint,
                checkpoint_every,
                resume_from,
            )
        finally:
            torch.set_num_threads(old)
    _check_int("checkpoint_every", checkpoint_every, 0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable (step, loss, metrics), got {type(callback).__name__}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    state = {
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "dtype": str(dtype).replace("torch.", ""),
    }
    if resume_from is not None:
        model = _resumed_model(resume_from, config, state).to(device)
        start = model.training_state["steps_done"]
        logger.info("resuming a cc run at step %d of %d", start, steps)
    else:
        model = CCModel(config, seed=seed, device=device, dtype=dtype)
        start = 0
    logger.info(
        "cc: %d instances of %s, %d steps, batch %d, %s backend",
        config.n_instances,
        config.label(),
        steps,
        batch_size,
        backend,
    )
    sampler = make_sampler(config, batch_size, seed=seed, dtype=dtype)
    opt = torch.optim.AdamW([model.W_in, model.W_out], lr=lr, weight_decay=weight_decay)
    params = {"W_in": model.W_in, "W_out": model.W_out}
    if start:
        restore_torch_optimizer(opt, params, model.optimizer_state or {}, model.training_state["optimizer_steps"])
    state.update(backend=backend, log_every=log_every)
    step_fn = fused_loss_and_grad if backend == "fused" else reference_loss_and_grad
    # The history is preallocated: appending one small tensor per step pins glibc heap pages between the
    # step's large temporaries, and the RSS then grows by ~0.5 MB per step (measured: 7 GB after 10k steps).
    logged = [s for s in range(steps) if s % log_every == 0 or s == steps - 1]
    history = torch.zeros(len(logged), config.n_instances)
    row = _resumed_history(model, logged, history, start)
    bar = progress_bar(range(start, steps), desc=f"cc {config.label()} I={config.n_instances}", enabled=progress)
    for step in bar:
        step_lr = cosine_lr(lr, step, steps)
        for group in opt.param_groups:
            group["lr"] = step_lr
        loss = step_fn(model, sampler.sample(step, copy=False))
        opt.step()
        if row < len(logged) and logged[row] == step:
            history[row].copy_(loss)
            row += 1
            if progress and row % 50 == 0:
                bar.set_postfix(loss=f"{float(history[row - 1].mean()):.4g}")
            if callback is not None:
                callback(step, *loss_metrics(loss, step_lr))
        if checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _record(model, history[:row], logged[:row], state, step + 1, opt, params)
            logger.debug("checkpoint: %s", model.save(_checkpoint_path(checkpoint, step + 1)))
    _record(model, history, logged, state, max(start, steps), opt, params)
    if checkpoint is not None:
        logger.debug("checkpoint: %s", model.save(_checkpoint_path(checkpoint, max(start, steps))))
    return model


# ---- training state for checkpoints and resumed runs ---------------------------------------------------
def _record(model: CCModel, history, logged, state, steps_done, opt, params):
    """Put the run so far on ``model``: loss history, training state, optimizer state."""
    model.loss_history = history
    model.loss_steps = list(logged)
    model.optimizer_state, opt_steps = torch_optimizer_tensors(opt, params)
    model.training_state = dict(state, steps_done=int(steps_done), optimizer_steps=int(opt_steps))


def _checkpoint_path(checkpoint, steps_done: int) -> str:
    return os.fspath(checkpoint).replace("{step}", str(steps_done))


def _resumed_model(resume_from, config: CCConfig, hparams: dict) -> CCModel:
    from ..utils.checkpoint import check_resumable

    model = resume_from if isinstance(resume_from, CCModel) else CCModel.load(resume_from)
    check_resumable(model, config, hparams)
    return model


def _resumed_history(model: CCModel, logged: list, history: torch.Tensor, start: int) -> int:
    """Copy the saved losses of the steps in ``logged`` before ``start`` into ``history``; the next row."""
    if not start:
        return 0
    saved = {s: i for i, s in enumerate(model.loss_steps)}
    row = 0
    while row < len(logged) and logged[row] < start:
        if logged[row] not in saved:
            raise ValueError(f"resume_from: the checkpoint has no logged loss at step {logged[row]} (other log_every?)")
        history[row].copy_(model.loss_history[saved[logged[row]]])
        row += 1
    return row
