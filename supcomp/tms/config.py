"""ToyModelConfig: what a batch of toy models of superposition is (sizes, data, model kind)."""

from __future__ import annotations

import dataclasses

import torch

KINDS = ("linear", "relu_output", "relu_hidden", "abs")


def _as_tensor(value, name):
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except Exception as e:  # lists of mixed types, strings, ...
        raise TypeError(f"{name}: expected a number, a list or a tensor, got {type(value).__name__}") from e


def _broadcast(value, name, I, n):
    """scalar, [n] (per feature), [I] (per instance) or [I, n] -> [I, n] float64."""
    t = _as_tensor(value, name)
    if t.dim() == 0:
        return t.expand(I, n).clone()
    if t.dim() == 2 and tuple(t.shape) == (I, n):
        return t.clone()
    if t.dim() == 1 and name == "importance" and t.shape[0] == n:
        return t.expand(I, n).clone()
    if t.dim() == 1 and name == "feature_probability" and t.shape[0] == I:
        return t[:, None].expand(I, n).clone()
    allowed = (
        "a scalar, [n_instances] or [n_instances, n_features]"
        if name == "feature_probability"
        else "a scalar, [n_features] or [n_instances, n_features]"
    )
    raise ValueError(f"{name}: expected {allowed} = [{I}, {n}], got shape {list(t.shape)}")


@dataclasses.dataclass
class ToyModelConfig:
    """A batch of ``n_instances`` independent toy models trained side by side.

    Args:
        n_features: n, the number of sparse input features.
        n_hidden: m, the hidden width (m >= n is allowed).
        n_instances: I, models trained at once (each with its own data probabilities / importances).
        feature_probability: 1 - S, the probability that a feature is nonzero: a scalar, one value per
            instance ``[I]`` (e.g. ``20 ** -torch.linspace(0, 1, I)``) or ``[I, n]``. In (0, 1].
        importance: the loss weight of each feature: a scalar, ``[n]`` (e.g. ``0.9 ** arange(n)``) or
            ``[I, n]``. Non-negative.
        kind: ``"linear"`` (x' = WᵀWx + b), ``"relu_output"`` (x' = relu(WᵀWx + b)), ``"relu_hidden"``
            (x' = relu(Wᵀ relu(Wx) + b)) or ``"abs"`` (untied: relu(W_out relu(W x) + b) trained on
            inputs uniform on [-1, 1] with target |x|).
        correlated_pairs: features (0,1), (2,3), ... are correlated pairs: one draw decides whether both are on.
        anticorrelated_pairs: the next pairs are anticorrelated: never on together (on with probability
            min(1, p_a + p_b), then exactly one member, chosen in proportion to p; so each member's density
            is its p while p_a + p_b <= 1).
    """

    n_features: int
    n_hidden: int
    n_instances: int = 1
    feature_probability: object = 1.0
    importance: object = 1.0
    kind: str = "relu_output"
    correlated_pairs: int = 0
    anticorrelated_pairs: int = 0

    def __post_init__(self):
        for name in ("n_features", "n_hidden", "n_instances"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("correlated_pairs", "anticorrelated_pairs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if 2 * (self.correlated_pairs + self.anticorrelated_pairs) > self.n_features:
            raise ValueError(
                "correlated_pairs, anticorrelated_pairs: 2*(correlated + anticorrelated) pairs "
                f"exceed n_features = {self.n_features}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        p = self.probabilities()
        if not bool(((p > 0) & (p <= 1)).all()):
            raise ValueError("feature_probability: every probability must lie in (0, 1]")
        imp = self.importances()
        if not bool(torch.isfinite(imp).all()) or bool((imp < 0).any()):
            raise ValueError("importance: every importance must be finite and >= 0")

    @property
    def tied(self) -> bool:
        return self.kind != "abs"

    def probabilities(self) -> torch.Tensor:
        """Feature probabilities, ``[I, n]`` float64."""
        return _broadcast(self.feature_probability, "feature_probability", self.n_instances, self.n_features)

    def importances(self) -> torch.Tensor:
        """Feature importances, ``[I, n]`` float64."""
        return _broadcast(self.importance, "importance", self.n_instances, self.n_features)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("feature_probability", "importance"):
            v = d[k]
            d[k] = v.tolist() if isinstance(v, torch.Tensor) else v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ToyModelConfig:
        return cls(**d)
