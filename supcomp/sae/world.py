"""Synthetic worlds with known features: the ground truth an SAE is graded against.

A world holds N unit feature directions ``W [N, D]``, per-feature firing probabilities, magnitude
laws, an optional low-rank Gaussian-copula correlation and an optional hierarchy, and draws batches
of sparse feature codes ``(indices [B, k], values [B, k])`` and their activations
``x = sparse_encode(indices, values, W) + bias (+ noise)`` without ever building a ``[B, N]`` tensor.

The sampler (what distribution, exactly):

1. **Candidates by count-then-place.** For each top-level feature (a root, or outside the
   hierarchy) a Poisson count with mean ``B * lam_i``, ``lam_i = -log(1 - q_i)``, placed on uniformly
   drawn samples; duplicates merge. Each (sample, feature) cell is then a candidate independently
   with probability exactly ``1 - exp(-lam_i) = q_i``: independent Bernoulli firing at a cost
   proportional to the number of firings, not to ``B * N``. A child feature is drawn (Bernoulli
   ``q_i``) only in the samples where its parent is active: elsewhere gating removes it anyway.
2. **Correlation (Gaussian copula, rank r).** As in SAELens, feature i fires when
   ``z_i = a_i . g + s_i e_i > t_i`` with ``g ~ N(0, I_r)`` per sample, ``e_i ~ N(0, 1)``,
   ``s_i = sqrt(1 - |a_i|^2)``, ``t_i = Phi^-1(1 - p_i)``. Given ``g`` the features are independent
   with ``p_i(g) = P(Z > (t_i - a_i . g) / s_i)``; the sampler draws candidates with
   ``q_i = P(Z > (t_i - kappa |a_i|) / s_i)`` and keeps each with probability ``p_i(g) / q_i``
   (thinning). This is exact wherever ``a_i . g <= kappa |a_i|``; on the rest (probability
   ``P(Z > kappa)``, 1.3e-3 at the default ``kappa = 3``) the firing probability is capped at ``q_i``.
   That cap is the one place the distribution differs from SAELens's dense copula.
3. **Hierarchy** (``supcomp.sae.hierarchy``): parent gating and mutual exclusion, level by level,
   on the active set; identical in distribution to SAELens's modifier.
4. **Magnitudes** per active entry: ``fixed`` (the feature's mean), ``normal`` (``relu(mean + std Z)``,
   SAELens's rule), ``folded_normal`` (``|mean + std Z|``) or ``uniform`` on ``[mean - std, mean + std]``
   clipped at 0; entries whose magnitude is 0 are dropped. With ``scale_children_by_parent`` a child's
   value is multiplied by its parent's value over the parent's mean.

Batches are reproducible: ``sample(B, step)`` seeds its own generator from ``(seed, step)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from ..ops import sparse_encode
from . import features as F
from .hierarchy import build_forest, children_csr, exclusive_winners, expand_children, scale_by_parent

__all__ = ["WorldConfig", "World", "WorldSample", "synthsaebench_16k"]


class WorldSample(NamedTuple):
    """A batch of true feature codes: ``indices [B, k]`` int64 (-1: empty), ``values [B, k]`` float32 (0: empty)."""

    indices: torch.Tensor
    values: torch.Tensor


MAGNITUDES = ("fixed", "normal", "folded_normal", "uniform")


@dataclass
class WorldConfig:
    """Parameters of a synthetic world (every field is JSON-serialisable).

    Sizes: ``n_features`` N, ``d`` D. Firing: Zipf (``zipf_exponent``, ``p_max``, ``p_min``) unless
    probabilities are given to ``World``. Magnitudes: ``magnitude`` law (one of ``fixed``, ``normal``,
    ``folded_normal``, ``uniform``), per-feature mean linear from ``mean_start`` to ``mean_end``, per-
    feature std ``|std_mean + std_spread Z|`` (drawn once). Correlation: ``correlation_rank`` r (0: off),
    factor entries ``N(0, correlation_scale^2)``, thinning cap ``kappa``. Hierarchy: ``roots`` trees
    (0: off) with ``branching`` children, ``depth`` levels, ``exclusive`` siblings,
    ``compensate`` (raise children's probabilities), ``scale_children_by_parent``. Geometry:
    ``target_mean_max_cos`` (None: random directions). ``bias_norm``: a random bias of that norm is
    added to every activation. ``noise_std``: Gaussian noise on the activations. ``seed``: everything.
    """

    n_features: int
    d: int
    zipf_exponent: float = 0.5
    p_max: float = 0.4
    p_min: float = 5e-4
    magnitude: str = "fixed"
    mean_start: float = 1.0
    mean_end: float = 1.0
    std_mean: float = 0.0
    std_spread: float = 0.0
    correlation_rank: int = 0
    correlation_scale: float = 0.1
    kappa: float = 3.0
    roots: int = 0
    branching: int = 4
    depth: int = 3
    exclusive: bool = True
    compensate: bool = False
    scale_children_by_parent: bool = False
    target_mean_max_cos: float | None = None
    bias_norm: float = 0.0
    noise_std: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("n_features", "d"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude: expected one of {MAGNITUDES}, got {self.magnitude!r}")
        if not isinstance(self.correlation_rank, int) or self.correlation_rank < 0:
            raise ValueError(f"correlation_rank: expected an int >= 0, got {self.correlation_rank!r}")
        if self.correlation_scale < 0 or not self.kappa > 0:
            raise ValueError("correlation_scale: expected >= 0, and kappa > 0")
        if self.noise_std < 0 or self.bias_norm < 0:
            raise ValueError("noise_std, bias_norm: expected >= 0")

    def to_dict(self) -> dict:
        """The config as a JSON-serialisable dict of its fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldConfig:
        """The config from a dict written by :meth:`to_dict`.

        Raises:
            TypeError: an unknown field.
            ValueError: a field out of range (as the constructor checks).
        """
        return cls(**d)


def synthsaebench_16k(**overrides) -> WorldConfig:
    """The SynthSAEBench-16k configuration (its parameters, not its weights).

    16,384 features in 768 dimensions; Zipf exponent 0.5 from p = 0.4 to 5e-4; 128 roots, branching 4,
    depth 3, mutually exclusive children, compensated probabilities, children scaled by their parent;
    rank-25 correlation at scale 0.1; mean magnitudes linear 5 -> 4, stds folded normal (0.5, 0.5);
    bias of norm 0.5. SAELens orthogonalises its directions (100 Adam steps, lr 3e-4); random
    directions at this size already have a mean max cosine of about 0.15, so the default keeps
    them random (pass ``target_mean_max_cos`` to push them further apart).
    """
    cfg = dict(
        n_features=16384,
        d=768,
        zipf_exponent=0.5,
        p_max=0.4,
        p_min=5e-4,
        magnitude="normal",
        mean_start=5.0,
        mean_end=4.0,
        std_mean=0.5,
        std_spread=0.5,
        correlation_rank=25,
        correlation_scale=0.1,
        roots=128,
        branching=4,
        depth=3,
        exclusive=True,
        compensate=True,
        scale_children_by_parent=True,
        bias_norm=0.5,
        seed=42,
    )
    cfg.update(overrides)
    return WorldConfig(**cfg)


class World:
    """A synthetic world: true directions ``W [N, D]`` (unit rows) and a sparse batch sampler.

    Args:
        config: a :class:`WorldConfig`.
        directions: optional ``[N, D]`` float tensor used (normalised) instead of random directions
            (see ``supcomp.sae.features`` for toy-model and U-AND sources).
        probabilities: optional ``[N]`` base firing probabilities in (0, 1] instead of the Zipf law.
        device, dtype: where the world lives and the float dtype of ``W`` and the activations.

    Attributes: ``W``, ``p`` (base probabilities), ``p_fire`` (after compensation, the candidates'
    target marginal), ``mean_mag``, ``std_mag``, ``bias [D]``, ``hierarchy`` (or None), ``factor [N, r]``.

    Raises:
        ValueError: a shape or probability out of range.
    """

    def __init__(self, config: WorldConfig, directions=None, probabilities=None, device="cpu", dtype=torch.float32):
        c = config
        self.config, self.device, self.dtype = c, torch.device(device), dtype
        N, D = c.n_features, c.d
        g = torch.Generator().manual_seed(int(c.seed))
        if directions is None:
            W = F.random_directions(N, D, g, dtype=torch.float64)
        else:
            W = F.features_from_tensor(directions)
            if tuple(W.shape) != (N, D):
                raise ValueError(f"directions: expected shape [{N}, {D}], got {tuple(W.shape)}")
        if c.target_mean_max_cos is not None:
            W, _ = F.orthogonalize(W, c.target_mean_max_cos)
        self.W = W.to(device=self.device, dtype=dtype).contiguous()
        if probabilities is None:
            p = F.zipf_probabilities(N, c.zipf_exponent, c.p_max, c.p_min)
        else:
            p = torch.as_tensor(probabilities, dtype=torch.float64).cpu()
            if p.shape != (N,) or not bool(((p > 0) & (p <= 1)).all()):
                raise ValueError(f"probabilities: expected [{N}] values in (0, 1]")
        self.p = p
        self.hierarchy = None
        if c.roots > 0:
            self.hierarchy = build_forest(N, c.roots, c.branching, c.depth, c.exclusive)
            if c.compensate:
                p = p * self.hierarchy.correction_factors(p)
        self.p_fire = p.clamp(max=1.0)
        self.mean_mag = torch.linspace(c.mean_start, c.mean_end, N, dtype=torch.float64) if N > 1 else None
        if self.mean_mag is None:
            self.mean_mag = torch.tensor([c.mean_start], dtype=torch.float64)
        self.std_mag = (c.std_mean + c.std_spread * torch.randn(N, generator=g, dtype=torch.float64)).abs()
        self.bias = torch.zeros(D, dtype=torch.float64)
        if c.bias_norm > 0:
            b = torch.randn(D, generator=g, dtype=torch.float64)
            self.bias = b / b.norm() * c.bias_norm
        r = c.correlation_rank
        self.factor = None
        q = self.p_fire
        if r > 0:
            A = torch.randn(N, r, generator=g, dtype=torch.float64) * c.correlation_scale
            n2 = (A * A).sum(1, keepdim=True)
            A = torch.where(n2 > 0.99, A * (0.99 / n2).sqrt(), A)  # keep s_i >= 0.1, as SAELens's minimum diagonal
            self.factor = A
            self.s = (1 - (A * A).sum(1)).sqrt()
            self.t = F.normal_isf(self.p_fire.clamp(max=1 - 1e-12))
            q = F.normal_sf((self.t - c.kappa * A.norm(dim=1)) / self.s)
        self.q = q.clamp(max=1 - 1e-6)
        self._to_device()

    def _to_device(self):
        dev, dt = self.device, self.dtype
        lam = -torch.log1p(-self.q)
        if self.hierarchy is not None:  # children are drawn under their active parents only
            lam = torch.where(self.hierarchy.level > 0, torch.zeros_like(lam), lam)
            self._ptr, self._child = (t.to(dev) for t in children_csr(self.hierarchy))
        self._lam_top = lam.to(dev, torch.float32)
        self._q32 = self.q.to(dev, torch.float32)
        self._mean = self.mean_mag.to(dev, dt)
        self._std = self.std_mag.to(dev, dt)
        self._bias = self.bias.to(dev, dt)
        self._h = self.hierarchy.to(dev) if self.hierarchy is not None else None
        if self.factor is not None:
            self._A = self.factor.to(dev, torch.float32)
            self._s = self.s.to(dev, torch.float32)
            self._t = self.t.to(dev, torch.float32)
            top = torch.ones(self.n_features, dtype=torch.bool) if self.hierarchy is None else self.hierarchy.level == 0
            top_ids = top.nonzero().squeeze(1)
            self._A_top = self._A[top_ids.to(dev)].contiguous()
            pos = torch.full((self.n_features,), -1, dtype=torch.int64)
            pos[top_ids] = torch.arange(top_ids.numel())
            self._top_pos = pos.to(dev)

    @property
    def n_features(self) -> int:
        """N, the number of true features (rows of the directions ``W [N, D]``)."""
        return self.config.n_features

    def expected_l0(self) -> float:
        """Mean number of candidates per sample before correlation and hierarchy (sum of ``q``)."""
        return float(self.q.sum())

    def generator(self, step: int) -> torch.Generator:
        """The generator of batch ``step``: seeded from (world seed, step), on the world's device."""
        g = torch.Generator(device=self.device)
        g.manual_seed((int(self.config.seed) * 1_000_003 + int(step) * 7919 + 17) % (2**63 - 1))
        return g

    @torch.no_grad()
    def sample(self, batch_size: int, step: int = 0) -> WorldSample:
        """Draw ``batch_size`` true feature codes: ``WorldSample(indices [B, k], values [B, k])``.

        ``k`` is the largest number of active features in a sample of this batch; shorter rows are
        padded with index -1, value 0. Entries of a row are in increasing feature order.

        Raises:
            ValueError: ``batch_size`` is not a positive int.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        B, N, dev = batch_size, self.n_features, self.device
        g = self.generator(step)
        counts = torch.poisson(self._lam_top * B, generator=g).long()
        feat = torch.repeat_interleave(torch.arange(N, device=dev), counts)
        samp = torch.randint(0, B, (feat.numel(),), generator=g, device=dev)
        keys = torch.unique(samp * N + feat)  # sorted, sample-major
        gl = torch.randn(B, self._A.shape[1], generator=g, device=dev) if self.factor is not None else None
        keys = keys[self._thin_top(keys, gl, g)]
        if self._h is not None:
            parts, active = [keys], keys
            for _ in range(self._h.depth):
                b, f, par, seg = expand_children(active // N, active % N, self._ptr, self._child)
                ok = torch.rand(f.numel(), generator=g, device=dev) < self._q32[f]
                ok[ok.clone()] = self._thin(b[ok], f[ok], gl, g)
                b, f, par, seg = b[ok], f[ok], par[ok], seg[ok]
                ex = self._h.exclusive[f]
                win = ~ex
                win[ex] = exclusive_winners(seg[ex], active.numel(), g)
                active = b[win] * N + f[win]
                parts.append(active)
            keys = torch.sort(torch.cat(parts)).values
        f = keys % N
        values = self._magnitudes(f, g)
        if self._h is not None and self.config.scale_children_by_parent and keys.numel():
            values = scale_by_parent(keys, values, N, self._h, self._mean)
        nz = values > 0
        keys, values = keys[nz], values[nz]
        return self._pack(keys, values, B)

    def _thin_top(self, keys, gl, g, rows: int = 256) -> torch.Tensor:
        """``_thin`` for the top-level candidates (sorted keys, many per sample): ``a_i . g_b`` comes from a
        GEMM over ``rows`` samples at a time against the top-level factors (``[rows, n_top]`` at most), not
        from gathering an ``[M, r]`` pair of rows per candidate."""
        if gl is None or keys.numel() == 0:
            return torch.ones_like(keys, dtype=torch.bool)
        N, B = self.n_features, gl.shape[0]
        b, f = keys // N, keys % N
        fl = self._top_pos[f]
        u = torch.empty(keys.numel(), dtype=gl.dtype, device=keys.device)
        bounds = torch.searchsorted(b, torch.arange(0, B + rows, rows, device=keys.device).clamp(max=B)).tolist()
        for c, r0 in enumerate(range(0, B, rows)):
            i0, i1 = bounds[c], bounds[c + 1]
            if i1 > i0:
                U = gl[r0 : r0 + rows] @ self._A_top.T
                u[i0:i1] = U[b[i0:i1] - r0, fl[i0:i1]]
        p = F.normal_sf((self._t[f] - u) / self._s[f])
        return torch.rand(keys.numel(), generator=g, device=self.device) * self._q32[f] < p

    def _thin(self, b, f, gl, g) -> torch.Tensor:
        """Keep-mask of candidates drawn at ``q``: each kept with ``p_i(g_b) / q_i`` (all kept without correlation)."""
        if gl is None or f.numel() == 0:
            return torch.ones_like(f, dtype=torch.bool)
        u = (gl[b] * self._A[f]).sum(1)
        p = F.normal_sf((self._t[f] - u) / self._s[f])
        return torch.rand(f.numel(), generator=g, device=self.device) * self._q32[f] < p

    def _magnitudes(self, f: torch.Tensor, g) -> torch.Tensor:
        law, mean, std = self.config.magnitude, self._mean[f], self._std[f]
        if law == "fixed":
            return mean.clone()
        if law == "uniform":
            u = torch.rand(f.numel(), generator=g, device=self.device, dtype=self.dtype)
            return (mean + std * (2 * u - 1)).clamp(min=0)
        z = torch.randn(f.numel(), generator=g, device=self.device, dtype=self.dtype)
        return (mean + std * z).relu() if law == "normal" else (mean + std * z).abs()

    def _pack(self, keys, values, B) -> WorldSample:
        N, dev = self.n_features, self.device
        b, f = keys // N, keys % N
        per = torch.bincount(b, minlength=B)
        k = int(per.max()) if keys.numel() else 0
        start = torch.cumsum(per, 0) - per
        slot = torch.arange(keys.numel(), device=dev) - start[b]
        idx = torch.full((B, k), -1, dtype=torch.int64, device=dev)
        val = torch.zeros(B, k, dtype=self.dtype, device=dev)
        idx[b, slot] = f
        val[b, slot] = values.to(self.dtype)
        return WorldSample(idx, val)

    def activations(self, code: WorldSample, step: int | None = None) -> torch.Tensor:
        """``x [B, D] = sparse_encode(indices, values, W) + bias`` plus noise (seeded by ``step``) if configured."""
        x = sparse_encode(code.indices, code.values, self.W) + self._bias
        if self.config.noise_std > 0:
            g = self.generator(-1 - (step or 0))
            x = x + self.config.noise_std * torch.randn(x.shape, generator=g, device=self.device, dtype=self.dtype)
        return x

    def sample_activations(self, batch_size: int, step: int = 0):
        """``(x [B, D], code)``: a batch of activations and the true codes behind them."""
        code = self.sample(batch_size, step)
        return self.activations(code, step), code

    def dense_features(self, code: WorldSample) -> torch.Tensor:
        """The codes as a dense ``[B, N]`` tensor (small worlds, tests and grading only)."""
        B = code.indices.shape[0]
        out = torch.zeros(B, self.n_features, dtype=code.values.dtype, device=code.values.device)
        m = code.indices >= 0
        rows = torch.arange(B, device=out.device)[:, None].expand_as(code.indices)
        out.index_put_((rows[m], code.indices[m]), code.values[m], accumulate=True)
        return out

    def firing_rates(self, batch_size: int = 65536, steps: int = 1) -> torch.Tensor:
        """Empirical per-feature firing frequency ``[N]`` over ``steps`` batches (seeds 10**6 + step)."""
        hits = torch.zeros(self.n_features, dtype=torch.float64, device=self.device)
        for s in range(steps):
            idx = self.sample(batch_size, 10**6 + s).indices
            idx = idx[idx >= 0]
            hits += torch.bincount(idx, minlength=self.n_features).double()
        return (hits / (batch_size * steps)).cpu()
