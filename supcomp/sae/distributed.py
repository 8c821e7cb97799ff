"""Data-parallel SAE training with ``torch.distributed`` (gloo on CPU, nccl on GPU), started by ``torchrun``.

Every rank holds the whole SAE and draws only its shard of the global batch (:func:`shard_source`); the
global batch of a step is the concatenation of the shards in rank order (:func:`global_batch`). The
losses are those of :meth:`supcomp.sae.SAE.forward` on the global batch, taken apart into per-rank sums:

* the normalised MSE divides by the global batch's total variance (from all-reduced sums), so the
  per-rank losses add up to the global FVU, and likewise the AuxK loss with the global residual's
  variance and the L1 / L0 penalties divided by the global batch size;
* the gradients are summed over ranks (one all-reduce of a flat buffer), so every rank holds the
  gradient of the global-batch loss;
* dead-latent tracking all-reduces the "fired" mask (max), so all ranks agree on the dead set;
* ``b_dec`` starts at the geometric median (or mean) of the whole first global batch (all-gathered once).

All ranks start from the same seeded weights (and rank 0's are broadcast to be sure), apply the same
summed gradient, the same projected Adam step and the same decoder renormalisation, so their SAEs stay
identical. The result equals single-process :func:`~supcomp.sae.train_sae` on the same global batches up
to the order of floating-point sums (tested in float64 against a 1e-9 tolerance). BatchTopK's batch rule
is global over the batch and is not sharded here (ValueError).

Launch: ``torchrun --nproc_per_node 2 -m supcomp.cli sae train CONFIG.toml`` (the CLI calls
:func:`train_sae_distributed` when ``WORLD_SIZE > 1``), or call it from your own script under torchrun.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import torch.distributed as dist

from ..ops import sparse_encode
from ..utils.progress import progress_bar
from .models import SAE, SAEConfig, SAEOutput, _JumpHeaviside, _topk_code
from .train import activation_source
from .world import World

__all__ = ["shard_source", "global_batch", "sharded_forward", "train_sae_distributed", "init_distributed"]


def init_distributed(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) if not yet
    joined; returns ``(rank, world_size, device)``. ``backend`` None: nccl when CUDA is available (device
    ``cuda:LOCAL_RANK``), else gloo (CPU). Outside torchrun (no ``MASTER_ADDR``) and without a group:
    ``(0, 1, cpu)``, one process without collectives."""
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:  # not under torchrun and no group: one process, no collectives
            return 0, 1, torch.device("cpu")
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    backend = dist.get_backend()
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def shard_source(data, batch_size: int, rank: int, world_size: int, seed: int = 0, device=None, dtype=None):
    """``step -> x [batch_size // world_size, d]``: rank ``rank``'s shard of the global batch of ``step``.

    Args:
        data: a ``World`` (the shard is drawn alone: batch ``step * world_size + rank`` of size
            ``batch_size // world_size``; nothing else is drawn); a stored tensor, file or callable as
            :func:`~supcomp.sae.activation_source` takes it (the global batch is formed and the shard's
            rows taken, in order).
        batch_size: the global batch size, a multiple of ``world_size``.
        dtype: cast the shard (None: keep).

    Raises:
        ValueError: ``batch_size`` is not a positive multiple of ``world_size``, or ``rank`` out of range.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if batch_size % world_size:
        raise ValueError(f"batch_size: {batch_size} is not a multiple of the world size {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < {world_size}, got {rank}")
    b = batch_size // world_size
    if isinstance(data, World):
        return lambda step: data.sample_activations(b, step * world_size + rank)[0].to(device=device, dtype=dtype)
    whole = activation_source(data, batch_size, seed=seed)
    return lambda step: whole(step)[rank * b : (rank + 1) * b].to(device=device, dtype=dtype)


def global_batch(data, batch_size: int, world_size: int, seed: int = 0, device=None, dtype=None):
    """``step -> x [batch_size, d]``: the global batch that ``world_size`` ranks of :func:`shard_source`
    train on together, for single-process training and checks."""
    shards = [shard_source(data, batch_size, r, world_size, seed, device, dtype) for r in range(world_size)]
    return lambda step: torch.cat([s(step) for s in shards])


def _sum(t: torch.Tensor, op=None) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def _total_variance(x: torch.Tensor, n_global: int) -> torch.Tensor:
    """``sum over the global batch of ||x - mean||^2`` from this rank's rows (no gradient)."""
    with torch.no_grad():
        mean = _sum(x.sum(0)) / n_global
        return _sum((x - mean).pow(2).sum()).clamp(min=1e-12)


def sharded_forward(sae: SAE, x: torch.Tensor, n_global: int) -> tuple[SAEOutput, torch.Tensor]:
    """:meth:`SAE.forward` for one rank's rows ``x [b, d]`` of a global batch of ``n_global`` rows, and the
    global batch's mean L0 (a scalar tensor).

    In the :class:`SAEOutput`, ``loss`` is this rank's part of the global loss (the parts add up to the global-batch loss of
    :meth:`SAE.forward`); ``fvu``, ``aux_loss``, ``sparsity_loss`` are the global values. Without a
    process group (or with one rank) it is :meth:`SAE.forward` with ``n_global = B``.

    Raises:
        ValueError: a batchtopk SAE, or ``x`` not ``[b, d]``.
    """
    c = sae.config
    if c.kind == "batchtopk":
        raise ValueError("sae: batchtopk selects over the whole batch and is not trained sharded")
    if x.dim() != 2 or x.shape[1] != c.d:
        raise ValueError(f"x: expected [B, d={c.d}], got {tuple(x.shape)}")
    code = sae.encode(x)
    recon = sae.decode(code)
    err = x - recon
    fvu = err.pow(2).sum() / _total_variance(x, n_global)
    zero = x.new_zeros(())
    aux, sparsity = zero, zero
    sparse = isinstance(code, tuple)
    if sparse:
        fired = torch.zeros(c.n, dtype=torch.bool, device=x.device)
        fired[code[0][code[0] >= 0]] = True
    else:
        fired = (code > 0).any(0)
        if c.kind == "relu":
            sparsity = c.l1_coef * (code * sae.W_dec.norm(dim=1)).sum() / n_global
        else:
            gate = _JumpHeaviside.apply(sae.pre_activations(x), sae.log_threshold.exp(), c.jump_bandwidth)
            sparsity = c.l0_coef * gate.sum() / n_global
    if sae.training:
        with torch.no_grad():
            fired = _sum(fired.to(torch.int32), dist.ReduceOp.MAX).bool()
            sae.tokens_since_fired += n_global
            sae.tokens_since_fired[fired] = 0
        if sparse and c.k_aux > 0 and c.aux_coef > 0:
            aux = _aux_part(sae, x, err.detach(), n_global)
    loss = fvu + c.aux_coef * aux + sparsity
    with torch.no_grad():
        active = ((code[0] >= 0) & (code[1] > 0)).sum() if sparse else (code > 0).sum()
        parts = torch.stack([fvu.detach(), aux.detach(), sparsity.detach(), active.to(fvu.dtype) / n_global])
        totals = _sum(parts)
    idx, val = code if sparse else (None, None)
    return SAEOutput(recon, idx, val, None if sparse else code, loss, totals[0], totals[1], totals[2]), totals[3]


def _aux_part(sae: SAE, x, residual, n_global):
    dead = sae.dead_mask.nonzero().squeeze(1)
    if dead.numel() == 0:
        return x.new_zeros(())
    k = min(sae.config.k_aux, dead.numel())
    idx, val = _topk_code(x - sae.b_dec, sae.W_enc[dead], sae.b_enc[dead], k)
    idx = torch.where(idx >= 0, dead[idx.clamp(min=0)], -1)
    rhat = sparse_encode(idx, val, sae.W_dec)
    return (residual - rhat).pow(2).sum() / _total_variance(residual, n_global)


def _all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def train_sae_distributed(
    data,
    config: SAEConfig,
    steps: int = 1000,
    batch_size: int = 4096,
    lr: float = 1e-3,
    seed: int = 0,
    dtype=torch.float32,
    b_dec_init: str | None = "geometric_median",
    log_every: int = 100,
    callback: Callable | None = None,
    progress: bool = True,
    checkpoint: str | None = None,
    backend: str | None = None,
) -> SAE:
    """Train an SAE data-parallel over the process group (joined by :func:`init_distributed` if needed).

    The same arguments as :func:`~supcomp.sae.train_sae` with a constant learning rate; ``batch_size`` is
    the global batch (each rank draws ``batch_size // world_size`` rows, see :func:`shard_source`).
    ``callback`` and ``checkpoint`` act on rank 0 only. Every rank returns the same trained SAE (eval mode).

    Raises:
        ValueError: a batchtopk config, a non-positive ``steps``/``log_every``, a ``batch_size`` that
            is not a multiple of the world size.
        FloatingPointError: a non-finite loss.
    """
    if config.kind == "batchtopk":
        raise ValueError("config: batchtopk selects over the whole batch and is not trained sharded")
    for name, v in (("steps", steps), ("log_every", log_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    rank, world_size, device = init_distributed(backend)
    shard = shard_source(data, batch_size, rank, world_size, seed=seed, device=device, dtype=dtype)
    sae = SAE(config, seed=seed, device=device, dtype=dtype)
    if world_size > 1:
        for t in list(sae.parameters()) + list(sae.buffers()):
            dist.broadcast(t.data, 0)
    sae.train()
    if b_dec_init is not None:
        sae.init_b_dec(_all_gather_rows(shard(0)), b_dec_init)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10, fused=True)  # as train_sae
    params = list(sae.parameters())
    sae.history = []
    bar = progress_bar(range(steps), desc=f"sae ddp x{world_size}", enabled=progress and rank == 0)
    for step in bar:
        out, l0 = sharded_forward(sae, shard(step), batch_size)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if world_size > 1:  # one all-reduce: the sum of the ranks' parts is the global-batch gradient
            flat = torch.cat(
                [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params]
            )
            dist.all_reduce(flat)
            offset = 0
            for p in params:
                p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
                offset += p.numel()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
        if step % log_every == 0 or step == steps - 1:
            loss = float(out.fvu + config.aux_coef * out.aux_loss + out.sparsity_loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss: not finite at step {step} ({loss})")
            metrics = {
                "fvu": float(out.fvu),
                "aux_loss": float(out.aux_loss),
                "sparsity_loss": float(out.sparsity_loss),
                "l0": float(l0),
                "dead_fraction": float(sae.dead_mask.float().mean()),
            }
            sae.history.append((step, loss, metrics))
            if rank == 0:
                if callback is not None:
                    callback(step, loss, metrics)
                if checkpoint is not None:
                    sae.save(checkpoint)
                bar.set_postfix(fvu=f"{metrics['fvu']:.3g}")
    sae.eval()
    return sae
