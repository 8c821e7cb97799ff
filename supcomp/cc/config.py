"""CCConfig: what a batch of compressed-computation models is (model kind, mixing matrix, sizes, density)."""

from __future__ import annotations

import dataclasses
import math

MODELS = ("residual", "mlp")
MIXINGS = ("embedding", "none", "symmetric", "asymmetric")


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


def _per_instance(name, value, n_instances):
    """A scalar or a sequence of ``n_instances`` numbers -> list of ``n_instances`` floats."""
    if hasattr(value, "tolist"):  # tensors, numpy arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != n_instances:
            raise ValueError(f"{name}: expected a number or {n_instances} numbers (one per instance), got {len(value)}")
        vals = value
    else:
        vals = [value] * n_instances
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected numbers, got {type(v).__name__}")
        out.append(float(v))
    return out


@dataclasses.dataclass
class CCConfig:
    """A batch of ``n_instances`` compressed-computation models trained side by side.

    Args:
        model: ``"residual"``: the APD residual-MLP model of Braun et al. (2025): a fixed random
            embedding ``W_E [n_features, d_embed]`` with unit rows, one bias-free MLP of ``d_mlp`` ReLU
            neurons reading from and writing to the residual stream, unembedding ``W_U = W_Eᵀ``; labels
            ``x + relu(x)``. ``"mlp"``: the control of Bhagat et al. (2025): a bias-free MLP
            ``n_features -> d_mlp -> n_features`` trained on labels ``relu(x) + M x``.
        mixing: the mixing matrix ``M [n_features, n_features]`` (zero diagonal):
            ``"embedding"``: ``W_E W_Eᵀ - I`` of a random unit-row ``W_E`` of width ``d_embed`` (the only
            choice for ``model="residual"``, where it is implied by the architecture); ``"none"``: M = 0;
            ``"symmetric"``: off-diagonal entries N(0, sigma²) with ``M = Mᵀ``; ``"asymmetric"``: iid
            N(0, sigma²) off-diagonal entries.
        sigma: the standard deviation of the Gaussian mixing matrices: a number or one per instance
            (a σ sweep in one run). Required for ``"symmetric"`` / ``"asymmetric"``, must be None otherwise.
        n_features: n, the number of input features (= output functions).
        d_embed: the residual width d_resid (``"residual"``), or the width of the embedding whose
            mixing matrix the ``"mlp"`` / ``"embedding"`` control uses.
        d_mlp: m, the number of ReLU neurons.
        feature_probability: p, the probability that a feature is on (value uniform on [-1, 1]); a
            number or one per instance. In (0, 1].
        n_instances: I, models trained at once. Instance i's embedding, mixing matrix, initial weights
            and batches depend only on (seed, i) and its own sigma / p, never on how many instances
            are batched with it; so ``n_instances=5`` with one sigma is five seeds.

    Raises:
        ValueError: an unknown ``model`` or ``mixing``, a mixing the model does not take, a non-positive
            size, too many instances, a missing, negative or non-finite ``sigma`` (or one given where
            the mixing has none), a probability outside (0, 1], or a per-instance list of the wrong length.
        TypeError: a per-instance value that is not a number.
    """

    model: str = "residual"
    mixing: str = "embedding"
    sigma: object = None
    n_features: int = 100
    d_embed: int = 1000
    d_mlp: int = 50
    feature_probability: object = 0.01
    n_instances: int = 1

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {self.model!r}")
        if self.mixing not in MIXINGS:
            raise ValueError(f"mixing: expected one of {MIXINGS}, got {self.mixing!r}")
        if self.model == "residual" and self.mixing != "embedding":
            raise ValueError(
                f"mixing: model='residual' implies mixing='embedding' (its mixing matrix is "
                f"W_E W_Eᵀ - I), got {self.mixing!r}; use model='mlp' for the other controls"
            )
        for name in ("n_features", "d_embed", "d_mlp", "n_instances"):
            _positive_int(name, getattr(self, name))
        if self.n_instances >= 2**20:
            raise ValueError(f"n_instances: at most 2^20 - 1 instances, got {self.n_instances}")
        if self.mixing in ("symmetric", "asymmetric"):
            if self.sigma is None:
                raise ValueError(f"sigma: mixing={self.mixing!r} needs sigma (the entries' standard deviation)")
            s = _per_instance("sigma", self.sigma, self.n_instances)
            if not all(math.isfinite(v) and v >= 0 for v in s):
                raise ValueError(f"sigma: every sigma must be finite and >= 0, got {self.sigma!r}")
        elif self.sigma is not None:
            raise ValueError(
                f"sigma: only mixing='symmetric' or 'asymmetric' takes a sigma; "
                f"mixing={self.mixing!r} got sigma={self.sigma!r}"
            )
        p = _per_instance("feature_probability", self.feature_probability, self.n_instances)
        if not all(0 < v <= 1 for v in p):
            raise ValueError(
                f"feature_probability: every probability must lie in (0, 1], got {self.feature_probability!r}"
            )

    def sigmas(self) -> list[float]:
        """Per-instance sigma (0.0 for the mixings without one), ``n_instances`` floats."""
        if self.sigma is None:
            return [0.0] * self.n_instances
        return _per_instance("sigma", self.sigma, self.n_instances)

    def probabilities(self) -> list[float]:
        """Per-instance feature probability, ``n_instances`` floats."""
        return _per_instance("feature_probability", self.feature_probability, self.n_instances)

    def label(self) -> str:
        """A short name for tables: ``residual``, ``mlp+embedding``, ``mlp+symmetric σ=0.033``, ..."""
        if self.model == "residual":
            return "residual (APD)"
        if self.mixing in ("symmetric", "asymmetric"):
            s = sorted(set(self.sigmas()))
            return f"mlp, {self.mixing} M σ=" + (f"{s[0]:g}" if len(s) == 1 else f"{s[0]:g}..{s[-1]:g}")
        return {"embedding": "mlp, M = W_E W_Eᵀ - I", "none": "mlp, M = 0"}[self.mixing]

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (per-instance values as lists); ``from_dict`` inverts it."""
        d = dataclasses.asdict(self)
        for k in ("sigma", "feature_probability"):
            if hasattr(d[k], "tolist"):
                d[k] = d[k].tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CCConfig:
        """The config of a ``to_dict`` dict; checked as the constructor checks (and raises) its arguments."""
        return cls(**d)
