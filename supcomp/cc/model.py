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

import dataclasses
import json
import logging
import math
import os

import torch
from torch import nn

from . import mixing
from .config import CCConfig

logger = logging.getLogger(__name__)


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

    Raises:
        ValueError: ``seed`` is not a non-negative int.
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
        """Whether this is the residual (APD) model rather than the plain-MLP control."""
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
        """Targets for dense ``x [I, B, n]`` (the model's float dtype) -> ``[I, B, n]``: ``x + relu(x)``
        (residual) or ``relu(x) + x Mᵀ`` (mlp)."""
        if self.residual:
            return x + torch.relu(x)
        return torch.relu(x) + torch.einsum("ibj,inj->ibn", x, self.M)

    def final_loss(self, last: int = 100) -> torch.Tensor:
        """Mean logged training loss over the last ``last`` logged points, ``[I]`` float32.

        Raises:
            ValueError: the model has not been trained (no logged loss)."""
        if self.loss_history.shape[0] == 0:
            raise ValueError("loss_history: the model has not been trained")
        return self.loss_history[-last:].mean(0)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"model={c.model!r}, mixing={c.mixing!r}, n_instances={c.n_instances}, n_features={c.n_features}, "
            f"d_embed={c.d_embed}, d_mlp={c.d_mlp}, dtype={self.W_in.dtype}, device={self.W_in.device}"
        )

    # ---- save / load: one safetensors file, config and training state in its header ---------------------
    # Set by ``train``: what a resumed run needs (steps done, lr, batch size, ...; JSON) and the optimizer's
    # state (name -> tensor, see supcomp.utils.optim_state). None for a model not trained.
    training_state: dict | None = None
    optimizer_state: dict | None = None

    def save(self, path) -> str:
        """Write the model to one checkpoint file, atomically, under a temporary name of its own (so several
        processes may save into one folder): weights, fixed matrices, loss history, config, seed and (after
        ``train``) the training state and optimizer moments (``supcomp.utils.checkpoint``).

        Args:
            path: a ``.safetensors`` file, or a folder (written as ``folder/model.safetensors``).

        Returns:
            the file written.
        """
        from ..utils.checkpoint import pack_values, save_checkpoint

        tensors = dict(self.state_dict())
        tensors["loss_history"] = self.loss_history
        tensors["loss_steps"] = torch.tensor(self.loss_steps, dtype=torch.int64)
        fields = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}
        meta = {"config": pack_values(fields, tensors, "config."), "seed": self.seed, "training": self.training_state}
        if self.optimizer_state:
            tensors.update(self.optimizer_state)
        return save_checkpoint(path, CHECKPOINT_KIND, tensors, meta)

    @classmethod
    def load(cls, path, device=None) -> CCModel:
        """Read a model written by :meth:`save` (a ``.safetensors`` file or the folder holding one), built
        from the file's tensors (no initialisation drawn first) after checking them against its config.

        Raises:
            CheckpointNotFoundError: nothing saved at ``path``.
            CheckpointError: a damaged, truncated or foreign file, or tensors that do not fit the config.
        """
        from ..utils.checkpoint import CheckpointError, load_checkpoint, unpack_values
        from ..utils.optim_state import split_optimizer_tensors

        try:
            ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND)
        except CheckpointError:
            legacy = _legacy_folder(path)
            if legacy is None:
                raise
            return cls._load_legacy(legacy, device)
        tensors = ckpt.tensors
        try:
            config = CCConfig.from_dict(unpack_values(ckpt.meta["config"], tensors))
            seed = ckpt.meta["seed"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: the stored config is not a valid CCConfig ({e})") from e
        optimizer_state = split_optimizer_tensors(tensors)
        model = cls._from_tensors(config, seed, tensors, ckpt.path)
        training = ckpt.meta.get("training")
        if training is not None and not isinstance(training, dict):
            raise CheckpointError(f"{ckpt.path}: the stored training state is not a JSON object (damaged file)")
        model.training_state = training
        model.optimizer_state = optimizer_state or None
        return model.to(device) if device is not None else model

    @classmethod
    def _from_tensors(cls, config: CCConfig, seed, tensors: dict, source: str) -> CCModel:
        """A model holding ``tensors`` as they are, after checking names and shapes against ``config``."""
        from ..utils.checkpoint import CheckpointError, check_model_tensors

        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise CheckpointError(f"{source}: the stored seed {seed!r} is not a non-negative int")
        I, n, m = config.n_instances, config.n_features, config.d_mlp
        residual = config.model == "residual"
        d = config.d_embed if residual else n
        expected = {"W_in": (I, d, m), "W_out": (I, d, m), "M": (I, n, n), "S": (I, n, n)}
        if residual:
            expected["W_E"] = (I, n, config.d_embed)
        tensors, history, steps = check_model_tensors(tensors, expected, I, f"{config.model!r} CCModel", source)
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config, model.seed = config, seed
        model.W_in = nn.Parameter(tensors["W_in"])
        model.W_out = nn.Parameter(tensors["W_out"])
        if residual:
            model.register_buffer("W_E", tensors["W_E"])
        else:
            model.W_E = None
        model.register_buffer("M", tensors["M"])
        model.register_buffer("S", tensors["S"])
        model.loss_history = history
        model.loss_steps = steps.tolist()
        return model

    @classmethod
    def _load_legacy(cls, folder: str, device=None) -> CCModel:
        """The two-file layout (``config.json`` + ``model.safetensors`` without format metadata)."""
        from safetensors.torch import load_file

        logger.warning("%s: a checkpoint in the old two-file layout; save it again to get the single-file one", folder)
        with open(os.path.join(folder, "config.json")) as f:
            meta = json.load(f)
        tensors = load_file(os.path.join(folder, "model.safetensors"))
        model = cls._from_tensors(CCConfig.from_dict(meta["config"]), meta["seed"], tensors, folder)
        return model.to(device) if device is not None else model


CHECKPOINT_KIND = "cc.CCModel"
_LEGACY_FORMAT = "supcomp.cc.CCModel/1"


def _legacy_folder(path) -> str | None:
    """``path`` when it is a folder in the two-file layout (config.json says ``supcomp.cc.CCModel/1``)."""
    path = os.fspath(path)
    cfg = os.path.join(path, "config.json")
    if not (os.path.isdir(path) and os.path.isfile(cfg)):
        return None
    try:
        with open(cfg) as f:
            return path if json.load(f).get("format") == _LEGACY_FORMAT else None
    except (OSError, ValueError, AttributeError):
        return None
