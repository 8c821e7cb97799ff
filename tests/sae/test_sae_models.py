"""supcomp.sae SAEs and trainer: gradients against a dense reference, the decoder rules, AuxK, I/O, recovery."""

import json
import os

import pytest
import torch

from supcomp.sae import World, WorldConfig
from supcomp.sae.models import SAE, SAEConfig, geometric_median
from supcomp.sae.train import activation_source, collect_activations, train_sae


@pytest.fixture
def one_thread():
    """The small GEMMs here run faster on one thread than on two shared, oversubscribed cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dense_topk_loss(sae, x):
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    v, i = torch.topk(torch.relu(pre), sae.config.k, dim=1)
    f = torch.zeros_like(pre).scatter(1, i, v)
    recon = f @ sae.W_dec + sae.b_dec
    return (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def test_topk_loss_and_grads_match_dense_reference():
    cfg = SAEConfig(d=12, n=40, k=5, k_aux=0)
    a, b = SAE(cfg, seed=1, dtype=torch.float64), SAE(cfg, seed=1, dtype=torch.float64)
    with torch.no_grad():
        for s in (a, b):
            s.b_enc.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(0))
            s.b_dec.fill_(0.05)
    x = torch.randn(33, 12, dtype=torch.float64)
    out = a(x)
    out.loss.backward()
    ref = _dense_topk_loss(b, x)
    ref.backward()
    torch.testing.assert_close(out.loss, ref)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_decoder_projection_and_normalisation():
    sae = SAE(SAEConfig(d=8, n=20, k=3))
    sae(torch.randn(16, 8)).loss.backward()
    sae.project_decoder_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-6
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(20))
    assert torch.equal(SAE(SAEConfig(d=8, n=20, k=2), seed=2).W_enc, SAE(SAEConfig(d=8, n=20, k=2), seed=2).W_dec)


def test_auxk_reaches_dead_latents_and_dead_tracking():
    sae = SAE(SAEConfig(d=8, n=32, k=2, k_aux=4, dead_tokens=10))
    x = torch.randn(16, 8)
    out = sae(x)  # 16 tokens seen: every latent that did not fire is now dead
    fired = torch.zeros(32, dtype=torch.bool)
    fired[out.indices[out.indices >= 0]] = True
    assert torch.equal(sae.dead_mask, ~fired)
    out = sae(x)
    assert float(out.aux_loss) > 0
    out.loss.backward()
    dead_rows = sae.W_enc.grad[sae.dead_mask].abs().sum(1)
    assert int((dead_rows > 0).sum()) >= 1


def test_batchtopk_keeps_batch_k_and_threshold_at_eval():
    sae = SAE(SAEConfig(d=16, n=64, kind="batchtopk", k=3))
    with torch.no_grad():
        sae.b_enc.fill_(0.5)  # every pre-activation positive: exactly B*k kept
    x = torch.randn(10, 16)
    out = sae(x)
    assert int((out.indices >= 0).sum()) == 30
    assert float(sae.threshold) > 0
    sae.eval()
    idx, val = sae.encode(x)
    assert bool((val[idx >= 0] > sae.threshold).all())


def test_geometric_median_resists_outliers():
    x = torch.zeros(101, 3, dtype=torch.float64)
    x[:, 0] = torch.arange(101, dtype=torch.float64) - 50
    x[-1] = 1e6
    m = geometric_median(x)
    assert float(m.norm()) < 1.0 and float(x.mean(0).norm()) > 1e3


def test_save_load_roundtrip(tmp_path):
    sae = SAE(SAEConfig(d=8, n=24, kind="jumprelu"), seed=4)
    sae.save(str(tmp_path / "s"))
    back = SAE.load(str(tmp_path / "s"))
    assert back.config == sae.config
    for (n, p), q in zip(sae.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), n
    with open(tmp_path / "s" / "config.json", "w") as f:
        json.dump({"format": "other"}, f)
    with pytest.raises(ValueError, match="supcomp SAE"):
        SAE.load(str(tmp_path / "s"))


def test_activation_sources(tmp_path):
    data = torch.randn(100, 6)
    src = activation_source(data, 30, seed=1)
    rows = torch.cat([src(s) for s in range(3)])  # one epoch: 3 distinct batches of 30
    assert rows.shape == (90, 6) and torch.unique(rows, dim=0).shape[0] == 90
    torch.save(data, tmp_path / "a.pt")
    assert torch.equal(activation_source(str(tmp_path / "a.pt"), 30, seed=1)(2), src(2))
    from safetensors.torch import save_file

    save_file({"activations": data}, str(tmp_path / "a.safetensors"))
    assert torch.equal(activation_source(str(tmp_path / "a.safetensors"), 30, seed=1)(0), src(0))
    with pytest.raises(ValueError, match="batch_size"):
        activation_source(data, 101)
    with pytest.raises(ValueError, match="file"):
        activation_source(str(tmp_path / "a.txt"), 10)


def test_collect_activations_from_a_module_hook():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    inputs = [torch.randn(2, 7, 4), torch.randn(3, 4)]
    acts = collect_activations(model, "1", inputs)
    ref = torch.cat([torch.relu(model[0](i)).reshape(-1, 5) for i in inputs])
    torch.testing.assert_close(acts, ref)
    assert not model[1]._forward_hooks
    with pytest.raises(ValueError, match="submodule"):
        collect_activations(model, "nope", inputs)


def test_trainer_callback_checkpoint_and_errors(tmp_path, one_thread):
    calls = []
    w = World(WorldConfig(n_features=32, d=8, seed=0))
    sae = train_sae(
        w,
        SAEConfig(d=8, n=32, k=2),
        steps=7,
        batch_size=64,
        log_every=3,
        progress=False,
        callback=lambda s, l, m: calls.append((s, l, m)),
        checkpoint=str(tmp_path / "ck"),
    )
    assert [c[0] for c in calls] == [0, 3, 6]
    assert all(isinstance(c[1], float) and all(isinstance(v, float) for v in c[2].values()) for c in calls)
    assert os.path.exists(tmp_path / "ck" / "sae.safetensors") and not sae.training
    with pytest.raises(ValueError, match="exactly one"):
        train_sae(w, steps=1)


@pytest.mark.parametrize("kind", ["relu", "jumprelu", "batchtopk"])
def test_other_kinds_train(kind, one_thread):
    w = World(WorldConfig(n_features=64, d=16, p_max=0.1, p_min=0.02, seed=1))
    sae = train_sae(
        w,
        SAEConfig(d=16, n=64, kind=kind, k=3, l1_coef=1e-3, l0_coef=1e-3),
        steps=60,
        batch_size=256,
        lr=3e-3,
        log_every=59,
        progress=False,
    )
    assert sae.history[-1][2]["fvu"] < sae.history[0][2]["fvu"]


def test_topk_recovers_the_features_of_a_small_world(one_thread):
    """N = 512 features in D = 64 (8x superposition), no hierarchy: k = the true L0 recovers >= 90% at cos >= 0.9."""
    from supcomp.sae.grade import grade

    w = World(WorldConfig(n_features=512, d=64, p_max=0.02, p_min=0.005, seed=0))
    k = round(float(w.p.sum()))
    sae = train_sae(
        w,
        SAEConfig(d=64, n=512, k=k, k_aux=64, dead_tokens=50_000),
        steps=400,
        batch_size=1024,
        lr=3e-3,
        log_every=100,
        progress=False,
    )
    g = grade(sae, w, batches=2, batch_size=4096)
    assert g.recovered_fraction >= 0.9, g.summary()


@pytest.mark.parametrize("kind", ["topk", "relu", "jumprelu", "batchtopk"])
def test_saelens_format_roundtrip(kind, tmp_path):
    from safetensors.torch import load_file

    from supcomp.sae import load_saelens, save_saelens

    sae = SAE(SAEConfig(d=8, n=16, k=3, kind=kind), seed=1)
    with torch.no_grad():
        sae.b_enc.uniform_(-0.1, 0.1)
        sae.b_dec.normal_()
        sae.threshold.fill_(0.05)
    save_saelens(sae, str(tmp_path))
    cfg = json.load(open(tmp_path / "cfg.json"))
    t = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert (cfg["d_in"], cfg["d_sae"]) == (8, 16)
    assert t["W_enc"].shape == (8, 16) and t["W_dec"].shape == (16, 8)
    back = load_saelens(str(tmp_path))
    x = torch.randn(20, 8)
    if kind == "batchtopk":  # stored as JumpReLU with the batch threshold: same code as eval-mode BatchTopK
        sae.eval()
        assert cfg["architecture"] == "jumprelu" and back.config.kind == "jumprelu"
        ref = sae.decode(sae.encode(x))
    else:
        ref = sae.decode(sae.encode(x))
    torch.testing.assert_close(back.decode(back.encode(x)), ref)
