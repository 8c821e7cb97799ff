"""Training an SAE: the Adam loop with the unit-norm decoder, and where activations come from.

Activation sources (:func:`activation_source`): a :class:`supcomp.sae.World` (fresh batches, drawn
on the SAE's device), a stored tensor ``[T, d]`` or a file holding one (``.pt`` / ``.safetensors``),
shuffled once per epoch with the run's seed, or any callable ``step -> x [B, d]``.
:func:`collect_activations` records a module's output from a Hugging Face, TransformerLens or plain
torch model through a forward hook.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from ..utils.optim_state import restore_torch_optimizer, torch_optimizer_tensors
from ..utils.progress import progress_bar
from .models import SAE, SAEConfig
from .world import World

__all__ = ["train_sae", "activation_source", "collect_activations"]


def activation_source(data, batch_size: int, seed: int = 0, device=None) -> Callable[[int], torch.Tensor]:
    """A function ``step -> x [batch_size, d]`` over ``data``.

    Args:
        data: a ``World``; a float tensor ``[T, d]``; a path to a ``.pt`` file (a tensor) or a
            ``.safetensors`` file (its tensor named ``activations``, or its only tensor); or a
            callable ``step -> x``.
        batch_size: rows per batch (for a stored tensor, at most ``T``).
        seed: the shuffling seed of a stored tensor.
        device: where the batches go.

    Raises:
        ValueError: an empty or non-2-D tensor, ``batch_size`` larger than it, an unknown file type.
        TypeError: an unsupported ``data``.
    """
    if isinstance(data, World):
        return lambda step: data.sample_activations(batch_size, step)[0].to(device)
    if callable(data) and not isinstance(data, torch.Tensor):
        return lambda step: data(step).to(device)
    if isinstance(data, str):
        data = _load_tensor(data)
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data: expected a World, a tensor, a path or a callable, got {type(data).__name__}")
    if data.dim() != 2 or data.shape[0] == 0 or not data.is_floating_point():
        raise ValueError(f"data: expected a non-empty float tensor [T, d], got {tuple(data.shape)} {data.dtype}")
    T = data.shape[0]
    if batch_size > T:
        raise ValueError(f"batch_size: {batch_size} is larger than the {T} stored rows")
    per_epoch = T // batch_size
    cache: dict[int, torch.Tensor] = {}

    def batch(step: int) -> torch.Tensor:
        epoch, j = divmod(step, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.randperm(T, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        rows = cache[epoch][j * batch_size : (j + 1) * batch_size]
        return data[rows.to(data.device)].to(device)

    return batch


def _load_tensor(path: str) -> torch.Tensor:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        t = load_file(path)
        if "activations" in t:
            return t["activations"]
        if len(t) == 1:
            return next(iter(t.values()))
        raise ValueError(f"data: {path!r} holds {sorted(t)}; name the tensor 'activations'")
    if path.endswith(".pt"):
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"data: expected a .pt or .safetensors file, got {path!r}")


@torch.no_grad()
def collect_activations(model, hook: str, inputs, module_output: Callable | None = None) -> torch.Tensor:
    """Run ``model`` on each input and return the activations at ``hook``, flattened to ``[T, d]``.

    Args:
        model: a ``torch.nn.Module``: a Hugging Face model, a TransformerLens ``HookedTransformer``
            (``hook`` is then a hook name such as ``blocks.0.hook_resid_post``, read with
            ``run_with_cache``), or any module (``hook`` names a submodule, as ``model.get_submodule``
            takes it; its output is recorded by a forward hook).
        hook: the hook point or submodule name.
        inputs: an iterable of model inputs (tensors, or dicts of keyword arguments).
        module_output: picks the tensor out of a submodule's output (default: the output, or its
            first element when it is a tuple, as Hugging Face blocks return).

    Raises:
        ValueError: the hook point does not exist, or nothing was recorded.
    """
    chunks = []
    if hasattr(model, "run_with_cache") and hasattr(model, "hook_dict"):  # TransformerLens
        if hook not in model.hook_dict:
            raise ValueError(f"hook: {hook!r} is not a hook point of this model")
        for inp in inputs:
            _, cache = model.run_with_cache(inp, names_filter=[hook])
            chunks.append(cache[hook])
    else:
        try:
            module = model.get_submodule(hook)
        except AttributeError as e:
            raise ValueError(f"hook: {hook!r} is not a submodule of this model") from e
        pick = module_output or (lambda out: out[0] if isinstance(out, tuple) else out)
        handle = module.register_forward_hook(lambda mod, args, out: chunks.append(pick(out).detach()))
        try:
            for inp in inputs:
                model(**inp) if isinstance(inp, dict) else model(inp)
        finally:
            handle.remove()
    if not chunks:
        raise ValueError("inputs: no activations were recorded")
    return torch.cat([c.reshape(-1, c.shape[-1]) for c in chunks])


def train_sae(
    data,
    config: SAEConfig | None = None,
    sae: SAE | None = None,
    steps: int = 1000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    seed: int = 0,
    device=None,
    b_dec_init: str | None = "geometric_median",
    log_every: int = 100,
    callback: Callable | None = None,
    progress: bool = True,
    lr_warmup: int = 0,
    lr_decay_from: float | None = None,
    checkpoint: str | None = None,
    resume_from: str | None = None,
) -> SAE:
    """Train an SAE with Adam on ``data`` (see :func:`activation_source`).

    Every step: forward, backward, project ``W_dec``'s gradient off its rows, Adam step (Gao et al.'s
    ``eps = 6.25e-10``; torch's fused implementation), renormalise the decoder rows. ``b_dec`` starts at the
    geometric median (or mean) of the first batch and ``W_enc`` at the decoder's directions.

    Args:
        config / sae: a config to build a fresh SAE from, or an SAE to keep training (one of them).
        steps, batch_size, lr, seed: the run (``seed`` fixes the initial weights and the data order).
        b_dec_init: ``"geometric_median"``, ``"mean"`` or None (keep ``b_dec``).
        log_every: calls ``callback(step, loss, metrics)`` every that many steps (and at the last), with
            floats: ``metrics`` holds ``fvu``, ``aux_loss``, ``sparsity_loss``, ``l0``, ``dead_fraction``.
        lr_warmup: linear warm-up steps; lr_decay_from: the fraction of ``steps`` after which the
            rate decays linearly to 0 (None: constant).
        checkpoint: a folder the SAE is saved to at each log point and at the end, with the optimizer
            state and the run's settings.
        resume_from: a checkpoint written that way (instead of ``config`` / ``sae``): training continues
            after its last saved step and gives the uninterrupted run's result bit for bit (the batches
            are indexed by step).

    Returns:
        The trained SAE, with ``history`` (a list of ``(step, loss, metrics)``).

    Raises:
        ValueError: not exactly one of ``config``, ``sae`` and ``resume_from``; a non-positive
            ``steps``/``log_every``; ``resume_from`` saved with other settings.
    """
    if sum(v is not None for v in (config, sae, resume_from)) != 1:
        raise ValueError("config, sae, resume_from: pass exactly one of them")
    for name, v in (("steps", steps), ("log_every", log_every), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    settings = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, lr_warmup=lr_warmup)
    settings.update(lr_decay_from=lr_decay_from, log_every=log_every, b_dec_init=b_dec_init)
    start, state = 0, None
    if resume_from is not None:
        sae = SAE.load(resume_from, device=device)
        state = sae.training_state or {}
        if state.get("settings") != settings:
            raise ValueError(f"resume_from: saved with {state.get('settings')}, this run has {settings}")
        start = int(state["step"]) + 1
    elif sae is None:
        sae = SAE(config, seed=seed, device=device)
    device = sae.W_dec.device
    sae.train()
    batches = activation_source(data, batch_size, seed=seed, device=device)
    if b_dec_init is not None and start == 0:
        sae.init_b_dec(batches(0), b_dec_init)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10, fused=True)  # one fused pass per tensor
    named = dict(sae.named_parameters())
    if state is not None:
        restore_torch_optimizer(opt, named, sae.optimizer_state, int(state["optimizer_steps"]))

    def rate(step):
        r = min(1.0, (step + 1) / lr_warmup) if lr_warmup > 0 else 1.0
        if lr_decay_from is not None and step >= lr_decay_from * steps:
            r *= max(0.0, (steps - step) / max(1.0, steps * (1 - lr_decay_from)))
        return r

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    with warnings.catch_warnings():  # advancing a resumed run's schedule before its first optimizer step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start):
            sched.step()
    if start == 0:
        sae.history = []
    bar = progress_bar(range(start, steps), desc=f"sae {sae.config.kind} n={sae.config.n}", enabled=progress)
    for step in bar:
        x = batches(step)
        out = sae(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sched.step()
        sae.normalize_decoder()
        if step % log_every == 0 or step == steps - 1:
            l0 = _l0(out)
            metrics = {
                "fvu": float(out.fvu),
                "aux_loss": float(out.aux_loss),
                "sparsity_loss": float(out.sparsity_loss),
                "l0": l0,
                "dead_fraction": float(sae.dead_mask.float().mean()),
            }
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss: not finite at step {step} ({loss})")
            sae.history.append((step, loss, metrics))
            if callback is not None:
                callback(step, loss, metrics)
            if checkpoint is not None:
                tensors, opt_steps = torch_optimizer_tensors(opt, named)
                training = {"step": step, "optimizer_steps": opt_steps, "settings": settings}
                sae.save(checkpoint, training=training, optimizer=tensors)
            bar.set_postfix(fvu=f"{metrics['fvu']:.3g}", l0=f"{l0:.1f}")
    sae.eval()
    return sae


def _l0(out) -> float:
    if out.indices is not None:
        return float(((out.indices >= 0) & (out.values > 0)).sum(1).float().mean())
    return float((out.dense > 0).sum(1).float().mean())
