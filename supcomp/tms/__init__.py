"""Toy models of superposition (Elhage et al. 2022): config, data, a fused batched trainer, reference,
and converters to and from ARENA's / the TMS notebook's layouts (``supcomp.tms.convert``).

Constants: ``KINDS``, the model kinds (``"linear"``, ``"relu_output"``, ``"relu_hidden"``, ``"abs"``) and
``INITS``, the initial weight distributions (``"supcomp"``, ``"notebook"``, ``"arena"``) that
:class:`ToyModelConfig` accepts.
"""

from .config import INITS, KINDS, ToyModelConfig, per_instance
from .data import BatchSampler, SparseBatch, sample_batch
from .model import ToyModel
from .train import train

__all__ = [
    "ToyModelConfig",
    "KINDS",
    "INITS",
    "per_instance",
    "BatchSampler",
    "SparseBatch",
    "sample_batch",
    "ToyModel",
    "train",
]
