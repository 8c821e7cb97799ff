"""Ground-truth feature directions and per-feature statistics of a synthetic world.

Directions are unit rows ``W [N, D]`` (one feature per row, the layout ``supcomp.ops.sparse_encode``
reads). They come from random Gaussian draws (optionally pushed apart toward a target mean max
cosine), from a user's tensor, from a trained toy model of superposition (its ``W``), or from a U-AND
construction (its input embedding ``F`` or its connection columns). Firing probabilities follow a Zipf
law rescaled to ``[p_min, p_max]`` as SAELens's ``zipfian_firing_probabilities`` does.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "random_directions",
    "orthogonalize",
    "mean_max_cosine",
    "zipf_probabilities",
    "features_from_tensor",
    "features_from_toy_model",
    "features_from_uand",
]


def _unit_rows(W: torch.Tensor) -> torch.Tensor:
    norms = W.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("features: a feature direction has zero norm")
    return W / norms


def random_directions(n_features: int, d: int, generator: torch.Generator | None = None, dtype=torch.float32):
    """``n_features`` random unit directions in ``R^d``, ``[n_features, d]`` (Gaussian rows, normalised).

    Raises:
        ValueError: ``n_features`` or ``d`` is not a positive int.
    """
    for name, v in (("n_features", n_features), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    W = torch.randn(n_features, d, generator=generator, dtype=torch.float64)
    return _unit_rows(W).to(dtype)


def _max_cos(W: torch.Tensor, chunk: int = 2048):
    """Per row: the largest |cosine| to another row and that row's index; never holds [N, N] whole."""
    N = W.shape[0]
    best = torch.empty(N, dtype=W.dtype, device=W.device)
    arg = torch.empty(N, dtype=torch.int64, device=W.device)
    for r0 in range(0, N, chunk):
        r1 = min(N, r0 + chunk)
        G = (W[r0:r1] @ W.T).abs_()
        G[torch.arange(r1 - r0, device=W.device), torch.arange(r0, r1, device=W.device)] = -1.0
        best[r0:r1], arg[r0:r1] = G.max(dim=1)
    return best, arg


def mean_max_cosine(W: torch.Tensor, chunk: int = 2048) -> float:
    """Mean over rows of the largest |cosine| to any other row of ``W [N, D]`` (``N >= 2``), computed in chunks.

    Raises:
        ValueError: ``W`` is not 2-D with at least two rows.
    """
    if W.dim() != 2 or W.shape[0] < 2:
        raise ValueError(f"W: expected [N >= 2, D], got {tuple(W.shape)}")
    return float(_max_cos(_unit_rows(W.float()), chunk)[0].mean())


def orthogonalize(W: torch.Tensor, target: float, max_steps: int = 200, lr: float = 0.2, chunk: int = 2048):
    """Push unit rows apart until the mean max |cosine| is at most ``target`` (or ``max_steps`` passes).

    Each pass is a projected gradient step on ``sum_{i != j} relu(|c_ij| - target)^2`` (``c_ij`` the
    cosines): every row moves away from the rows it overlaps by more than ``target``, then is
    renormalised. One pass costs two chunked Gram products (``N^2 D`` multiply-adds each).

    Returns:
        ``(W', reached)``: the new unit rows ``[N, D]`` float64 and the mean max cosine reached.
    Raises:
        ValueError: ``target`` is not in (0, 1].
    """
    if not (0 < target <= 1):
        raise ValueError(f"target: expected a mean max cosine in (0, 1], got {target!r}")
    W = _unit_rows(W.double())
    N = W.shape[0]
    mmc = float("nan")
    for _ in range(max_steps + 1):
        mmc = float(_max_cos(W, chunk)[0].mean())
        if mmc <= target:
            break
        grad = torch.empty_like(W)
        for r0 in range(0, N, chunk):
            r1 = min(N, r0 + chunk)
            G = W[r0:r1] @ W.T
            G[torch.arange(r1 - r0), torch.arange(r0, r1)] = 0.0
            G = G.sign() * (G.abs() - target).clamp(min=0)
            grad[r0:r1] = G @ W
        W = _unit_rows(W - lr * grad)
    return W, mmc


def zipf_probabilities(n_features: int, exponent: float = 0.5, p_max: float = 0.4, p_min: float = 5e-4):
    """Firing probabilities ``[n_features]`` float64: ``rank^-exponent`` rescaled linearly to ``[p_min, p_max]``.

    Feature 0 is the most frequent. This is the rule of SAELens's ``zipfian_firing_probabilities``.

    Raises:
        ValueError: ``exponent <= 0`` or not ``0 < p_min < p_max <= 1``.
    """
    if not exponent > 0:
        raise ValueError(f"exponent: expected > 0, got {exponent!r}")
    if not 0 < p_min < p_max <= 1:
        raise ValueError(f"p_min, p_max: expected 0 < p_min < p_max <= 1, got {p_min!r}, {p_max!r}")
    if n_features == 1:
        return torch.tensor([p_max], dtype=torch.float64)
    r = torch.arange(1, n_features + 1, dtype=torch.float64) ** -exponent
    return p_min + (p_max - p_min) * (r - r.min()) / (r.max() - r.min())


def features_from_tensor(W: torch.Tensor) -> torch.Tensor:
    """A user's feature directions ``[N, D]``, normalised to unit rows (float64 copy).

    Raises:
        TypeError: ``W`` is not a floating tensor.
        ValueError: not 2-D, or a zero row.
    """
    if not isinstance(W, torch.Tensor) or not W.is_floating_point():
        raise TypeError(f"W: expected a floating tensor, got {type(W).__name__}")
    if W.dim() != 2:
        raise ValueError(f"W: expected [n_features, d], got shape {tuple(W.shape)}")
    return _unit_rows(W.detach().double().cpu())


def features_from_toy_model(model, instance: int = 0) -> torch.Tensor:
    """The feature directions a trained TMS toy model stores: rows of ``model.W[instance]`` ``[n, m]``, unit norm.

    A feature the model did not learn (a zero row) raises: a world needs a direction for every
    feature, so pass the learned rows through ``features_from_tensor`` instead.

    Raises:
        ValueError: ``instance`` out of range, or a zero row.
    """
    W = model.W.detach()
    if not 0 <= instance < W.shape[0]:
        raise ValueError(f"instance: expected 0 <= instance < {W.shape[0]}, got {instance}")
    return features_from_tensor(W[instance])


def features_from_uand(uand, space: str = "input") -> torch.Tensor:
    """Feature directions of a ``supcomp.uand.UAnd`` construction.

    ``space="input"``: the input embedding rows ``F [m, d0]`` (the inputs in superposition);
    ``space="neurons"``: column ``i`` of the first layer (``C`` or ``C F``) is where input ``i`` writes in
    neuron space, ``[m, d]``.

    Raises:
        ValueError: unknown ``space``, or ``space="input"`` on a model without an embedding.
    """
    if space == "input":
        if uand.F is None:
            raise ValueError("uand: has no input embedding (construct it with input_embedding=d0) for space='input'")
        return features_from_tensor(uand.F)
    if space == "neurons":
        return features_from_tensor(uand.connection_matrix().T.contiguous())
    raise ValueError(f"space: expected 'input' or 'neurons', got {space!r}")


def normal_sf(x: torch.Tensor) -> torch.Tensor:
    """P(Z > x) for a standard normal Z."""
    return 0.5 * torch.erfc(x / math.sqrt(2.0))


def normal_isf(p: torch.Tensor) -> torch.Tensor:
    """The x with P(Z > x) = p for a standard normal Z."""
    return math.sqrt(2.0) * torch.erfinv(1 - 2 * p)
