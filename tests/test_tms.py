"""Toy models of superposition: the fused trainer against the einsum reference, the sampler, save / load."""
import contextlib
import math

import pytest
import torch

from supcomp.tms import KINDS, BatchSampler, ToyModel, ToyModelConfig, sample_batch, train
from supcomp.tms.train import (FusedAdamW, fused_loss_and_grad, fused_sampled_adamw_step, fused_sampled_loss_and_grad,
                               reference_loss_and_grad)


def small_config(kind, **kw):
    args = dict(n_features=37, n_hidden=6, n_instances=3, feature_probability=[1.0, 0.3, 0.05],
                importance=0.9 ** torch.arange(37.0), kind=kind, correlated_pairs=2, anticorrelated_pairs=3)
    args.update(kw)
    return ToyModelConfig(**args)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [6, 40])  # one register of hidden units, and several
@pytest.mark.parametrize("tiles", [0, 1, 2])  # automatic, sparse rows, dense tiles (see below)
def test_fused_step_matches_reference_float64(kind, m, tiles):
    cfg = small_config(kind, n_hidden=m)
    model = ToyModel(cfg, seed=1, dtype=torch.float64)
    with torch.no_grad():
        model.b.normal_(0, 0.1)
    batch = sample_batch(cfg, 50, seed=3, dtype=torch.float64)
    with dense_strategy(tiles):
        l_fused = fused_loss_and_grad(model, batch).double()
    g_fused = [p.grad.clone() for p in model.parameters()]
    l_ref = reference_loss_and_grad(model, batch).double()
    g_ref = [p.grad.clone() for p in model.parameters()]
    assert torch.allclose(l_fused, l_ref, rtol=1e-6)  # fused returns float32 losses
    for a, b in zip(g_fused, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(g.abs().sum() > 0 for g in g_ref)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,B", [(1, 1), (6, 50), (17, 23), (40, 9), (130, 16)])
def test_step_drawing_its_own_batch_equals_step_on_sampled_batch(kind, dtype, m, B):
    """tms_sample_step (what train() runs on CPU) draws its rows inside the step: bitwise the losses and
    gradients of tms_step on sampler.sample(step). Batches that are and are not a multiple of the 8-row
    tile, hidden sizes of 1 to 9 vectors, all kinds (abs signs the values). Row tiles forced: small models
    without pairs otherwise run in SIMD lanes (next test)."""
    cfg = small_config(kind, n_hidden=m)
    with lane_strategy(1):
        _check_sampled_step(cfg, dtype, B, torch.equal)


def _check_sampled_step(cfg, dtype, B, same):
    for seeds in (None, [5, 2 ** 62 + 3, 0]):
        model = ToyModel(cfg, seed=1, dtype=dtype, instance_seeds=seeds)
        with torch.no_grad():
            model.b.normal_(0, 0.1)
        sampler = BatchSampler(cfg, B, seed=3, dtype=dtype, instance_seeds=seeds)
        for step in (0, 7):
            la = fused_loss_and_grad(model, sampler.sample(step))
            ga = [p.grad.clone() for p in model.parameters()]
            lb = fused_sampled_loss_and_grad(model, sampler, step)
            gb = [p.grad.clone() for p in model.parameters()]
            assert same(la, lb), (seeds, step)
            for a, b in zip(ga, gb):
                assert same(a, b), (seeds, step)
    # and it is a different batch for a different step (the test above can fail)
    assert not torch.allclose(fused_sampled_loss_and_grad(model, sampler, 8), lb)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,B", [(1, 1), (6, 50), (17, 23), (40, 9)])
def test_dense_tiles_equal_sparse_rows(kind, dtype, m, B):
    """Instances with dense enough batches read in (and back) through dense 8-row tiles instead of
    their nonzeros: the same sums in the same order, so bit for bit the sparse rows' losses and
    gradients, for the step on a batch (tms_step) and the step drawing its own (tms_sample_step, which
    then draws straight into the dense tile). Densities 1, 0.3, 0.05 and feature pairs; the automatic
    choice (per instance, by density) mixes both in one call."""
    cfg = small_config(kind, n_hidden=m)
    model = ToyModel(cfg, seed=1, dtype=dtype)
    with torch.no_grad():
        model.b.normal_(0, 0.1)
    sampler = BatchSampler(cfg, B, seed=3, dtype=dtype)
    runs = {}
    with lane_strategy(1):
        for name, strategy in (("sparse", 1), ("dense", 2), ("auto", 0)):
            with dense_strategy(strategy):
                for fn in ("batch", "drawn"):
                    loss = (fused_loss_and_grad(model, sampler.sample(5)) if fn == "batch"
                            else fused_sampled_loss_and_grad(model, sampler, 5))
                    runs[name, fn] = [loss] + [p.grad.clone() for p in model.parameters()]
    ref = runs["sparse", "batch"]
    assert all(g.abs().sum() > 0 for g in ref[1:])
    for key, got in runs.items():
        assert all(torch.equal(a, b) for a, b in zip(ref, got)), key


@pytest.mark.parametrize("kind", KINDS)
def test_dense_tiles_match_reference_with_duplicate_indices(kind):
    """A hand-built CSR batch may repeat a feature in a row: both read-ins add the repeats up, as the
    einsum reference on batch.to_dense() does (the abs target is |sum|)."""
    from supcomp.tms.data import SparseBatch

    cfg = ToyModelConfig(11, 4, n_instances=2, kind=kind, feature_probability=0.5)
    model = ToyModel(cfg, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    B, per_row = 13, 5
    idx = torch.randint(0, 11, (2 * B, per_row), generator=g)
    idx[:, 1] = idx[:, 0]  # a repeat in every row
    batch = SparseBatch(offsets=torch.arange(0, 2 * B * per_row + 1, per_row), indices=idx.reshape(-1),
                        values=torch.rand(2 * B * per_row, generator=g, dtype=torch.float64) * 2 - 1,
                        n_instances=2, batch_size=B, n_features=11)
    lr = reference_loss_and_grad(model, batch).double()
    gr = [p.grad.clone() for p in model.parameters()]
    for strategy in (1, 2):
        with dense_strategy(strategy):
            lf = fused_loss_and_grad(model, batch).double()
        assert torch.allclose(lf, lr, rtol=1e-6), strategy
        for a, b in zip([p.grad for p in model.parameters()], gr):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-14), strategy


@contextlib.contextmanager
def _strategy(name, s):
    """Force one of the C++ step's layout switches (``_C.tms_<name>_strategy``) inside the block."""
    from supcomp import _C

    setter = getattr(_C, f"tms_{name}_strategy")
    old = setter(s)
    try:
        yield
    finally:
        setter(old)


def dense_strategy(s):
    return _strategy("dense", s)


def lane_strategy(s):
    return _strategy("lane", s)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m,B", [(2, 1, 1), (20, 5, 50), (37, 6, 23), (7, 40, 9), (20, 30, 17)])
def test_step_in_simd_lanes_matches_step_on_sampled_batch(kind, dtype, n, m, B):
    """Small models without feature pairs run with batch rows in SIMD lanes (LaneStep): the same batch,
    so the same losses and gradients up to summation order. Batches shorter than and not a multiple
    of the 8 / 16 lanes."""
    cfg = ToyModelConfig(n, m, n_instances=3, feature_probability=[1.0, 0.3, 0.05],
                         importance=0.9 ** torch.arange(float(n)), kind=kind)
    if dtype == torch.float64:
        close = lambda a, b: torch.allclose(a, b, rtol=1e-11, atol=1e-14)  # noqa: E731
    else:
        close = lambda a, b: torch.allclose(a, b, rtol=2e-5, atol=1e-6)  # noqa: E731
    with lane_strategy(2):
        _check_sampled_step(cfg, dtype, B, close)
    # automatic: n * m <= 512 without pairs runs in lanes (bitwise the forced result)
    model = ToyModel(cfg, seed=1, dtype=dtype)
    sampler = BatchSampler(cfg, B, seed=3, dtype=dtype)
    runs = {}
    for name, strategy in (("rows", 1), ("lanes", 2), ("auto", 0)):
        with lane_strategy(strategy):
            runs[name] = fused_sampled_loss_and_grad(model, sampler, 4), model.W.grad.clone()
    expected = runs["lanes" if n * m <= 512 else "rows"]
    assert all(torch.equal(a, b) for a, b in zip(expected, runs["auto"]))


def test_step_drawing_its_own_batch_rejects_bad_input():
    cfg = small_config("relu_output")
    model = ToyModel(cfg, seed=1)
    with pytest.raises(TypeError, match="sampler"):
        fused_sampled_loss_and_grad(model, BatchSampler(cfg, 8, dtype=torch.float64), 0)
    other = small_config("relu_output", n_features=36, importance=1.0)
    with pytest.raises(ValueError, match="p"):
        fused_sampled_loss_and_grad(model, BatchSampler(other, 8), 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m,pairs", [(37, 6, True), (20, 5, False), (45, 33, False)])  # rows, lanes, m > 32
def test_adamw_inside_the_step_matches_torch_adamw(kind, dtype, n, m, pairs):
    """tms_sample_adamw_step = tms_sample_step then torch.optim.AdamW: the same losses (bitwise: the
    update comes after them) and weights to float rounding after many steps, tied and untied models,
    row tiles and SIMD lanes."""
    cfg = small_config(kind, n_features=n, n_hidden=m, importance=0.9 ** torch.arange(float(n)),
                       correlated_pairs=2 if pairs else 0, anticorrelated_pairs=3 if pairs else 0)
    a, b = ToyModel(cfg, seed=1, dtype=dtype), ToyModel(cfg, seed=1, dtype=dtype)
    sampler = BatchSampler(cfg, 29, seed=3, dtype=dtype)
    kw = dict(lr=3e-2, weight_decay=0.05)  # large steps: differences in the update would show
    ta = torch.optim.AdamW(a.parameters(), betas=(0.8, 0.95), eps=1e-6, **kw)
    fb = FusedAdamW(b, betas=(0.8, 0.95), eps=1e-6, **kw)
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for step in range(12):
        la = fused_sampled_loss_and_grad(a, sampler, step)
        ta.step()
        lb = fused_sampled_adamw_step(b, sampler, step, fb)
        assert torch.allclose(la, lb, **tol), step
    assert fb.steps == 12
    moved = (b.W - ToyModel(cfg, seed=1, dtype=dtype).W).abs().max()
    assert moved > 0.1  # the update did run
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, **tol), (pa - pb).abs().max()
    assert torch.allclose(ta.state[a.W]["exp_avg_sq"], fb.exp_avg_sq_W, **tol)


def test_adamw_inside_the_step_rejects_bad_input():
    from supcomp import _C
    cfg = small_config("relu_output")
    model = ToyModel(cfg, seed=1)
    sampler = BatchSampler(cfg, 8)
    opt = FusedAdamW(model)
    with pytest.raises(ValueError, match="opt"):
        fused_sampled_adamw_step(ToyModel(small_config("relu_output", n_hidden=7), seed=1), sampler, 0, opt)
    for bad in (dict(lr=0.0), dict(betas=(0.9, 1.0)), dict(eps=0.0), dict(weight_decay=-1.0)):
        with pytest.raises(ValueError):
            FusedAdamW(model, **bad)

    def call(state, step=1, lr=1e-3, E=None):
        W = model.W.detach().numpy() if E is None else E
        return _C.tms_sample_adamw_step(0, 0, sampler.p.numpy(), 8, 2, 3, False, W, W, model.b.detach().numpy(),
                                        model.importance.numpy(), state, torch.empty(3, dtype=torch.float64).numpy(),
                                        False, True, False, lr, 0.9, 0.999, 1e-8, 0.01, step)
    good = opt.state_arrays()
    with pytest.raises(ValueError, match="state"):
        call(good[:5])
    with pytest.raises(ValueError, match=r"state\[1\]"):
        call(good[:1] + [good[1].astype("float64")] + good[2:])
    with pytest.raises(ValueError, match=r"state\[4\]"):
        call(good[:4] + [good[4][:, :5].copy()] + good[5:])
    with pytest.raises(ValueError, match="state"):  # tied model, separate D moments
        call(good[:2] + [good[0].copy(), good[1].copy()] + good[4:])
    with pytest.raises(ValueError, match="adam_step"):
        call(good, step=0)
    with pytest.raises(ValueError, match="lr"):
        call(good, lr=-1.0)
    before = model.W.detach().clone()
    call(good)  # and a good call runs and moves the weights
    assert not torch.equal(before, model.W.detach())


def test_train_fused_on_cpu_equals_its_step_loop():
    """train(backend="fused") on CPU is the loop of fused_sampled_adamw_step (same init, batches, update)."""
    cfg = small_config("relu_hidden")
    got = train(cfg, steps=6, batch_size=33, seed=4, progress=False, lr=1e-2)
    model = ToyModel(cfg, seed=4)
    sampler, opt = BatchSampler(cfg, 33, seed=4), FusedAdamW(model, lr=1e-2)
    losses = [fused_sampled_adamw_step(model, sampler, k, opt) for k in range(6)]
    assert torch.equal(got.W, model.W) and torch.equal(got.b, model.b)
    assert torch.equal(got.loss_history, torch.stack(losses))
    # and the dynamics experiment's loop, which also keeps snapshots of W
    from supcomp.tms.experiments import train_with_snapshots
    snap_model, taken, snaps, _ = train_with_snapshots(cfg, 6, [0, 3, 6], batch_size=33, seed=4, lr=1e-2,
                                                       progress=False)
    assert taken == [0, 3, 6] and torch.equal(snaps[-1], got.W) and torch.equal(snap_model.b, got.b)


def test_first_steps_agree_and_final_losses_statistically_equal():
    cfg = ToyModelConfig(20, 5, n_instances=8, feature_probability=20 ** -torch.linspace(0, 1, 8),
                         importance=0.7 ** torch.arange(20.0))
    a = train(cfg, steps=5, batch_size=256, seed=2, backend="fused", progress=False, dtype=torch.float64)
    b = train(cfg, steps=5, batch_size=256, seed=2, backend="reference", progress=False, dtype=torch.float64)
    assert torch.allclose(a.loss_history, b.loss_history, rtol=1e-6)
    assert torch.allclose(a.W, b.W, atol=1e-10) and torch.allclose(a.b, b.b, atol=1e-10)
    # float32, longer: the runs drift apart numerically but must end at the same loss level
    a = train(cfg, steps=250, batch_size=128, seed=2, backend="fused", progress=False)
    b = train(cfg, steps=250, batch_size=128, seed=2, backend="reference", progress=False)
    la, lb = a.final_loss(50), b.final_loss(50)
    assert (a.loss_history[-1] < a.loss_history[0]).all()
    assert torch.allclose(la, lb, rtol=0.1, atol=1e-4), (la, lb)


def test_sampler_statistics_and_determinism():
    cfg = ToyModelConfig(60, 5, n_instances=3, feature_probability=[0.5, 0.1, 0.01], correlated_pairs=4,
                         anticorrelated_pairs=4)
    batch = BatchSampler(cfg, 20000, seed=7).sample(3)
    x = batch.to_dense()
    on = x > 0
    for i, p in enumerate([0.5, 0.1, 0.01]):
        dens = on[i].double().mean(0)
        sd = math.sqrt(p * (1 - p) / 20000)
        assert (dens - p).abs().max() < 5 * sd + 1e-9, (i, dens)
        for q in range(4):  # correlated pairs: on together or not at all
            assert torch.equal(on[i, :, 2 * q], on[i, :, 2 * q + 1])
        for q in range(4, 8):  # anticorrelated pairs: never together
            assert not (on[i, :, 2 * q] & on[i, :, 2 * q + 1]).any()
    assert 0 <= float(batch.values.min()) and float(batch.values.max()) < 1
    # same seed and step: same batch, whatever the thread count; another step: another batch
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = BatchSampler(cfg, 20000, seed=7).sample(3)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(again.indices, batch.indices) and torch.equal(again.values, batch.values)
    assert not torch.equal(BatchSampler(cfg, 20000, seed=7).sample(4).indices[:1000], batch.indices[:1000])
    # ids ascending within a row; padded and dense views agree
    idx, val = batch.to_padded()
    from supcomp.sparse import padded_to_dense
    assert torch.equal(padded_to_dense(idx, val, 60), x)


def test_abs_kind_samples_signed_values_and_learns():
    cfg = ToyModelConfig(3, 6, n_instances=2, feature_probability=0.5, kind="abs")
    batch = sample_batch(cfg, 4000)
    assert float(batch.values.min()) < -0.9 and float(batch.values.max()) > 0.9
    model = train(cfg, steps=300, batch_size=256, progress=False, lr=1e-2)
    assert (model.loss_history[-20:].mean(0) < 0.5 * model.loss_history[:5].mean(0)).all()


def test_save_load_round_trip(tmp_path):
    cfg = small_config("relu_hidden", feature_probability=torch.tensor([0.5, 0.2, 0.05]))
    model = train(cfg, steps=3, batch_size=16, progress=False)
    model.save(str(tmp_path / "m"))
    back = ToyModel.load(str(tmp_path / "m"))
    assert back.config == cfg or back.config.to_dict() == cfg.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    assert torch.equal(back.loss_history, model.loss_history) and back.loss_steps == model.loss_steps
    assert not list(tmp_path.joinpath("m").glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("kwargs,exc,text", [
    (dict(feature_probability=0.0), ValueError, "feature_probability: every probability must lie in (0, 1]"),
    (dict(feature_probability=1.5), ValueError, "feature_probability"),
    (dict(importance=-1.0), ValueError, "importance: every importance must be finite and >= 0"),
    (dict(importance=[1.0, 2.0]), ValueError, "importance: expected"),
    (dict(feature_probability=[0.1, 0.2, 0.3]), ValueError, "feature_probability: expected"),
    (dict(kind="quadratic"), ValueError, "kind: expected one of"),
    (dict(n_hidden=0), ValueError, "n_hidden: expected a positive int"),
    (dict(correlated_pairs=3), ValueError, "correlated_pairs, anticorrelated_pairs"),
])
def test_bad_configs_rejected(kwargs, exc, text):
    args = dict(n_features=5, n_hidden=2, n_instances=2)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        ToyModelConfig(**args)
    assert text in str(info.value)


def test_wide_hidden_layer_allowed():
    cfg = ToyModelConfig(4, 10, feature_probability=0.5)  # n_hidden >= n_features is fine
    model = train(cfg, steps=2, batch_size=8, progress=False)
    assert model.W.shape == (1, 4, 10)


def test_train_argument_errors():
    cfg = ToyModelConfig(4, 2)
    with pytest.raises(ValueError, match="backend: expected one of"):
        train(cfg, steps=1, backend="jax")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        train(cfg, steps=1, batch_size=0)


@pytest.mark.parametrize("kw", [dict(), dict(correlated_pairs=2, anticorrelated_pairs=3), dict(kind="abs")])
def test_device_sampler_matches_cpp(kw):
    """The torch sampler (used on GPUs) draws the C++ sampler's batches bit for bit, sliced or not."""
    from supcomp.tms.data import BatchSampler
    from supcomp.tms.data import DeviceBatchSampler

    cfg = ToyModelConfig(23, 5, n_instances=4, feature_probability=torch.tensor([1.0, 0.3, 0.05, 0.5]), **kw)
    a = BatchSampler(cfg, 37, seed=123)
    for max_elements in (23 * 37, 1 << 25):  # one instance per slice / all at once
        b = DeviceBatchSampler(cfg, 37, seed=123, max_elements=max_elements)
        for step in (0, 5, 2 ** 40):
            xa, xb = a.sample(step).to_dense(), b.sample(step)
            assert torch.equal(xa, xb), (step, max_elements)
    assert not torch.equal(DeviceBatchSampler(cfg, 37, seed=124).sample(0), a.sample(0).to_dense())
    seeds = [5, 2 ** 62 + 11, 0, 7]  # per-instance seeds (sweeps)
    a = BatchSampler(cfg, 37, seed=123, instance_seeds=seeds)
    b = DeviceBatchSampler(cfg, 37, seed=123, instance_seeds=seeds)
    for step in (0, 3):
        assert torch.equal(a.sample(step).to_dense(), b.sample(step)), ("instance_seeds", step)


def test_train_off_cpu_path_uses_device_sampler(monkeypatch):
    """train()'s GPU branch (device sampler + dense einsum step), forced on the CPU: same weights as the reference."""
    import importlib

    T = importlib.import_module("supcomp.tms.train")
    cfg = ToyModelConfig(7, 3, n_instances=2, feature_probability=0.3)
    ref = T.train(cfg, steps=5, batch_size=16, seed=3, progress=False, backend="reference")
    calls = []

    class Spy(T.DeviceBatchSampler):
        def sample(self, step):
            calls.append(step)
            return super().sample(step)

    monkeypatch.setattr(T, "DeviceBatchSampler", Spy)
    monkeypatch.setattr(T, "_draws_on_device", lambda device: True)
    got = T.train(cfg, steps=5, batch_size=16, seed=3, progress=False)
    assert calls == [0, 1, 2, 3, 4]
    torch.testing.assert_close(got.W, ref.W, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(correlated_pairs=2, anticorrelated_pairs=3), dict(kind="abs")])
def test_onepass_sampler_equals_count_then_fill(kw, monkeypatch):
    """Small batches are drawn in one pass (tms_sample_onepass); the numbers equal the two-pass sampler's."""
    from supcomp.tms import data as D

    cfg = ToyModelConfig(23, 5, n_instances=4, feature_probability=torch.tensor([1.0, 0.3, 0.05, 0.5]), **kw)
    seeds = [3, 1, 4, 1]
    one = [D.BatchSampler(cfg, 37, seed=9, instance_seeds=s).sample(step) for s in (None, seeds) for step in (0, 6)]
    monkeypatch.setattr(D, "ONEPASS_MAX_ELEMENTS", 0)
    two = [D.BatchSampler(cfg, 37, seed=9, instance_seeds=s).sample(step) for s in (None, seeds) for step in (0, 6)]
    for a, b in zip(one, two):
        assert torch.equal(a.offsets, b.offsets) and torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
