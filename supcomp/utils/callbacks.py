"""Watching a training run: the callback protocol of supcomp's trainers and adapters for TensorBoard and
Weights & Biases.

A callback is any callable ``callback(step, loss, metrics)``: the trainers (``supcomp.tms.train``,
``supcomp.cc.train``) call it every ``log_every`` steps (and at the last step) with

* ``step``: the 0-based step just taken (``int``);
* ``loss``: the training loss of that step, meaned over the instances trained side by side (``float``);
* ``metrics``: ``{name: float}``: ``lr`` (the learning rate of the step), ``loss_min`` / ``loss_max``
  over instances and ``loss/<i>`` for each instance ``i``.

Every value is a plain Python number (no tensors, nothing holding an autograd graph). A callback that
raises stops the run (the exception propagates out of the trainer; a checkpoint written before that stays).
"""

from __future__ import annotations

import importlib
import logging
from typing import Protocol, runtime_checkable

import torch

__all__ = [
    "TrainingCallback",
    "CallbackList",
    "LoggingCallback",
    "TensorBoardCallback",
    "WandbCallback",
    "loss_metrics",
]


@runtime_checkable
class TrainingCallback(Protocol):
    """The protocol: ``callback(step: int, loss: float, metrics: dict[str, float]) -> None``.

    A protocol for type checks and ``isinstance`` only: instantiating it raises TypeError."""

    def __call__(self, step: int, loss: float, metrics: dict) -> None: ...


def loss_metrics(losses: torch.Tensor, lr: float) -> tuple[float, dict]:
    """``(loss, metrics)`` for a callback from per-instance losses ``[I]`` (any float dtype and device) and
    the step's learning rate: the mean loss, and ``lr``, ``loss_min``, ``loss_max``, ``loss/<i>`` as floats."""
    vals = losses.detach().double().cpu().reshape(-1).tolist()
    metrics = {"lr": float(lr), "loss_min": min(vals), "loss_max": max(vals)}
    metrics.update({f"loss/{i}": v for i, v in enumerate(vals)})
    return sum(vals) / len(vals), metrics


class CallbackList:
    """Several callbacks called in turn, in the order given (None entries are skipped); ``close()``
    closes each one that has a ``close``.

    Raises:
        TypeError: an entry is neither None nor callable."""

    def __init__(self, *callbacks):
        for c in callbacks:
            if c is not None and not callable(c):
                raise TypeError(f"callbacks: expected callables, got {type(c).__name__}")
        self.callbacks = [c for c in callbacks if c is not None]

    def __call__(self, step: int, loss: float, metrics: dict) -> None:
        for c in self.callbacks:
            c(step, loss, metrics)

    def close(self):
        """Close every callback that has a ``close`` method, in order."""
        for c in self.callbacks:
            if hasattr(c, "close"):
                c.close()


class LoggingCallback:
    """Writes ``step, loss, lr`` to a ``logging`` logger (default ``supcomp.train``) at ``level``
    (default INFO): what ``supcomp -v`` shows."""

    def __init__(self, logger: logging.Logger | str = "supcomp.train", level: int = logging.INFO):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def __call__(self, step: int, loss: float, metrics: dict) -> None:
        self.logger.log(self.level, "step %d loss %.6g lr %.3g", step, loss, metrics.get("lr", float("nan")))


class TensorBoardCallback:
    """Writes the loss and metrics as TensorBoard scalars (``torch.utils.tensorboard.SummaryWriter``;
    needs the ``tensorboard`` package). ``loss`` is written as ``<prefix>/loss``, each metric as
    ``<prefix>/<name>``, at ``global_step = step``.

    Args:
        log_dir: the run's folder (``tensorboard --logdir`` reads it); None: TensorBoard's default ``runs/...``.
        writer: an object with ``add_scalar(tag, value, global_step)`` (and ``flush`` / ``close``) to use
            instead of making a SummaryWriter.
        prefix: the tag prefix (default ``"train"``).

    Raises:
        ImportError: ``writer`` is None and tensorboard is not installed (the message says what to install).
    """

    def __init__(self, log_dir: str | None = None, writer=None, prefix: str = "train"):
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("TensorBoardCallback: needs the tensorboard package (pip install tensorboard)") from e
            writer = SummaryWriter(log_dir=log_dir)
        self.writer, self.prefix = writer, prefix

    def __call__(self, step: int, loss: float, metrics: dict) -> None:
        self.writer.add_scalar(f"{self.prefix}/loss", float(loss), int(step))
        for k, v in metrics.items():
            self.writer.add_scalar(f"{self.prefix}/{k}", float(v), int(step))

    def close(self):
        """Flush and close the writer."""
        self.writer.flush()
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WandbCallback:
    """Logs the loss and metrics to Weights & Biases (``wandb.log({...}, step=step)``), offline by
    default: the run is written under ``dir`` and can be uploaded later with ``wandb sync``; nothing goes
    over the network unless ``mode="online"``. ``wandb`` is imported when the callback is made.

    Args:
        project: the W&B project name.
        config: hyperparameters to record with the run (a dict).
        mode: ``"offline"`` (default), ``"online"`` or ``"disabled"``.
        run: an existing run (``wandb.init(...)``'s result) to log to instead of starting one.
        **init_kwargs: passed to ``wandb.init`` (``name``, ``dir``, ``tags``, ...).

    Raises:
        ImportError: wandb is not installed (the message says what to install).
    """

    def __init__(
        self, project: str | None = None, config: dict | None = None, mode: str = "offline", run=None, **init_kwargs
    ):
        if run is None:
            try:
                wandb = importlib.import_module("wandb")
            except ImportError as e:
                raise ImportError("WandbCallback: needs the wandb package (pip install wandb)") from e
            run = wandb.init(project=project, config=config, mode=mode, **init_kwargs)
            self._owns_run = True
        else:
            self._owns_run = False
        self.run = run

    def __call__(self, step: int, loss: float, metrics: dict) -> None:
        row = {"loss": float(loss)}
        row.update({k: float(v) for k, v in metrics.items()})
        self.run.log(row, step=int(step))

    def close(self):
        """Finish the run (only one this callback started)."""
        if self._owns_run:
            self.run.finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
