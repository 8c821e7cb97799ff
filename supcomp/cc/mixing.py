"""The fixed random matrices of a CC run: the embedding W_E and the mixing matrix M, one per instance.

Every instance draws from its own generator, keyed by (seed, instance, stream) through numpy's
SeedSequence, so an instance's matrices do not depend on how many instances share the run, and the
``"residual"`` model and the ``"mlp"`` + ``"embedding"`` control of the same (seed, instance) share
one W_E (the control is trained on exactly the residual model's mixing matrix).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import CCConfig

#: generator streams of one instance
EMBED_STREAM, INIT_STREAM = 0, 1


def instance_generator(seed: int, instance: int, stream: int) -> torch.Generator:
    """A torch CPU generator for (seed, instance, stream); seed and instance are non-negative ints."""
    state = np.random.SeedSequence([int(seed), int(instance), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def embedding(n_features: int, d_embed: int, generator: torch.Generator) -> torch.Tensor:
    """A random embedding with unit-norm rows (randn, then each row normalised): ``[n_features, d_embed]``
    float64, as in the APD code."""
    W = torch.randn(n_features, d_embed, generator=generator, dtype=torch.float64)
    return W / W.norm(dim=1, keepdim=True)


def gaussian_mixing(n: int, sigma: float, symmetric: bool, generator: torch.Generator) -> torch.Tensor:
    """``[n, n]`` float64, zero diagonal, off-diagonal entries N(0, sigma²): iid (asymmetric) or
    ``(G + Gᵀ)/√2`` (symmetric, so every off-diagonal entry still has variance sigma²)."""
    G = torch.randn(n, n, generator=generator, dtype=torch.float64)
    if symmetric:
        G = (G + G.T) / math.sqrt(2.0)
    G.fill_diagonal_(0.0)
    return sigma * G


def build(config: CCConfig, seed: int = 0):
    """``(W_E [I, n, d_embed] float64 or None, M [I, n, n] float64)`` for every instance.

    W_E exists for ``mixing="embedding"`` (both models). M has a zero diagonal: for the embedding it is
    ``W_E W_Eᵀ - I`` (whose diagonal is 0 up to rounding; set exactly 0)."""
    I, n = config.n_instances, config.n_features
    sig = config.sigmas()
    W_E = torch.empty(I, n, config.d_embed, dtype=torch.float64) if config.mixing == "embedding" else None
    M = torch.zeros(I, n, n, dtype=torch.float64)
    for i in range(I):
        g = instance_generator(seed, i, EMBED_STREAM)
        if config.mixing == "embedding":
            W_E[i] = embedding(n, config.d_embed, g)
            M[i] = W_E[i] @ W_E[i].T
            M[i].fill_diagonal_(0.0)
        elif config.mixing in ("symmetric", "asymmetric"):
            M[i] = gaussian_mixing(n, sig[i], config.mixing == "symmetric", g)
    return W_E, M
