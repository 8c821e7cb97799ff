"""ToyModel: the weights of a batch of toy models, their forward pass, and save / load."""

from __future__ import annotations

import dataclasses
import json
import logging
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


logger = logging.getLogger(__name__)


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
        """The read-out weights ``[I, n_features, n_hidden]``: ``W_out`` (``kind="abs"``), else ``W`` (tied)."""
        return self.W if self.W_out is None else self.W_out

    def forward(self, x: torch.Tensor, layout: str = "IBn") -> torch.Tensor:
        """Dense inputs ``x [I, B, n]`` (the weights' float dtype) -> outputs ``[I, B, n]`` (plain einsum; for inspection).

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
        """Mean logged loss over the last ``last`` logged points, ``[I]`` float32.

        Raises:
            ValueError: the model has not been trained (no logged loss)."""
        if self.loss_history.shape[0] == 0:
            raise ValueError("loss_history: the model has not been trained")
        return self.loss_history[-last:].mean(0)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"kind={c.kind!r}, n_instances={c.n_instances}, n_features={c.n_features}, n_hidden={c.n_hidden}, "
            f"dtype={self.W.dtype}, device={self.W.device}"
        )

    # ---- save / load: one safetensors file, config and training state in its header -------------------
    # Set by ``train``: what a resumed run needs (steps done, seed, lr, batch size, ...; JSON) and the
    # optimizer's state (name -> tensor, see supcomp.utils.optim_state). None for a model not trained.
    training_state: dict | None = None
    optimizer_state: dict | None = None

    def save(self, path) -> str:
        """Write the model to one checkpoint file, atomically (``supcomp.utils.checkpoint``): weights, loss
        history, config, and (after ``train``) the training state and optimizer moments a resumed run needs.

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
        meta = {"config": pack_values(fields, tensors, "config."), "training": self.training_state}
        if self.optimizer_state:
            tensors.update(self.optimizer_state)
        return save_checkpoint(path, CHECKPOINT_KIND, tensors, meta)

    @classmethod
    def load(cls, path, device=None) -> ToyModel:
        """Read a model written by :meth:`save` (a ``.safetensors`` file or the folder holding one).

        The model is built from the file's tensors (no random initialisation is drawn first), checked
        against the config stored with them; ``training_state`` / ``optimizer_state`` are restored, so
        ``train(..., resume_from=model)`` continues the run.

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
            config = ToyModelConfig.from_dict(unpack_values(ckpt.meta["config"], tensors))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: the stored config is not a valid ToyModelConfig ({e})") from e
        optimizer_state = split_optimizer_tensors(tensors)
        model = cls._from_tensors(config, tensors, ckpt.path)
        training = ckpt.meta.get("training")
        if training is not None and not isinstance(training, dict):
            raise CheckpointError(f"{ckpt.path}: the stored training state is not a JSON object (damaged file)")
        model.training_state = training
        model.optimizer_state = optimizer_state or None
        return model.to(device) if device is not None else model

    @classmethod
    def _from_tensors(cls, config: ToyModelConfig, tensors: dict, source: str) -> ToyModel:
        """A model holding ``tensors`` (W, W_out, b, importance, loss_history, loss_steps) as they are,
        after checking their names and shapes against ``config``; no initialisation is drawn."""
        from ..utils.checkpoint import check_model_tensors

        I, n, m = config.n_instances, config.n_features, config.n_hidden
        expected = {"W": (I, n, m), "b": (I, n), "importance": (I, n)}
        if config.kind == "abs":
            expected["W_out"] = (I, n, m)
        tensors, history, steps = check_model_tensors(tensors, expected, I, f"{config.kind!r} ToyModel", source)
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = config
        model.W = nn.Parameter(tensors["W"])
        if config.kind == "abs":
            model.W_out = nn.Parameter(tensors["W_out"])
        else:
            model.register_parameter("W_out", None)
        model.b = nn.Parameter(tensors["b"])
        model.register_buffer("importance", tensors["importance"])
        model.loss_history = history
        model.loss_steps = steps.tolist()
        return model

    @classmethod
    def _load_legacy(cls, folder: str, device=None) -> ToyModel:
        """The two-file layout (``config.json`` + ``model.safetensors`` without format metadata)."""
        from safetensors.torch import load_file

        logger.warning("%s: a checkpoint in the old two-file layout; save it again to get the single-file one", folder)
        with open(os.path.join(folder, "config.json")) as f:
            meta = json.load(f)
        model = cls._from_tensors(
            ToyModelConfig.from_dict(meta["config"]), load_file(os.path.join(folder, "model.safetensors")), folder
        )
        return model.to(device) if device is not None else model


CHECKPOINT_KIND = "tms.ToyModel"
_LEGACY_FORMAT = "supcomp.tms.ToyModel/1"


def _legacy_folder(path) -> str | None:
    """``path`` when it is a folder in the two-file layout (config.json says ``supcomp.tms.ToyModel/1``)."""
    path = os.fspath(path)
    cfg = os.path.join(path, "config.json")
    if not (os.path.isdir(path) and os.path.isfile(cfg)):
        return None
    try:
        with open(cfg) as f:
            return path if json.load(f).get("format") == _LEGACY_FORMAT else None
    except (OSError, ValueError, AttributeError):
        return None
