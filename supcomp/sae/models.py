"""Sparse autoencoders on supcomp's fused kernels: TopK, BatchTopK, ReLU/L1 and JumpReLU.

All four share the layout ``W_enc [n, d]``, ``b_enc [n]``, ``W_dec [n, d]`` (one unit-norm decoder
direction per latent, a row), ``b_dec [d]``, and the pre-activation ``(x - b_dec) @ W_enc.T + b_enc``.

* ``topk`` (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the encoder is
  ``supcomp.ops.relu_readout_topk`` (GEMM + bias + ReLU + top-k fused, never holding ``[B, n]``), the
  decoder ``supcomp.ops.sparse_encode``; AuxK reconstructs the residual from the top ``k_aux`` dead latents.
* ``batchtopk`` (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"): keeps the ``B * k`` largest
  activations of the whole batch, chosen among each sample's top ``batch_cap * k`` (exact unless one
  sample holds more than that many of the batch's winners); in eval mode a learned threshold (the
  running mean of the smallest kept activation) replaces the batch rule.
* ``relu`` (Bricken et al. 2023, "Towards Monosemanticity"): ``relu(pre)``, L1 penalty; dense.
* ``jumprelu`` (Rajamanoharan et al. 2024, "Jumping Ahead"): ``pre * H(pre - theta)``, L0 penalty with
  straight-through rectangle-kernel gradients for ``theta``; dense.

Sparse codes are ``(indices [B, k], values [B, k])`` (``-1`` marks an empty slot) everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..ops import relu_readout_topk, sparse_encode

__all__ = ["SAEConfig", "SAE", "SAEOutput", "KINDS", "CHECKPOINT_KIND", "geometric_median"]

CHECKPOINT_KIND = "sae"
"""The ``kind`` of an SAE's checkpoint file (:func:`supcomp.utils.checkpoint.save_checkpoint`)."""

KINDS = ("topk", "batchtopk", "relu", "jumprelu")


class SAEOutput(NamedTuple):
    """An SAE forward pass: ``recon [B, d]``; the code as ``indices [B, k]`` int64 and ``values [B, k]`` (sparse
    kinds) or ``dense [B, n]`` (relu, jumprelu; the other is None); float scalar losses ``loss`` (the total),
    ``fvu``, ``aux_loss``, ``sparsity_loss``. Tensors are in the SAE's float dtype except ``indices``."""

    recon: torch.Tensor
    indices: torch.Tensor | None
    values: torch.Tensor | None
    dense: torch.Tensor | None
    loss: torch.Tensor
    fvu: torch.Tensor
    aux_loss: torch.Tensor
    sparsity_loss: torch.Tensor


def _topk_code(h, W_enc, b_enc, k):
    """The one call of the fused encoder: ``(indices [B, k] int64, values [B, k])`` of ``relu(h @ W_enc.T + b_enc)``."""
    code = relu_readout_topk(h, W_enc, b_enc, k)
    return code.indices, code.values


@dataclass
class SAEConfig:
    """An SAE's shape and training constants.

    ``d`` input width, ``n`` latents, ``kind`` one of :data:`KINDS`, ``k`` active latents (topk,
    batchtopk), ``k_aux`` AuxK latents (0: off) with weight ``aux_coef`` (Gao et al.: 1/32),
    ``dead_tokens`` tokens without firing after which a latent counts as dead, ``l1_coef`` (relu),
    ``l0_coef``, ``jump_bandwidth`` and ``jump_init`` (jumprelu), ``batch_cap`` (batchtopk candidates per
    sample, in units of k).
    """

    d: int
    n: int
    kind: str = "topk"
    k: int = 32
    k_aux: int = 256
    aux_coef: float = 1 / 32
    dead_tokens: int = 1_000_000
    l1_coef: float = 1e-3
    l0_coef: float = 1e-3
    jump_bandwidth: float = 1e-3
    jump_init: float = 1e-3
    batch_cap: int = 4

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        for name in ("d", "n", "k", "batch_cap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.kind in ("topk", "batchtopk") and self.k > self.n:
            raise ValueError(f"k: expected k <= n = {self.n}, got {self.k}")
        if self.k_aux < 0:
            raise ValueError(f"k_aux: expected >= 0, got {self.k_aux}")


class _JumpHeaviside(torch.autograd.Function):
    """H(z - theta) with the straight-through rectangle-kernel gradient for theta (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        near = ((z - theta).abs() < ctx.eps / 2).to(z.dtype)
        return None, (-g * near / ctx.eps).sum(0), None


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta): gradient to z where active, rectangle-kernel gradient to theta."""

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        z, theta = ctx.saved_tensors
        near = ((z - theta).abs() < ctx.eps / 2).to(z.dtype)
        return g * (z > theta).to(z.dtype), (-g * theta * near / ctx.eps).sum(0), None


def geometric_median(x: torch.Tensor, iters: int = 50, tol: float = 1e-6) -> torch.Tensor:
    """The geometric median of the rows of ``x [B, d]`` by Weiszfeld's iteration (float64 inside).

    Raises:
        ValueError: ``x`` is not a non-empty 2-D tensor.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x: expected [B >= 1, d], got {tuple(x.shape)}")
    x64 = x.detach().double()
    m = x64.mean(0)
    for _ in range(iters):
        w = 1.0 / (x64 - m).norm(dim=1).clamp(min=1e-12)
        new = (w[:, None] * x64).sum(0) / w.sum()
        if float((new - m).norm()) <= tol * max(1.0, float(m.norm())):
            m = new
            break
        m = new
    return m.to(x.dtype)


class SAE(nn.Module):
    """A sparse autoencoder (see the module docstring for the kinds).

    Args:
        config: an :class:`SAEConfig`.
        seed: seed of the initial weights: ``W_dec`` rows random unit vectors, ``W_enc = W_dec`` (the
            decoder's transpose in the usual column layout), ``b_enc = 0``, ``b_dec = 0`` (see
            :meth:`init_b_dec`).
        device, dtype: of the parameters.

    Buffers: ``tokens_since_fired [n]`` (dead-latent tracking, updated by :meth:`forward` in training
    mode), ``threshold`` (batchtopk's inference threshold), and for jumprelu ``log_threshold`` is a
    parameter.
    """

    def __init__(self, config: SAEConfig, seed: int = 0, device=None, dtype=torch.float32):
        super().__init__()
        self.config = c = config
        g = torch.Generator().manual_seed(int(seed))
        W = torch.randn(c.n, c.d, generator=g, dtype=torch.float64)
        W = W / W.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W.to(dtype).to(device))
        self.W_enc = nn.Parameter(W.clone().to(dtype).to(device))
        self.b_enc = nn.Parameter(torch.zeros(c.n, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(c.d, dtype=dtype, device=device))
        if c.kind == "jumprelu":
            self.log_threshold = nn.Parameter(torch.full((c.n,), math.log(c.jump_init), dtype=dtype, device=device))
        self.register_buffer("tokens_since_fired", torch.zeros(c.n, dtype=torch.int64, device=device))
        self.register_buffer("threshold", torch.zeros((), dtype=dtype, device=device))

    # ---- initialisation and the unit-norm decoder -------------------------------------------------------
    @torch.no_grad()
    def init_b_dec(self, x: torch.Tensor, method: str = "geometric_median"):
        """Set ``b_dec`` from a sample ``x [B, d]`` (float, any dtype; cast to ``b_dec``'s): its geometric median
        (Gao et al.) or mean.

        Raises:
            ValueError: unknown ``method``.
        """
        if method == "geometric_median":
            self.b_dec.copy_(geometric_median(x))
        elif method == "mean":
            self.b_dec.copy_(x.mean(0))
        else:
            raise ValueError(f"method: expected 'geometric_median' or 'mean', got {method!r}")

    @torch.no_grad()
    def project_decoder_grad(self):
        """Remove from ``W_dec.grad`` each row's component along that row (Gao et al.'s projected gradient)."""
        if self.W_dec.grad is not None:
            W, G = self.W_dec, self.W_dec.grad
            # G -= (G . W) W, in place; the row dots as a batched GEMM (3x vecdot's mul-then-sum on CPU)
            dots = torch.bmm(G.unsqueeze(1), W.unsqueeze(2)).view(-1, 1)
            G.addcmul_(dots, W, value=-1.0)

    @torch.no_grad()
    def normalize_decoder(self):
        """Rescale every ``W_dec`` row to unit norm."""
        self.W_dec.div_(torch.linalg.vector_norm(self.W_dec, dim=1, keepdim=True).clamp_(min=1e-12))

    @property
    def dead_mask(self) -> torch.Tensor:
        """``[n]`` bool: latents that have not fired for ``config.dead_tokens`` tokens."""
        return self.tokens_since_fired >= self.config.dead_tokens

    # ---- encode / decode ----------------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``(x - b_dec) @ W_enc.T + b_enc``, ``[B, n]`` in the SAE's float dtype, from ``x [B, d]`` (the
        dense kinds, and analysis)."""
        return (x - self.b_dec) @ self.W_enc.T + self.b_enc

    def encode(self, x: torch.Tensor):
        """The code of ``x [B, d]`` (the SAE's float dtype): ``(indices [B, k] int64, values [B, k])`` for
        topk/batchtopk (``-1`` / ``0`` in empty slots), a dense float ``[B, n]`` otherwise."""
        c = self.config
        h = x - self.b_dec
        if c.kind == "topk":
            return _topk_code(h, self.W_enc, self.b_enc, c.k)
        if c.kind == "batchtopk":
            return self._batchtopk(h)
        pre = h @ self.W_enc.T + self.b_enc
        if c.kind == "relu":
            return torch.relu(pre)
        return _JumpReLU.apply(pre, self.log_threshold.exp(), c.jump_bandwidth)

    def _batchtopk(self, h):
        c = self.config
        idx, val = _topk_code(h, self.W_enc, self.b_enc, min(c.n, c.batch_cap * c.k))
        if self.training:
            m = min(val.numel(), h.shape[0] * c.k)
            cut = torch.topk(val.detach().flatten(), m, sorted=True).values[-1] if m > 0 else val.new_zeros(())
            keep = val >= cut
            if m > 0:
                with torch.no_grad():  # the inference threshold: running mean of the smallest kept value
                    self.threshold.mul_(0.99).add_(0.01 * cut.clamp(min=0))
        else:
            keep = val > self.threshold
        keep = keep & (idx >= 0)
        return torch.where(keep, idx, -1), torch.where(keep, val, torch.zeros_like(val))

    def decode(self, code) -> torch.Tensor:
        """``x_hat [B, d]`` from a sparse ``(indices, values)`` or a dense ``[B, n]`` code."""
        if isinstance(code, tuple):
            indices, values = code
            return sparse_encode(indices, values, self.W_dec) + self.b_dec
        return code @ self.W_dec + self.b_dec

    # ---- the training forward pass ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> SAEOutput:
        """Encode, decode and the losses of ``x [B, d]``; in training mode also updates dead-latent tracking.

        ``loss = fvu + aux_coef * aux_loss + sparsity_loss``, where ``fvu`` is the squared error over the
        batch's total variance (Gao et al.'s normalised MSE), ``aux_loss`` the AuxK normalised error of
        the residual (topk and batchtopk with dead latents), ``sparsity_loss`` the L1 (relu) or L0
        (jumprelu) penalty. ``x`` is float in the SAE's dtype; the losses are float scalars.

        Raises:
            ValueError: ``x`` is not ``[B, d]``.
        """
        c = self.config
        if x.dim() != 2 or x.shape[1] != c.d:
            raise ValueError(f"x: expected [B, d={c.d}], got {tuple(x.shape)}")
        code = self.encode(x)
        recon = self.decode(code)
        err = x - recon
        var = (x - x.mean(0)).pow(2).sum().clamp(min=1e-12)
        fvu = err.pow(2).sum() / var
        zero = x.new_zeros(())
        aux, sparsity = zero, zero
        sparse = isinstance(code, tuple)
        if sparse:
            fired = torch.zeros(c.n, dtype=torch.bool, device=x.device)
            ids = code[0][code[0] >= 0]
            fired[ids] = True
        else:
            fired = (code > 0).any(0)
            if c.kind == "relu":
                sparsity = c.l1_coef * (code * self.W_dec.norm(dim=1)).sum(1).mean()
            else:
                pre = self.pre_activations(x)
                sparsity = (
                    c.l0_coef * _JumpHeaviside.apply(pre, self.log_threshold.exp(), c.jump_bandwidth).sum(1).mean()
                )
        if self.training:
            with torch.no_grad():
                self.tokens_since_fired += x.shape[0]
                self.tokens_since_fired[fired] = 0
            if sparse and c.k_aux > 0 and c.aux_coef > 0:
                aux = self._aux_loss(x, err.detach())
        loss = fvu + c.aux_coef * aux + sparsity
        idx, val = code if sparse else (None, None)
        return SAEOutput(recon, idx, val, None if sparse else code, loss, fvu.detach(), aux.detach(), sparsity.detach())

    def _aux_loss(self, x, residual):
        dead = self.dead_mask.nonzero().squeeze(1)
        if dead.numel() == 0:
            return x.new_zeros(())
        k = min(self.config.k_aux, dead.numel())
        idx, val = _topk_code(x - self.b_dec, self.W_enc[dead], self.b_enc[dead], k)
        idx = torch.where(idx >= 0, dead[idx.clamp(min=0)], -1)
        rhat = sparse_encode(idx, val, self.W_dec)
        var = (residual - residual.mean(0)).pow(2).sum().clamp(min=1e-12)
        return (residual - rhat).pow(2).sum() / var

    # ---- save / load ----------------------------------------------------------------------------------------
    def save(self, path, training: dict | None = None, optimizer: dict | None = None) -> str:
        """Write the SAE as one atomic checkpoint file (:mod:`supcomp.utils.checkpoint`, kind ``"sae"``):
        weights, buffers, the config, the history, and (from the trainer) the training state and the
        optimizer's tensors a resumed run needs.

        Args:
            path: a ``.safetensors`` file, or a folder (written as ``folder/model.safetensors``).
            training: JSON training state (steps done, settings); optimizer: ``{"optim.<key>.<param>":
                tensor}`` (:func:`supcomp.utils.optim_state.torch_optimizer_tensors`).

        Returns:
            the file written.
        """
        from ..utils.checkpoint import save_checkpoint

        tensors = {k: v.detach() for k, v in self.state_dict().items()}
        tensors.update(optimizer or {})
        history = getattr(self, "history", None) or []
        meta = {"config": asdict(self.config), "history": history, "training": training}
        return save_checkpoint(path, CHECKPOINT_KIND, tensors, meta)

    @classmethod
    def load(cls, path, device=None) -> SAE:
        """Read an SAE written by :meth:`save` (a ``.safetensors`` file or the folder holding one), with
        ``history``, ``training_state`` and ``optimizer_state`` (for ``train_sae(resume_from=...)``).

        Raises:
            CheckpointNotFoundError: nothing saved at ``path``.
            CheckpointError: a damaged or foreign file, another kind of checkpoint, or tensors that do not
                fit the stored config.
        """
        from ..utils.checkpoint import CheckpointError, load_checkpoint
        from ..utils.optim_state import split_optimizer_tensors

        ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND)
        optimizer = split_optimizer_tensors(ckpt.tensors)
        try:
            config = SAEConfig(**ckpt.meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: the stored config is not a valid SAEConfig ({e})") from e
        sae = cls(config, dtype=ckpt.tensors["W_dec"].dtype)
        try:
            sae.load_state_dict(ckpt.tensors)
        except RuntimeError as e:
            raise CheckpointError(f"{ckpt.path}: the tensors do not fit the stored config ({e})") from e
        sae.history = [tuple(h) for h in ckpt.meta.get("history", [])]
        sae.training_state, sae.optimizer_state = ckpt.meta.get("training"), optimizer
        return sae.to(device) if device is not None else sae
