"""CCModel: the weights of a batch of compressed-computation models, their forward pass, save / load.

Both models are a bias-free one-hidden-layer ReLU MLP with a fixed linear read-in / read-out around
it. Writing x as a row vector (batch-first, as the code does):

* ``"residual"`` (Braun et al. 2025): ``resid = x W_E``; ``resid += relu(resid W_in) W_outᵀ``;
  ``out = resid W_Eᵀ``; labels ``x + relu(x)``. Since ``W_E W_Eᵀ = I + M`` the residual path already
  outputs ``x + x M``, so the MLP must fit ``relu(x) - x M``.
* ``"mlp"`` (Bhagat et al. 2025): ``out = relu(x W_in) W_outᵀ``; labels ``relu(x) + x Mᵀ``.

Either way the error is ``relu(x A) Bᵀ - relu(x) - x Sᵀ`` with the *folded* matrices
``A = W_E W_in``, ``B = W_E W_out`` ([n, m]; ``A = W_in``, ``B = W_out`` for the mlp) and the label
mixing ``S = -M`` (residual) or ``S = M`` (mlp). ``folded()`` returns them; the fused trainer and the
evaluation use this form (exact, and ~d_embed/m times fewer FLOPs per sample than going through the
1000-wide residual stream), ``forward()`` is the literal architecture.
"""

from __future__ import annotations

import json
import math
import os

import torch
from torch import nn

from . import mixing
from .config import CCConfig


class CCModel(nn.Module):
    """``n_instances`` compressed-computation models.

    Parameters (trained; stored one row per input / output dimension, as ``nn.Linear`` would store
    their transposes):

    * ``W_in [I, d_in, m]``: the MLP's input weights (``d_in = d_embed`` for the residual model, reading
      the residual stream; ``n_features`` for the mlp);
    * ``W_out [I, d_out, m]``: the MLP's output weights (row r: what the m neurons write to residual
      dimension / output feature r).

    Buffers (fixed): ``W_E [I, n, d_embed]`` (residual model only; ``W_U = W_Eᵀ``), ``M [I, n, n]`` the
    mixing matrix (zero diagonal), ``S [I, n, n]`` the mixing the MLP must add to ``relu(x)``.

    Initialisation: kaiming-uniform (gain √2, bound ``sqrt(6 / fan_in)``; the Bhagat et al. code's
    ``kaiming_uniform_``) from each instance's own generator, in float64 then cast.
    ``loss_history [n_logged, I]``: training-batch MSE (mean over features and batch) at ``loss_steps``.
    """

    def __init__(self, config: CCConfig, seed: int = 0, device=None, dtype=torch.float32):
        super().__init__()
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.config, self.seed = config, seed
        I, n, m = config.n_instances, config.n_features, config.d_mlp
        W_E, M = mixing.build(config, seed)
        residual = config.model == "residual"
        d = config.d_embed if residual else n
        W_in = torch.empty(I, d, m, dtype=torch.float64)
        W_out = torch.empty(I, d, m, dtype=torch.float64)
        for i in range(I):
            g = mixing.instance_generator(seed, i, mixing.INIT_STREAM)
            W_in[i] = (torch.rand(d, m, generator=g, dtype=torch.float64) * 2 - 1) * math.sqrt(6.0 / d)
            W_out[i] = (torch.rand(d, m, generator=g, dtype=torch.float64) * 2 - 1) * math.sqrt(6.0 / m)
        self.W_in = nn.Parameter(W_in.to(dtype).to(device))
        self.W_out = nn.Parameter(W_out.to(dtype).to(device))
        if residual:
            self.register_buffer("W_E", W_E.to(dtype).to(device))
        else:
            self.W_E = None
        self.register_buffer("M", M.to(dtype).to(device))
        self.register_buffer("S", (-M if residual else M).to(dtype).to(device))
        self.loss_history = torch.zeros(0, I)
        self.loss_steps: list[int] = []

    @property
    def residual(self) -> bool:
        return self.config.model == "residual"

    def folded(self):
        """``(A [I, n, m], B [I, n, m], S [I, n, n])``: the model's error is ``relu(x A) Bᵀ - relu(x) - x Sᵀ``
        (see the module docstring). Differentiable in W_in, W_out."""
        if self.residual:
            return torch.bmm(self.W_E, self.W_in), torch.bmm(self.W_E, self.W_out), self.S
        return self.W_in, self.W_out, self.S

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense inputs ``x [I, B, n]`` -> outputs ``[I, B, n]``: the literal architecture, plain einsum
        (the APD code's residual stream for the residual model). For inspection and as the reference."""
        if self.residual:
            resid = torch.einsum("ibn,ind->ibd", x, self.W_E)
            h = torch.relu(torch.einsum("ibd,idm->ibm", resid, self.W_in))
            resid = resid + torch.einsum("ibm,idm->ibd", h, self.W_out)
            return torch.einsum("ibd,ind->ibn", resid, self.W_E)
        h = torch.relu(torch.einsum("ibn,inm->ibm", x, self.W_in))
        return torch.einsum("ibm,inm->ibn", h, self.W_out)

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """Targets for dense ``x [I, B, n]`` -> ``[I, B, n]``: ``x + relu(x)`` (residual) or
        ``relu(x) + x Mᵀ`` (mlp)."""
        if self.residual:
            return x + torch.relu(x)
        return torch.relu(x) + torch.einsum("ibj,inj->ibn", x, self.M)

    def final_loss(self, last: int = 100) -> torch.Tensor:
        """Mean logged training loss over the last ``last`` logged points, ``[I]``."""
        if self.loss_history.shape[0] == 0:
            raise ValueError("loss_history: the model has not been trained")
        return self.loss_history[-last:].mean(0)

    # ---- save / load: safetensors for tensors, JSON for the config ---------------------------------------
    def save(self, path: str):
        """Write ``path/model.safetensors`` and ``path/config.json`` (temporary file, then rename)."""
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tensors["loss_history"] = self.loss_history.contiguous()
        tensors["loss_steps"] = torch.tensor(self.loss_steps, dtype=torch.int64)
        tmp = os.path.join(path, ".model.safetensors.tmp")
        save_file(tensors, tmp)
        os.replace(tmp, os.path.join(path, "model.safetensors"))
        tmp = os.path.join(path, ".config.json.tmp")
        with open(tmp, "w") as f:
            json.dump(
                {"config": self.config.to_dict(), "seed": self.seed, "format": "supcomp.cc.CCModel/1"}, f, indent=1
            )
        os.replace(tmp, os.path.join(path, "config.json"))

    @classmethod
    def load(cls, path: str, device=None) -> CCModel:
        from safetensors.torch import load_file

        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
        tensors = load_file(os.path.join(path, "model.safetensors"))
        model = cls(CCConfig.from_dict(meta["config"]), seed=meta["seed"], dtype=tensors["W_in"].dtype)
        model.loss_history = tensors.pop("loss_history")
        model.loss_steps = tensors.pop("loss_steps").tolist()
        model.load_state_dict(tensors)
        return model.to(device) if device is not None else model
