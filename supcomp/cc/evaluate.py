"""Loss per feature L/p across densities, the naive baseline, and the naive model itself.

**Naive baseline** (Braun et al. 2025; Bhagat et al. 2025). The monosemantic model gives one neuron to
each of the first ``m = d_mlp`` functions (``y_i = relu(x_i)`` exactly, i < m) and outputs 0 for the
other ``n - m``. A feature is on with probability p and then uniform on [-1, 1], so
``E[relu(x_i)²] = p · ½ · ∫₀¹ u² du = p/6`` and the loss meaned over the n features is
``L = (n - m)/n · p/6``, i.e. ``L/p = (n - m)/(6n) = 1/12`` for n = 100, m = 50, at every p.
This is the clean-label (M = 0) value, the line both papers draw. On labels with a mixing matrix the
same naive model also misses ``x Sᵀ``, adding ``E[(x Sᵀ)_i²] = p/3 · Σ_j S_ij²`` per feature, i.e.
``‖M‖_F² / (3n)`` to L/p (``naive_loss_per_feature(mixing=M)``; ≈ 0.033 for the d_embed = 1000 embedding).

**Evaluation.** With no biases a sample with no active feature has zero output and zero label, so
``L = P(nonempty) · E[loss | nonempty]`` with ``P(nonempty) = 1 - (1 - p)^n``. ``sample_nonempty``
draws exact samples of independent features conditioned on at least one being on (the first active
feature from its truncated geometric law, every later feature independently), so ``n_samples`` counts
informative samples at every p (Bhagat et al. evaluate on about 10⁶ non-empty samples).
"""

from __future__ import annotations

import math

import torch

from .config import CCConfig
from .model import CCModel


def naive_loss_per_feature(n_features: int = 100, d_mlp: int = 50, mixing: torch.Tensor | None = None):
    """L/p of the naive monosemantic model: ``(n - m)/(6 n)`` (= 1/12 for the defaults), plus
    ``‖M‖_F² / (3 n)`` when ``mixing`` (``M [n, n]`` or ``[I, n, n]``: per instance, returns ``[I]``) is given,
    the extra loss of ignoring the mixed-in labels. See the module docstring for the derivation.

    ``mixing``: None, or a float tensor ``[..., n_features, n_features]`` (one per instance); the result is a
    float, or a float64 tensor ``[...]`` with a mixing matrix.

    Raises:
        ValueError: a size that is not a positive int, or ``mixing`` of the wrong shape.
    """
    for name, v in (("n_features", n_features), ("d_mlp", d_mlp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    base = max(n_features - d_mlp, 0) / (6.0 * n_features)
    if mixing is None:
        return base
    if mixing.shape[-2:] != (n_features, n_features):
        raise ValueError(f"mixing: expected [..., {n_features}, {n_features}], got {list(mixing.shape)}")
    return base + (mixing.double() ** 2).sum((-1, -2)) / (3.0 * n_features)


def nonempty_probability(n_features: int, p: float) -> float:
    """P(at least one of n independent features is on) = 1 - (1 - p)^n."""
    return -math.expm1(n_features * math.log1p(-p)) if p < 1 else 1.0


def sample_nonempty(
    n_samples: int, n_features: int, p: float, generator=None, dtype=torch.float32, device="cpu"
) -> torch.Tensor:
    """``x [n_samples, n_features]``: independent features (on with probability p, value uniform on
    [-1, 1)) conditioned on at least one being on. Exact: the first active feature F has
    ``P(F = f) ∝ (1-p)^f p``; features after F are on independently with probability p. The result has
    ``dtype`` (float32 by default) on ``device``; ``generator`` is an optional CPU ``torch.Generator``.
    """
    f = torch.arange(n_features, dtype=torch.float64)
    w = torch.exp(f * math.log1p(-p)) if p < 1 else (f == 0).double()
    first = torch.multinomial(w, n_samples, replacement=True, generator=generator)  # [N]
    cols = torch.arange(n_features)
    on = (torch.rand(n_samples, n_features, generator=generator) < p) & (cols > first[:, None])
    on |= cols == first[:, None]
    vals = torch.rand(n_samples, n_features, generator=generator) * 2 - 1
    return torch.where(on, vals, torch.zeros(())).to(dtype=dtype, device=device)


@torch.no_grad()
def loss_per_feature(
    model: CCModel, feature_probability: float, n_samples: int = 1_000_000, seed: int = 1234, chunk: int = 25_000
) -> torch.Tensor:
    """L/p of every instance, evaluated at density ``feature_probability`` (not necessarily the training
    one): ``[I]`` float64.

    L is the squared error meaned over the n features, per sample, estimated from ``n_samples``
    non-empty samples (shared by all instances: common random numbers) times P(nonempty). Uses the
    folded form (``CCModel.folded``), in chunks of ``chunk`` samples.

    Raises:
        TypeError: ``model`` is not a CCModel.
        ValueError: ``feature_probability`` outside (0, 1], or ``n_samples`` not a positive int.
    """
    if not isinstance(model, CCModel):
        raise TypeError(f"model: expected a CCModel, got {type(model).__name__}")
    p = feature_probability
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 1):
        raise ValueError(f"feature_probability: expected a number in (0, 1], got {p!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive int, got {n_samples!r}")
    n = model.config.n_features
    A, B, S = model.folded()
    g = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(model.config.n_instances, dtype=torch.float64, device=A.device)
    done = 0
    while done < n_samples:
        N = min(chunk, n_samples - done)
        x = sample_nonempty(N, n, float(p), generator=g, dtype=A.dtype, device=A.device)
        err = torch.bmm(torch.relu(torch.einsum("bn,inm->ibm", x, A)), B.transpose(1, 2))
        err -= torch.relu(x)
        err -= torch.einsum("bj,inj->ibn", x, S)
        total += (err.double() ** 2).sum((1, 2))
        done += N
    return total / (n_samples * n) * nonempty_probability(n, float(p)) / p


def naive_model(config: CCConfig, device=None, dtype=torch.float32) -> CCModel:
    """The naive monosemantic model as an untrained ``model="mlp"`` CCModel: neuron j reads and writes
    feature j for j < min(m, n), nothing else (so its L/p is ``naive_loss_per_feature``). Weights in
    ``dtype`` on ``device``.

    Raises:
        ValueError: ``config.model`` is not ``"mlp"``.
    """
    if config.model != "mlp":
        raise ValueError(f"config: the naive model is an mlp (model='mlp'), got model={config.model!r}")
    model = CCModel(config, device=device, dtype=dtype)
    k = min(config.d_mlp, config.n_features)
    with torch.no_grad():
        model.W_in.zero_()
        model.W_out.zero_()
        model.W_in[:, range(k), range(k)] = 1.0
        model.W_out[:, range(k), range(k)] = 1.0
    return model
