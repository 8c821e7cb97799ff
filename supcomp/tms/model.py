"""ToyModel: the weights of a batch of toy models, their forward pass, and save / load."""

from __future__ import annotations

import json
import math
import os

import torch
from torch import nn

from .config import ToyModelConfig

__all__ = ["ToyModel"]


def _reference_init(config: ToyModelConfig, init: str, seed: int):
    """``(W, W_out or None)`` ``[I, n, m]`` float32 as the notebook / ARENA draw them: their torch init
    functions on their own layouts, on a CPU generator seeded with ``seed``."""
    I, n, m = config.n_instances, config.n_features, config.n_hidden
    g = torch.Generator().manual_seed(int(seed))
    if init == "notebook":  # W [I, n, m], xavier_normal_; W_out (abs only: ours) the same, after W
        W = nn.init.xavier_normal_(torch.empty(I, n, m), generator=g)
        W_out = nn.init.xavier_normal_(torch.empty(I, n, m), generator=g) if config.kind == "abs" else None
        return W, W_out
    if config.kind == "abs":  # ARENA's computation model: W1 [I, m, n], W2 [I, n, m], kaiming_uniform_
        W1 = nn.init.kaiming_uniform_(torch.empty(I, m, n), generator=g)
        W2 = nn.init.kaiming_uniform_(torch.empty(I, n, m), generator=g)
        return W1.transpose(1, 2).contiguous(), W2
    W = nn.init.xavier_normal_(torch.empty(I, m, n), generator=g)  # ARENA's W [I, m, n]
    return W.transpose(1, 2).contiguous(), None


class ToyModel(nn.Module):
    """``n_instances`` toy models. Weights store one feature per row (the TMS notebook's layout;
    :mod:`supcomp.tms.convert` converts to and from ARENA's ``[I, m, n]``):

    * ``W [I, n_features, n_hidden]``: feature i's direction in the hidden space (the paper's column W_i);
    * ``W_out [I, n_features, n_hidden]``: the untied read-out (``kind="abs"`` only; tied kinds read
      out with ``W``);
    * ``b [I, n_features]``: the output bias (the references' ``b_final``).

    Initialisation (``config.init``; ``b = 0`` in all three):

    * ``"supcomp"``: W (and W_out) normal with the Xavier scale ``sqrt(2 / (n + m))`` of one instance (so
      an instance's start does not depend on how many instances are batched with it). With
      ``instance_seeds`` (``[I]`` ints) each instance is drawn from its own seed.
    * ``"notebook"``: the TMS notebook's ``nn.init.xavier_normal_`` on the ``[I, n, m]`` tensor (torch's
      fans of a 3-D tensor: std ``sqrt(2 / (n m + I m))``), drawn in float32 from a CPU generator seeded
      with ``seed``: the same numbers as the notebook's model on CPU after ``torch.manual_seed(seed)``.
      ``W_out`` (``abs``, which the notebook lacks) is drawn the same way, after W.
    * ``"arena"``: ARENA's ``nn.init.xavier_normal_`` on its ``[I, m, n]`` W (std
      ``sqrt(2 / (m n + I n))``), transposed; for ``kind="abs"``, ARENA's computation model:
      ``kaiming_uniform_`` on W1 ``[I, m, n]`` then W2 ``[I, n, m]`` (bound ``sqrt(6 / (n m))``). The same
      numbers as ARENA's model on CPU after ``torch.manual_seed(seed)``.

    The two references scale with I, so they take no ``instance_seeds`` (an instance's start would
    depend on its packmates).

    ``loss_history`` is ``[n_logged, I]`` (the importance-weighted MSE of each instance), logged at
    ``loss_steps``.

    Raises:
        ValueError: ``instance_seeds`` is malformed, or given with ``init="notebook"`` / ``"arena"``.
    """

    def __init__(self, config: ToyModelConfig, seed: int = 0, device=None, dtype=torch.float32, instance_seeds=None):
        super().__init__()
        self.config = config
        I, n = config.n_instances, config.n_features
        W, W_out = self._init_weights(config, seed, instance_seeds)
        self.W = nn.Parameter(W.to(dtype).to(device))
        if config.kind == "abs":
            self.W_out = nn.Parameter(W_out.to(dtype).to(device))
        else:
            self.register_parameter("W_out", None)
        self.b = nn.Parameter(torch.zeros(I, n, dtype=dtype, device=device))
        self.register_buffer("importance", config.importances().to(dtype).to(device))
        self.loss_history = torch.zeros(0, I)
        self.loss_steps: list[int] = []

    @staticmethod
    def _init_weights(config, seed, instance_seeds):
        """The initial ``W`` (and ``W_out`` for ``abs``, else None), ``[I, n, m]``, of ``config.init``
        (see the class docstring)."""
        init = getattr(config, "init", "supcomp")
        if init != "supcomp":
            if instance_seeds is not None:
                raise ValueError(
                    f"instance_seeds: init={init!r} scales the weights by the number of instances, so an "
                    "instance's start would depend on its packmates; use init='supcomp' to pack runs"
                )
            return _reference_init(config, init, seed)
        from ..ops.tms_sample import instance_seed_tensor

        I, n, m = config.n_instances, config.n_features, config.n_hidden
        std = math.sqrt(2.0 / (n + m))
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
        return draws[0] * std, (draws[1] * std if k == 2 else None)

    @property
    def decoder(self) -> torch.Tensor:
        return self.W if self.W_out is None else self.W_out

    def forward(self, x: torch.Tensor, layout: str = "IBn") -> torch.Tensor:
        """Dense inputs ``x [I, B, n]`` -> outputs ``[I, B, n]`` (plain einsum; for inspection).

        ``layout="BIn"`` takes and returns ARENA's / the notebook's ``[B, I, n]`` instead; the layout is
        never inferred from the sizes.

        Raises:
            ValueError: ``layout`` is unknown, or ``x``'s instance or feature axis has the wrong size.
        """
        from ..ops.tms_sample import from_instance_major, to_instance_major

        x = to_instance_major(x, layout, self.config.n_instances, self.config.n_features)
        kind = self.config.kind
        h = torch.einsum("ibn,inm->ibm", x, self.W)
        if kind in ("relu_hidden", "abs"):
            h = torch.relu(h)
        y = torch.einsum("ibm,inm->ibn", h, self.decoder) + self.b[:, None]
        return from_instance_major(y if kind == "linear" else torch.relu(y), layout)

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
