"""ToyModelConfig: what a batch of toy models of superposition is (sizes, data, model kind, initialisation)."""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["ToyModelConfig", "KINDS", "INITS", "CONFIG_VERSION", "per_instance"]

KINDS = ("linear", "relu_output", "relu_hidden", "abs")
INITS = ("supcomp", "notebook", "arena")
CONFIG_VERSION = 2  # to_dict()'s "version"; see from_dict for how version-1 dicts are read


def _as_tensor(value, name):
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except Exception as e:  # lists of mixed types, strings, ...
        raise TypeError(f"{name}: expected a number, a list or a tensor, got {type(value).__name__}") from e


def _broadcast(value, name, I, n):
    """``value`` broadcast against ``[I, n]`` by torch's rules -> ``[I, n]`` float64.

    So a scalar, ``[n]`` or ``[1, n]`` is per feature, ``[I, 1]`` per instance, ``[I, n]`` per both; a
    1-D tensor is always per feature (as in torch and in ARENA's / the TMS notebook's code).
    """
    t = _as_tensor(value, name)
    if t.dim() > 2:
        raise ValueError(
            f"{name}: expected at most 2 dimensions (broadcast against [I, n] = [{I}, {n}]), got shape {list(t.shape)}"
        )
    try:
        return torch.broadcast_to(t, (I, n)).clone()
    except RuntimeError:
        hint = ""
        if t.dim() == 1 and t.shape[0] == I:
            hint = (
                f"; a 1-D value is one per feature (torch broadcasting): for one value per instance pass "
                f"shape [{I}, 1] (value[:, None] or supcomp.tms.per_instance(value))"
            )
        raise ValueError(
            f"{name}: expected a shape that broadcasts against [n_instances, n_features] = [{I}, {n}] "
            f"(a scalar, [n], [1, n], [I, 1] or [I, n]), got shape {list(t.shape)}{hint}"
        ) from None


def per_instance(values) -> torch.Tensor:
    """One value per instance, as the ``[I, 1]`` float64 tensor that broadcasts that way against ``[I, n]``.

    ``ToyModelConfig(..., feature_probability=per_instance(20 ** -torch.linspace(0, 1, I)))`` gives
    instance i the density ``values[i]`` for every feature; the same as ``values[:, None]``.

    Raises:
        ValueError: ``values`` is not one-dimensional. TypeError: it is not numeric.
    """
    t = _as_tensor(values, "values")
    if t.dim() != 1:
        raise ValueError(f"values: expected one value per instance (1-D), got shape {list(t.shape)}")
    return t[:, None].clone()


@dataclasses.dataclass
class ToyModelConfig:
    """A batch of ``n_instances`` independent toy models trained side by side.

    Per-instance and per-feature values follow torch broadcasting against ``[I, n]``, as ARENA's and
    the TMS notebook's code do: a scalar is shared, ``[n]`` or ``[1, n]`` is one value per feature,
    ``[I, 1]`` one per instance, ``[I, n]`` one per both. A 1-D value is therefore per feature; give one
    value per instance as ``[I, 1]`` (``values[:, None]`` or :func:`per_instance`).

    Args:
        n_features: n, the number of sparse input features.
        n_hidden: m, the hidden width (m >= n is allowed).
        n_instances: I, models trained at once (each with its own data probabilities / importances).
        feature_probability: 1 - S, the probability that a feature is nonzero, broadcast against
            ``[I, n]`` (e.g. ``(20 ** -torch.linspace(0, 1, I))[:, None]``: one density per instance).
            In (0, 1].
        importance: the loss weight of each feature, broadcast against ``[I, n]`` (e.g.
            ``0.9 ** torch.arange(n)``: one per feature). Non-negative.
        kind: ``"linear"`` (x' = WᵀWx + b), ``"relu_output"`` (x' = relu(WᵀWx + b)), ``"relu_hidden"``
            (x' = relu(Wᵀ relu(Wx) + b)) or ``"abs"`` (untied: relu(W_out relu(W x) + b) trained on
            inputs uniform on [-1, 1] with target |x|).
        correlated_pairs: features (0,1), (2,3), ... are correlated pairs: one draw decides whether both are on.
        anticorrelated_pairs: the next pairs are anticorrelated: never on together (on with probability
            min(1, p_a + p_b), then exactly one member, chosen in proportion to p; so each member's density
            is its p while p_a + p_b <= 1).
        init: how the weights start (``b = 0`` in all three; see :class:`supcomp.tms.ToyModel`):
            ``"supcomp"`` (default): W normal with std ``sqrt(2 / (n + m))``, per instance, so an instance's
            start does not depend on how many are batched with it; ``"notebook"``: the TMS notebook's
            ``nn.init.xavier_normal_`` on the whole ``[I, n, m]`` tensor (std ``sqrt(2 / (m (n + I)))``);
            ``"arena"``: ARENA's ``nn.init.xavier_normal_`` on its ``[I, m, n]`` W (std
            ``sqrt(2 / (n (m + I)))``), and for ``kind="abs"`` ARENA's ``kaiming_uniform_`` on W1
            ``[I, m, n]`` and W2 ``[I, n, m]``.

    Raises:
        ValueError: a size is not a positive int, a shape does not broadcast against ``[I, n]``, a
            probability lies outside (0, 1], an importance is negative or not finite, ``kind`` or
            ``init`` is unknown, or the pairs need more features than there are.
        TypeError: ``feature_probability`` or ``importance`` is not numeric.
    """

    n_features: int
    n_hidden: int
    n_instances: int = 1
    feature_probability: object = 1.0
    importance: object = 1.0
    kind: str = "relu_output"
    correlated_pairs: int = 0
    anticorrelated_pairs: int = 0
    init: str = "supcomp"

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
        if self.init not in INITS:
            raise ValueError(f"init: expected one of {INITS}, got {self.init!r}")
        p = self.probabilities()
        if not bool(((p > 0) & (p <= 1)).all()):
            raise ValueError("feature_probability: every probability must lie in (0, 1]")
        imp = self.importances()
        if not bool(torch.isfinite(imp).all()) or bool((imp < 0).any()):
            raise ValueError("importance: every importance must be finite and >= 0")

    @property
    def tied(self) -> bool:
        """Whether the read-out is W itself (every kind but ``"abs"``)."""
        return self.kind != "abs"

    def probabilities(self) -> torch.Tensor:
        """Feature probabilities, ``[I, n]`` float64."""
        return _broadcast(self.feature_probability, "feature_probability", self.n_instances, self.n_features)

    def importances(self) -> torch.Tensor:
        """Feature importances, ``[I, n]`` float64."""
        return _broadcast(self.importance, "importance", self.n_instances, self.n_features)

    def to_dict(self) -> dict:
        """A JSON-ready dict (tensors as nested lists), with ``"version": CONFIG_VERSION``."""
        d = dataclasses.asdict(self)
        for k in ("feature_probability", "importance"):
            v = d[k]
            d[k] = v.tolist() if isinstance(v, torch.Tensor) else v
        d["version"] = CONFIG_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ToyModelConfig:
        """The config of :meth:`to_dict`.

        A dict without ``"version"`` was written before shapes followed torch broadcasting (version 1):
        there a 1-D ``feature_probability`` meant one value per instance, so it is read as ``[I, 1]``
        (and a missing ``init`` as ``"supcomp"``, the only one then). Its other fields mean the same.

        Raises:
            ValueError: ``version`` is newer than this library's :data:`CONFIG_VERSION`.
        """
        d = dict(d)
        version = d.pop("version", 1)
        if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
            raise ValueError(f"version: expected an int from 1 to {CONFIG_VERSION}, got {version!r}")
        if version == 1:
            fp = d.get("feature_probability", 1.0)
            if isinstance(fp, (list, tuple)) and fp and not isinstance(fp[0], (list, tuple)):
                d["feature_probability"] = [[v] for v in fp]
        return cls(**d)
