"""ToyModel: the weights of a batch of toy models, their forward pass, and save / load."""

from __future__ import annotations

import json
import math
import os

import torch
from torch import nn

from .config import ToyModelConfig


class ToyModel(nn.Module):
    """``n_instances`` toy models. Weights store one feature per row:

    * ``W [I, n_features, n_hidden]``: feature i's direction in the hidden space (the paper's column W_i);
    * ``W_out [I, n_features, n_hidden]``: the untied read-out (``kind="abs"`` only; tied kinds read
      out with ``W``);
    * ``b [I, n_features]``: the output bias.

    Initialisation: W (and W_out) normal with the Xavier scale ``sqrt(2 / (n + m))`` of one instance (so an
    instance's start does not depend on how many instances are batched with it), ``b = 0``. With
    ``instance_seeds`` (``[I]`` ints) each instance is drawn from its own seed (see ``_init_weights``).
    ``loss_history`` is ``[n_logged, I]`` (the importance-weighted MSE of each instance), logged at
    ``loss_steps``.
    """

    def __init__(self, config: ToyModelConfig, seed: int = 0, device=None, dtype=torch.float32, instance_seeds=None):
        super().__init__()
        self.config = config
        I, n, m = config.n_instances, config.n_features, config.n_hidden
        std = math.sqrt(2.0 / (n + m))
        W, W_out = self._init_weights(config, seed, instance_seeds)
        self.W = nn.Parameter((W * std).to(dtype).to(device))
        if config.kind == "abs":
            self.W_out = nn.Parameter((W_out * std).to(dtype).to(device))
        else:
            self.register_parameter("W_out", None)
        self.b = nn.Parameter(torch.zeros(I, n, dtype=dtype, device=device))
        self.register_buffer("importance", config.importances().to(dtype).to(device))
        self.loss_history = torch.zeros(0, I)
        self.loss_steps: list[int] = []

    @staticmethod
    def _init_weights(config, seed, instance_seeds):
        """Standard-normal ``W`` (and ``W_out`` for ``abs``), ``[I, n, m]`` float64. With ``instance_seeds``
        (``[I]`` ints) instance i gets what instance 0 of a run with ``seed = instance_seeds[i]`` gets
        (packing-invariant: see ``BatchSampler``)."""
        from ..ops.tms_sample import instance_seed_tensor

        I, n, m = config.n_instances, config.n_features, config.n_hidden
        k = 2 if config.kind == "abs" else 1
        seeds = instance_seed_tensor(instance_seeds, I)
        if seeds is None:
            g = torch.Generator().manual_seed(int(seed))
            draws = [torch.randn(I, n, m, generator=g, dtype=torch.float64) for _ in range(k)]
        else:
            per = []
            for s in seeds.tolist():
                g = torch.Generator().manual_seed(int(s))
                per.append([torch.randn(n, m, generator=g, dtype=torch.float64) for _ in range(k)])
            draws = [torch.stack([p[j] for p in per]) for j in range(k)]
        return draws[0], (draws[1] if k == 2 else None)

    @property
    def decoder(self) -> torch.Tensor:
        return self.W if self.W_out is None else self.W_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense inputs ``x [I, B, n]`` -> outputs ``[I, B, n]`` (plain einsum; for inspection)."""
        kind = self.config.kind
        h = torch.einsum("ibn,inm->ibm", x, self.W)
        if kind in ("relu_hidden", "abs"):
            h = torch.relu(h)
        y = torch.einsum("ibm,inm->ibn", h, self.decoder) + self.b[:, None]
        return y if kind == "linear" else torch.relu(y)

    def final_loss(self, last: int = 100) -> torch.Tensor:
        """Mean logged loss over the last ``last`` logged points, ``[I]``."""
        if self.loss_history.shape[0] == 0:
            raise ValueError("loss_history: the model has not been trained")
        return self.loss_history[-last:].mean(0)

    # ---- save / load: safetensors for tensors, JSON for the config -------------------------------------
    def save(self, path: str):
        """Write ``path/model.safetensors`` and ``path/config.json`` (each written to a temporary file, then
        renamed, so an interrupted save never leaves a half-written file)."""
        from safetensors.torch import save_file

        from ..utils.files import atomic_path

        os.makedirs(path, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tensors["loss_history"] = self.loss_history.contiguous()
        tensors["loss_steps"] = torch.tensor(self.loss_steps, dtype=torch.int64)
        # Each file through a temporary file that is renamed when complete (and removed if the
        # save is interrupted): a reader sees the old file or the new one, never half of one.
        with atomic_path(os.path.join(path, "model.safetensors")) as tmp:
            save_file(tensors, tmp)
        with atomic_path(os.path.join(path, "config.json")) as tmp:
            with open(tmp, "w") as f:
                json.dump({"config": self.config.to_dict(), "format": "supcomp.tms.ToyModel/1"}, f, indent=1)

    @classmethod
    def load(cls, path: str, device=None) -> ToyModel:
        from safetensors.torch import load_file

        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
        config = ToyModelConfig.from_dict(meta["config"])
        tensors = load_file(os.path.join(path, "model.safetensors"))
        model = cls(config, dtype=tensors["W"].dtype)
        model.loss_history = tensors.pop("loss_history")
        model.loss_steps = tensors.pop("loss_steps").tolist()
        model.load_state_dict(tensors)
        return model.to(device) if device is not None else model
