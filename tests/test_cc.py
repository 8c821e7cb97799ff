"""supcomp.cc: config validation, fixed matrices, labels, naive baseline, fused vs reference, batching."""

import math

import pytest
import torch

from supcomp.cc import CCConfig, CCModel, loss_per_feature, naive_loss_per_feature, naive_model, sample_nonempty, train
from supcomp.cc.train import fused_loss_and_grad, make_sampler, reference_loss_and_grad
from supcomp.ops import use_backend

SMALL = dict(n_features=12, d_embed=40, d_mlp=5)


# ---------------------------------------------------------------- naive baseline
def test_naive_baseline_analytic():
    assert naive_loss_per_feature() == pytest.approx(1 / 12, abs=1e-15)
    # (n - m) / (6 n): features beyond the first m miss E[relu(x)^2] = 1/6 per unit density
    assert naive_loss_per_feature(10, 3) == pytest.approx(7 / 60, abs=1e-15)
    assert naive_loss_per_feature(10, 10) == 0.0
    M = torch.full((2, 4, 4), 0.1)
    extra = naive_loss_per_feature(4, 2, mixing=M) - naive_loss_per_feature(4, 2)
    assert torch.allclose(extra, torch.full((2,), 16 * 0.01 / 12, dtype=torch.float64))


def test_uniform_relu_second_moment_by_quadrature():
    # E[relu(u)^2] for u uniform on [-1, 1] is 1/6: midpoint rule on a fine grid
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 100_000 - 1
    assert torch.relu(u).pow(2).mean().item() == pytest.approx(1 / 6, rel=1e-8)


@pytest.mark.parametrize("p", [0.003, 0.05, 1.0])
def test_naive_model_monte_carlo_matches_analytic(p):
    model = naive_model(CCConfig(model="mlp", mixing="none"))
    lp = loss_per_feature(model, p, n_samples=60_000, seed=7)
    # relative standard error ~ 2.5/sqrt(N) = 1% at small p; 4% is about 4 standard errors
    assert lp.shape == (1,)
    assert lp.item() == pytest.approx(1 / 12, rel=0.04)


def test_naive_model_with_mixing_pays_for_the_mixed_labels():
    cfg = CCConfig(model="mlp", mixing="symmetric", sigma=[0.05, 0.1], n_instances=2)
    model = naive_model(cfg)
    lp = loss_per_feature(model, 0.02, n_samples=60_000, seed=3)
    expect = naive_loss_per_feature(100, 50, mixing=model.M)
    assert torch.allclose(lp, expect, rtol=0.05)
    assert (expect > 1 / 12).all()


def test_sample_nonempty_is_the_conditioned_distribution():
    n, p, N = 30, 0.02, 200_000
    g = torch.Generator().manual_seed(0)
    x = sample_nonempty(N, n, p, generator=g)
    on = x != 0
    assert bool(on.any(1).all())
    pne = 1 - (1 - p) ** n
    # every feature is on with probability p / P(nonempty), the first as often as the last
    freq = on.float().mean(0)
    sd = math.sqrt(p / pne * (1 - p / pne) / N)
    assert (freq - p / pne).abs().max().item() < 5 * sd
    # P(exactly one on | nonempty) = n p (1-p)^(n-1) / P(nonempty)
    one = (on.sum(1) == 1).float().mean().item()
    assert one == pytest.approx(n * p * (1 - p) ** (n - 1) / pne, abs=0.006)
    v = x[on]
    assert v.min().item() >= -1 and v.max().item() < 1 and abs(v.mean().item()) < 0.02


# ---------------------------------------------------------------- fixed matrices
def test_embedding_mixing_matrix():
    model = CCModel(CCConfig(n_instances=2))
    W_E, M = model.W_E.double(), model.M.double()
    assert W_E.shape == (2, 100, 1000) and M.shape == (2, 100, 100)
    assert torch.allclose(W_E.norm(dim=-1), torch.ones(2, 100, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(M, W_E @ W_E.transpose(1, 2) - torch.eye(100, dtype=torch.float64), atol=1e-6)
    assert torch.equal(M, M.transpose(1, 2)) and (M.diagonal(dim1=1, dim2=2) == 0).all()
    off = M[:, ~torch.eye(100, dtype=torch.bool)]
    assert off.std().item() == pytest.approx(1 / math.sqrt(1000), rel=0.05)
    assert not torch.allclose(M[0], M[1])  # instances are different seeds
    assert torch.equal(model.S, -model.M)  # the residual MLP must cancel the mixing
    # the mlp control of the same seed trains on exactly the residual model's mixing matrix
    mlp = CCModel(CCConfig(model="mlp", n_instances=2))
    assert torch.equal(mlp.M, model.M) and torch.equal(mlp.S, mlp.M) and mlp.W_E is None


@pytest.mark.parametrize("mixing", ["symmetric", "asymmetric"])
def test_gaussian_mixing_matrices(mixing):
    sig = [0.0, 0.02, 0.05]
    M = CCModel(CCConfig(model="mlp", mixing=mixing, sigma=sig, n_features=200, n_instances=3)).M.double()
    off = ~torch.eye(200, dtype=torch.bool)
    assert (M.diagonal(dim1=1, dim2=2) == 0).all()
    assert (M[0] == 0).all()
    for i in (1, 2):
        assert M[i][off].std().item() == pytest.approx(sig[i], rel=0.03)
        assert abs(M[i][off].mean().item()) < 0.05 * sig[i]
        corr = torch.corrcoef(torch.stack([M[i][off], M[i].T[off]]))[0, 1].item()
        if mixing == "symmetric":
            assert torch.equal(M[i], M[i].T)
        else:
            assert abs(corr) < 0.03
    assert (CCModel(CCConfig(model="mlp", mixing="none")).M == 0).all()


# ---------------------------------------------------------------- labels and forward
def test_labels_and_forward_by_hand():
    cfg = CCConfig(model="mlp", mixing="asymmetric", sigma=0.3, **SMALL)
    model = CCModel(cfg, dtype=torch.float64)
    x = torch.zeros(1, 2, 12, dtype=torch.float64)
    x[0, 0, 3] = -0.5
    x[0, 1, 7] = 0.25
    x[0, 1, 2] = -1.0
    M = model.M[0]
    want = torch.relu(x[0]) + torch.stack([M @ x[0, 0], M @ x[0, 1]])  # relu(x) + M x, per sample
    assert torch.allclose(model.labels(x)[0], want)
    res = CCModel(CCConfig(**SMALL), dtype=torch.float64)
    assert torch.allclose(res.labels(x), x + torch.relu(x))
    with torch.no_grad():  # with the MLP silenced the residual model outputs x W_E W_Eᵀ = x + M x
        res.W_out.zero_()
    assert torch.allclose(res(x)[0, 1], x[0, 1] + res.M[0] @ x[0, 1])


def test_shapes_and_instance_batching():
    cfg = CCConfig(model="mlp", mixing="symmetric", sigma=[0.01, 0.02, 0.03], n_instances=3, **SMALL)
    m3 = train(cfg, steps=15, batch_size=32, seed=5, progress=False, dtype=torch.float64, threads=1)
    assert m3.W_in.shape == (3, 12, 5) and m3.W_out.shape == (3, 12, 5)
    assert m3.loss_history.shape == (15, 3) and m3.loss_steps == list(range(15))
    one = CCConfig(model="mlp", mixing="symmetric", sigma=0.01, n_instances=1, **SMALL)
    m1 = train(one, steps=15, batch_size=32, seed=5, progress=False, dtype=torch.float64, threads=1)
    # instance 0 of the batched run is the single run: batching never changes an instance
    assert torch.allclose(m3.W_in[0], m1.W_in[0], atol=1e-12)
    assert torch.allclose(m3.W_out[0], m1.W_out[0], atol=1e-12)
    r = CCModel(CCConfig(n_instances=2, **SMALL))
    assert r.W_in.shape == (2, 40, 5) and r.W_out.shape == (2, 40, 5) and r.W_E.shape == (2, 12, 40)
    x = torch.zeros(2, 7, 12)
    assert r(x).shape == (2, 7, 12)
    assert loss_per_feature(r, 0.1, n_samples=100).shape == (2,)


# ---------------------------------------------------------------- fused (supcomp ops) vs reference
CASES = [
    CCConfig(n_instances=2, feature_probability=0.15, **SMALL),
    CCConfig(model="mlp", n_instances=1, feature_probability=0.1, **SMALL),
    CCConfig(
        model="mlp", mixing="asymmetric", sigma=[0.1, 0.3], n_instances=2, feature_probability=[0.05, 0.5], **SMALL
    ),
]


@pytest.mark.parametrize("backend", ["cpp", "triton", "reference"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_fused_matches_reference_loss_and_gradients(case, backend):
    cfg = CASES[case]
    model = CCModel(cfg, seed=3, dtype=torch.float64)
    batch = make_sampler(cfg, 19, seed=2, dtype=torch.float64).sample(4)
    assert (batch.counts() == 0).any()  # empty rows (all -1 padding) are part of the test
    ref = reference_loss_and_grad(model, batch)
    g_ref = model.W_in.grad.clone(), model.W_out.grad.clone()
    with use_backend(backend):
        got = fused_loss_and_grad(model, batch)
    assert torch.allclose(got, ref, rtol=1e-10, atol=0)
    assert torch.allclose(model.W_in.grad, g_ref[0], rtol=1e-9, atol=1e-13)
    assert torch.allclose(model.W_out.grad, g_ref[1], rtol=1e-9, atol=1e-13)
    assert g_ref[0].abs().max() > 0 and g_ref[1].abs().max() > 0


def test_fused_and_reference_training_agree_float32():
    cfg = CASES[0]
    a = train(cfg, steps=20, batch_size=64, seed=1, progress=False, threads=1)
    b = train(cfg, steps=20, batch_size=64, seed=1, progress=False, backend="reference", threads=1)
    assert torch.allclose(a.loss_history, b.loss_history, rtol=1e-3)
    assert torch.allclose(a.W_in, b.W_in, atol=1e-4) and torch.allclose(a.W_out, b.W_out, atol=1e-4)


def test_save_load_roundtrip(tmp_path):
    cfg = CCConfig(model="mlp", mixing="symmetric", sigma=[0.0, 0.2], n_instances=2, **SMALL)
    m = train(cfg, steps=3, batch_size=8, progress=False)
    m.save(str(tmp_path / "m"))
    m2 = CCModel.load(str(tmp_path / "m"))
    assert m2.config == cfg and m2.loss_steps == m.loss_steps
    for k in ("W_in", "W_out", "M", "S"):
        assert torch.equal(getattr(m2, k), getattr(m, k))
    assert torch.equal(m2.loss_history, m.loss_history)


# ---------------------------------------------------------------- invalid arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(model="transformer"), "model"),
        (dict(mixing="random"), "mixing"),
        (dict(model="residual", mixing="symmetric", sigma=0.1), "mixing"),
        (dict(model="mlp", mixing="symmetric"), "sigma"),
        (dict(model="mlp", mixing="none", sigma=0.1), "sigma"),
        (dict(model="mlp", mixing="asymmetric", sigma=-0.1), "sigma"),
        (dict(model="mlp", mixing="asymmetric", sigma=float("nan")), "sigma"),
        (dict(model="mlp", mixing="asymmetric", sigma=[0.1, 0.2]), "sigma"),
        (dict(n_features=0), "n_features"),
        (dict(d_mlp=2.5), "d_mlp"),
        (dict(d_embed=True), "d_embed"),
        (dict(n_instances=0), "n_instances"),
        (dict(feature_probability=0.0), "feature_probability"),
        (dict(feature_probability=1.5), "feature_probability"),
        (dict(feature_probability=[0.1, 0.2]), "feature_probability"),
    ],
)
def test_config_rejects(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        CCConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=-1), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(seed=-3), "seed"),
        (dict(backend="jax"), "backend"),
        (dict(lr=0.0), "lr"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(threads=0), "threads"),
    ],
)
def test_train_rejects(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train(CCConfig(model="mlp", **SMALL), progress=False, **{"steps": 1, **kwargs})


def test_other_rejections():
    with pytest.raises(TypeError, match="config"):
        train({"model": "mlp"}, steps=1, progress=False)
    m = CCModel(CCConfig(model="mlp", **SMALL))
    for p in (0, -0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="feature_probability"):
            loss_per_feature(m, p, n_samples=10)
    with pytest.raises(ValueError, match="n_samples"):
        loss_per_feature(m, 0.1, n_samples=0)
    with pytest.raises(TypeError, match="model"):
        loss_per_feature("model", 0.1)
    with pytest.raises(ValueError, match="model"):
        naive_model(CCConfig())
    with pytest.raises(ValueError, match="n_features"):
        naive_loss_per_feature(0, 1)
    with pytest.raises(ValueError, match="mixing"):
        naive_loss_per_feature(10, 5, mixing=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="loss_history"):
        m.final_loss()


# ---------------------------------------------------------------- the science on a tiny config
def test_training_beats_naive_only_with_a_mixing_matrix():
    """n=20 features, 10 neurons: the instances with M = 0 end at the naive L/p, the ones with a
    symmetric mixing matrix (σ = 0.07 ≈ 0.3/√n, the scale of the embedding's at n = 100) below it.
    Measured over seeds 0-3: M = 0 at 1.004-1.022 x naive, σ = 0.07 at 0.81-0.87 x naive."""
    n, m, p = 20, 10, 0.05
    cfg = CCConfig(
        model="mlp",
        mixing="symmetric",
        sigma=[0.0, 0.07, 0.07],
        n_features=n,
        d_mlp=m,
        feature_probability=p,
        n_instances=3,
    )
    model = train(cfg, steps=1200, batch_size=512, lr=1e-2, seed=0, progress=False, threads=1)
    ratio = loss_per_feature(model, p, n_samples=40_000) / naive_loss_per_feature(n, m)
    assert ratio[0] > 0.97, ratio
    assert (ratio[1:] < 0.93).all(), ratio
    assert model.loss_history[-50:].mean(0)[0] < model.loss_history[:50].mean(0)[0]  # it did train


def test_all_empty_batch():
    cfg = CCConfig(model="mlp", feature_probability=1e-9, **SMALL)
    model = CCModel(cfg, dtype=torch.float64)
    batch = make_sampler(cfg, 4, dtype=torch.float64).sample(0)
    assert batch.indices.numel() == 0
    assert fused_loss_and_grad(model, batch).item() == 0.0 and model.W_in.grad.abs().max().item() == 0.0
    assert reference_loss_and_grad(model, batch).item() == 0.0
