"""Compressed computation (Braun et al. 2025, APD) and its controls (Bhagat et al. 2025): the residual-MLP
toy model, plain MLPs trained on ``relu(x) + M x``, batched training on the supcomp ops, L/p evaluation.

``MODELS`` names the model kinds (``"residual"``, ``"mlp"``) and ``MIXINGS`` the mixing matrices
(``"embedding"``, ``"none"``, ``"symmetric"``, ``"asymmetric"``) that ``CCConfig`` takes.
"""

from .config import MIXINGS, MODELS, CCConfig
from .evaluate import loss_per_feature, naive_loss_per_feature, naive_model, sample_nonempty
from .model import CCModel
from .train import train

__all__ = [
    "CCConfig",
    "MODELS",
    "MIXINGS",
    "CCModel",
    "train",
    "loss_per_feature",
    "naive_loss_per_feature",
    "naive_model",
    "sample_nonempty",
]
