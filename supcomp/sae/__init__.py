"""Sparse autoencoders on ground truth: synthetic worlds with known features, SAEs on supcomp's kernels, grading.

* :mod:`supcomp.sae.world` / :mod:`~supcomp.sae.features` / :mod:`~supcomp.sae.hierarchy`: worlds of
  known features (Zipf firing, low-rank correlation, hierarchy, magnitudes) sampled sparsely;
* :mod:`supcomp.sae.models`: TopK, BatchTopK, ReLU/L1 and JumpReLU SAEs on ``relu_readout_topk`` and
  ``sparse_encode`` (``KINDS`` names the four kinds); :mod:`supcomp.sae.train`: the Adam trainer and
  activation sources;
* :mod:`supcomp.sae.grade`: scores against the true features, and plots;
* :mod:`supcomp.sae.interop`: SAELens and sparsify folders; :mod:`supcomp.sae.distributed`:
  data-parallel training under torchrun.
"""

from .distributed import train_sae_distributed
from .grade import Grade, grade, plot_matched_cosines, plot_recovery_vs_frequency
from .interop import load_saelens, load_sparsify, save_saelens, save_sparsify
from .models import KINDS, SAE, SAEConfig, SAEOutput
from .train import activation_source, collect_activations, train_sae
from .world import World, WorldConfig, WorldSample, synthsaebench_16k

__all__ = [
    "World",
    "WorldConfig",
    "WorldSample",
    "synthsaebench_16k",
    "SAE",
    "SAEConfig",
    "SAEOutput",
    "KINDS",
    "train_sae",
    "activation_source",
    "collect_activations",
    "Grade",
    "grade",
    "plot_recovery_vs_frequency",
    "plot_matched_cosines",
    "save_saelens",
    "load_saelens",
    "save_sparsify",
    "load_sparsify",
    "train_sae_distributed",
]
