"""Toy models of superposition (Elhage et al. 2022): config, data, a fused batched trainer, reference."""

from .config import KINDS, ToyModelConfig
from .data import BatchSampler, SparseBatch, sample_batch
from .model import ToyModel
from .train import train

__all__ = ["ToyModelConfig", "KINDS", "BatchSampler", "SparseBatch", "sample_batch", "ToyModel", "train"]
