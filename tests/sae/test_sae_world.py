"""supcomp.sae worlds: the sampler's distribution against its definition and a dense reference."""

import math

import pytest
import torch

from supcomp.sae import World, WorldConfig, synthsaebench_16k
from supcomp.sae.features import mean_max_cosine, orthogonalize, random_directions, zipf_probabilities
from supcomp.sae.hierarchy import build_forest


def _rates(world, B, step=0):
    code = world.sample(B, step)
    idx = code.indices[code.indices >= 0]
    return torch.bincount(idx, minlength=world.n_features).double() / B, code


def test_independent_rates_match_probabilities():
    w = World(WorldConfig(n_features=40, d=8, p_max=0.5, p_min=0.01, seed=3))
    B = 40000
    rates, code = _rates(w, B)
    sd = (w.p * (1 - w.p) / B).sqrt()
    assert ((rates - w.p).abs() <= 5 * sd + 1e-9).all()
    # rows sorted, no duplicates, padding only at the end
    idx = code.indices
    valid = idx >= 0
    assert (valid[:, :-1] | ~valid[:, 1:]).all()
    both = valid[:, 1:] & valid[:, :-1]
    assert (idx[:, 1:][both] > idx[:, :-1][both]).all()


def test_seeded_and_reproducible():
    w = World(WorldConfig(n_features=100, d=16, seed=1))
    a, b = w.sample(64, 5), w.sample(64, 5)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    c = w.sample(64, 6)
    assert not (a.indices.shape == c.indices.shape and torch.equal(a.indices, c.indices))
    w2 = World(WorldConfig(n_features=100, d=16, seed=1))
    assert torch.equal(w2.W, w.W)


def test_activations_are_the_superposition_plus_bias():
    w = World(WorldConfig(n_features=50, d=12, bias_norm=0.7, magnitude="uniform", std_mean=0.3, seed=2))
    x, code = w.sample_activations(256, 0)
    dense = w.dense_features(code)
    ref = dense.double() @ w.W.double() + w.bias
    torch.testing.assert_close(x.double(), ref, atol=1e-5, rtol=1e-5)
    assert abs(float(w.bias.norm()) - 0.7) < 1e-9


@pytest.mark.parametrize("law", ["fixed", "normal", "folded_normal", "uniform"])
def test_magnitude_laws(law):
    w = World(
        WorldConfig(
            n_features=8, d=4, p_max=0.9, p_min=0.5, magnitude=law, mean_start=2.0, mean_end=2.0, std_mean=0.5, seed=0
        )
    )
    v = w.sample(20000, 0).values
    v = v[v > 0]
    assert v.numel() > 1000
    if law == "fixed":
        assert torch.allclose(v, torch.full_like(v, 2.0))
    elif law == "uniform":
        assert float(v.min()) >= 1.5 - 1e-6 and float(v.max()) <= 2.5 + 1e-6
        assert abs(float(v.mean()) - 2.0) < 0.02
    else:
        assert abs(float(v.mean()) - 2.0) < 0.03 and abs(float(v.std()) - 0.5) < 0.03


def _dense_copula(w, B, g):
    """SAELens's dense rule: fire where a.g + s e > t."""
    A, s, t = w.factor, w.s, w.t
    z = torch.randn(B, A.shape[1], generator=g, dtype=torch.float64) @ A.T
    z = z + s * torch.randn(B, A.shape[0], generator=g, dtype=torch.float64)
    return (z > t).double()


def test_correlated_firing_matches_dense_copula():
    cfg = WorldConfig(n_features=6, d=4, p_max=0.3, p_min=0.05, correlation_rank=2, correlation_scale=0.5, seed=4)
    w = World(cfg)
    B = 60000
    code = w.sample(B, 0)
    ours = w.dense_features(code).gt(0).double()
    ref = _dense_copula(w, B, torch.Generator().manual_seed(0))
    co_ours, co_ref = ours.T @ ours / B, ref.T @ ref / B
    # marginals and pairwise co-firing agree within sampling error (the kappa cap costs < 1e-3 here)
    assert (co_ours - co_ref).abs().max() < 0.012
    off = ~torch.eye(6, dtype=torch.bool)
    indep = torch.outer(w.p, w.p)
    assert (co_ref - indep)[off].abs().max() > 0.02  # the correlation is real, so the check has teeth


def test_hierarchy_rules_hold_on_every_sample():
    cfg = WorldConfig(n_features=40, d=8, p_max=0.9, p_min=0.3, roots=2, branching=3, depth=2, seed=5)
    w = World(cfg)
    dense = w.dense_features(w.sample(5000, 0)) > 0
    h = w.hierarchy
    for f in range(40):
        p = int(h.parent[f])
        if p >= 0:
            assert not (dense[:, f] & ~dense[:, p]).any()  # a child fires only with its parent
    for p in range(40):
        kids = (h.parent == p).nonzero().squeeze(1)
        if kids.numel() > 1:
            assert int(dense[:, kids].sum(1).max()) <= 1  # exclusive siblings
            assert bool(dense[:, kids].any())


def test_hierarchy_marginals_and_compensation():
    # a child of an always-present parent among exclusive siblings fires at p_c * P(no earlier winner...):
    # check gating alone (non-exclusive): P(child) = p_child * P(parent)
    cfg = WorldConfig(n_features=13, d=4, p_max=0.6, p_min=0.2, roots=1, branching=3, depth=2, exclusive=False)
    w = World(cfg)
    B = 50000
    rates, _ = _rates(w, B)
    for f in range(1, 13):
        chain, q = f, 1.0
        while chain >= 0:
            q *= float(w.p[chain])
            chain = int(w.hierarchy.parent[chain])
        assert abs(float(rates[f]) - q) < 5 * math.sqrt(q * (1 - q) / B) + 1e-3
    factors = build_forest(13, 1, 3, 2, exclusive=False).correction_factors(w.p)
    assert torch.allclose(factors[1:4], 1 / w.p[0].expand(3))


def test_forest_layout_and_errors():
    h = build_forest(30, roots=2, branching=2, depth=2)
    assert h.parent[:2].tolist() == [-1, -1] and h.parent[2:6].tolist() == [0, 0, 1, 1]
    assert h.level[6:14].eq(2).all() and h.level[14:].eq(0).all()
    with pytest.raises(ValueError, match="forest needs"):
        build_forest(10, roots=2, branching=2, depth=2)
    with pytest.raises(ValueError, match="magnitude"):
        WorldConfig(n_features=4, d=2, magnitude="cauchy")
    with pytest.raises(ValueError, match="batch_size"):
        World(WorldConfig(n_features=4, d=2)).sample(0)
    with pytest.raises(ValueError, match="directions"):
        World(WorldConfig(n_features=4, d=2), directions=torch.randn(5, 2))


def test_features_helpers():
    p = zipf_probabilities(100, 0.5, 0.4, 5e-4)
    assert abs(float(p[0]) - 0.4) < 1e-12 and abs(float(p[-1]) - 5e-4) < 1e-12 and (p[1:] <= p[:-1]).all()
    W = random_directions(200, 16, torch.Generator().manual_seed(0))
    before = mean_max_cosine(W)
    W2, reached = orthogonalize(W, before - 0.1)
    assert reached <= before - 0.1
    assert reached <= before - 0.1 + 1e-9 and abs(mean_max_cosine(W2) - reached) < 1e-5
    assert torch.allclose(W2.norm(dim=1), torch.ones(200, dtype=W2.dtype))


def test_synthsaebench_preset_parameters():
    c = synthsaebench_16k()
    assert (c.n_features, c.d, c.zipf_exponent, c.p_max, c.p_min) == (16384, 768, 0.5, 0.4, 5e-4)
    assert (c.roots, c.branching, c.depth, c.exclusive, c.correlation_rank) == (128, 4, 3, True, 25)
    small = World(synthsaebench_16k(n_features=2000, d=64, roots=8))  # same rules at a test size
    code = small.sample(512, 0)
    assert (code.indices >= 0).sum(1).float().mean() > 1
