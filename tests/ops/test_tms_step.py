"""tms_step: the fused toy-model step (C++: on a batch, drawing its own batch, with AdamW inside) against the
einsum reference; its layout switches (dense tiles, SIMD lanes) as per-call arguments; the Triton composition
(supcomp.kernels.tms_step) against the reference in float64."""

import pytest
import torch
from utils import TRITON_DEVICE, triton_impl
from utils import small_tms_config as small_config

from supcomp import _C
from supcomp.ops import use_backend
from supcomp.ops.tms_step import IMPLS, KINDS, reference_loss_and_grad
from supcomp.tms import BatchSampler, SparseBatch, ToyModel, ToyModelConfig, sample_batch
from supcomp.tms.train import FusedAdamW, fused_loss_and_grad, fused_sampled_adamw_step, fused_sampled_loss_and_grad
from supcomp.tms.train import reference_loss_and_grad as model_reference_loss_and_grad


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [6, 40])  # one register of hidden units, and several
@pytest.mark.parametrize("tiles", [0, 1, 2])  # automatic, sparse rows, dense tiles (see below)
def test_fused_step_matches_reference_float64(kind, m, tiles):
    cfg = small_config(kind, n_hidden=m)
    model = ToyModel(cfg, seed=1, dtype=torch.float64)
    with torch.no_grad():
        model.b.normal_(0, 0.1)
    batch = sample_batch(cfg, 50, seed=3, dtype=torch.float64)
    l_fused = fused_loss_and_grad(model, batch, dense_strategy=tiles).double()
    g_fused = grads(model)
    l_ref = model_reference_loss_and_grad(model, batch).double()
    g_ref = grads(model)
    assert torch.allclose(l_fused, l_ref, rtol=1e-6)  # fused returns float32 losses
    for a, b in zip(g_fused, g_ref):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(g.abs().sum() > 0 for g in g_ref)


def _check_sampled_step(cfg, dtype, B, same, lanes):
    """fused_sampled_loss_and_grad (lane_strategy ``lanes``) against fused_loss_and_grad on sampler.sample(step)."""
    for seeds in (None, [5, 2**62 + 3, 0]):
        model = ToyModel(cfg, seed=1, dtype=dtype, instance_seeds=seeds)
        with torch.no_grad():
            model.b.normal_(0, 0.1)
        sampler = BatchSampler(cfg, B, seed=3, dtype=dtype, instance_seeds=seeds)
        for step in (0, 7):
            la = fused_loss_and_grad(model, sampler.sample(step))
            ga = grads(model)
            lb = fused_sampled_loss_and_grad(model, sampler, step, lane_strategy=lanes)
            gb = grads(model)
            assert same(la, lb), (seeds, step)
            for a, b in zip(ga, gb):
                assert same(a, b), (seeds, step)
    # and it is a different batch for a different step (the test above can fail)
    assert not torch.allclose(fused_sampled_loss_and_grad(model, sampler, 8, lane_strategy=lanes), lb)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,B", [(1, 1), (6, 50), (17, 23), (40, 9), (130, 16)])
def test_step_drawing_its_own_batch_equals_step_on_sampled_batch(kind, dtype, m, B):
    """tms_sample_step (what train() runs on CPU) draws its rows inside the step: bitwise the losses and
    gradients of tms_step on sampler.sample(step). Batches that are and are not a multiple of the 8-row
    tile, hidden sizes of 1 to 9 vectors, all kinds (abs signs the values). Row tiles forced: small models
    without pairs otherwise run in SIMD lanes (test below)."""
    _check_sampled_step(small_config(kind, n_hidden=m), dtype, B, torch.equal, lanes=1)


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
    for name, strategy in (("sparse", 1), ("dense", 2), ("auto", 0)):
        for fn in ("batch", "drawn"):
            if fn == "batch":
                loss = fused_loss_and_grad(model, sampler.sample(5), dense_strategy=strategy)
            else:
                loss = fused_sampled_loss_and_grad(model, sampler, 5, dense_strategy=strategy, lane_strategy=1)
            runs[name, fn] = [loss] + grads(model)
    ref = runs["sparse", "batch"]
    assert all(g.abs().sum() > 0 for g in ref[1:])
    for key, got in runs.items():
        assert all(torch.equal(a, b) for a, b in zip(ref, got)), key


@pytest.mark.parametrize("kind", KINDS)
def test_dense_tiles_match_reference_with_duplicate_indices(kind):
    """A hand-built CSR batch may repeat a feature in a row: both read-ins add the repeats up, as the
    einsum reference on batch.to_dense() does (the abs target is |sum|)."""
    cfg = ToyModelConfig(11, 4, n_instances=2, kind=kind, feature_probability=0.5)
    model = ToyModel(cfg, seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    B, per_row = 13, 5
    idx = torch.randint(0, 11, (2 * B, per_row), generator=g)
    idx[:, 1] = idx[:, 0]  # a repeat in every row
    batch = SparseBatch(
        offsets=torch.arange(0, 2 * B * per_row + 1, per_row),
        indices=idx.reshape(-1),
        values=torch.rand(2 * B * per_row, generator=g, dtype=torch.float64) * 2 - 1,
        n_instances=2,
        batch_size=B,
        n_features=11,
    )
    lr = model_reference_loss_and_grad(model, batch).double()
    gr = grads(model)
    for strategy in (1, 2):
        lf = fused_loss_and_grad(model, batch, dense_strategy=strategy).double()
        assert torch.allclose(lf, lr, rtol=1e-6), strategy
        for a, b in zip([p.grad for p in model.parameters()], gr):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-14), strategy


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m,B", [(2, 1, 1), (20, 5, 50), (37, 6, 23), (7, 40, 9), (20, 30, 17)])
def test_step_in_simd_lanes_matches_step_on_sampled_batch(kind, dtype, n, m, B):
    """Small models without feature pairs run with batch rows in SIMD lanes (LaneStep): the same batch,
    so the same losses and gradients up to summation order. Batches shorter than and not a multiple
    of the 8 / 16 lanes."""
    cfg = ToyModelConfig(
        n,
        m,
        n_instances=3,
        feature_probability=[[1.0], [0.3], [0.05]],
        importance=0.9 ** torch.arange(float(n)),
        kind=kind,
    )
    if dtype == torch.float64:
        close = lambda a, b: torch.allclose(a, b, rtol=1e-11, atol=1e-14)  # noqa: E731
    else:
        close = lambda a, b: torch.allclose(a, b, rtol=2e-5, atol=1e-6)  # noqa: E731
    _check_sampled_step(cfg, dtype, B, close, lanes=2)
    # automatic: n * m <= 512 without pairs runs in lanes (bitwise the forced result)
    model = ToyModel(cfg, seed=1, dtype=dtype)
    sampler = BatchSampler(cfg, B, seed=3, dtype=dtype)
    runs = {}
    for name, strategy in (("rows", 1), ("lanes", 2), ("auto", 0)):
        runs[name] = fused_sampled_loss_and_grad(model, sampler, 4, lane_strategy=strategy), model.W.grad.clone()
    expected = runs["lanes" if n * m <= 512 else "rows"]
    assert all(torch.equal(a, b) for a, b in zip(expected, runs["auto"]))


def test_layout_switches_are_arguments_not_global_state():
    """The C++ layout switches are per call: no process-wide setter, and a forced call leaves the next
    automatic call as it was."""
    assert not any(hasattr(_C, f"tms_{name}_strategy") for name in ("dense", "lane"))
    cfg = ToyModelConfig(20, 5, n_instances=3, feature_probability=[[1.0], [0.3], [0.05]])
    model = ToyModel(cfg, seed=1)
    sampler = BatchSampler(cfg, 17, seed=3)
    auto = fused_sampled_loss_and_grad(model, sampler, 2), model.W.grad.clone()
    fused_sampled_loss_and_grad(model, sampler, 2, dense_strategy=2, lane_strategy=1)
    again = fused_sampled_loss_and_grad(model, sampler, 2), model.W.grad.clone()
    assert all(torch.equal(a, b) for a, b in zip(auto, again))


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
    cfg = small_config(
        kind,
        n_features=n,
        n_hidden=m,
        importance=0.9 ** torch.arange(float(n)),
        correlated_pairs=2 if pairs else 0,
        anticorrelated_pairs=3 if pairs else 0,
    )
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
        return _C.tms_sample_adamw_step(
            0,
            0,
            sampler.p.numpy(),
            8,
            2,
            3,
            False,
            W,
            W,
            model.b.detach().numpy(),
            model.importance.numpy(),
            state,
            torch.empty(3, dtype=torch.float64).numpy(),
            False,
            True,
            False,
            lr,
            0.9,
            0.999,
            1e-8,
            0.01,
            step,
        )

    tensors = opt.state_tensors()
    assert all(isinstance(t, torch.Tensor) for t in tensors) and len(tensors) == 6
    good = [t.numpy() for t in tensors]
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


# ---------------------------------------------------------------- the Triton composition (supcomp.kernels.tms_step)


@pytest.mark.triton
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,m,B", [(37, 6, 13), (20, 17, 9)])
def test_triton_matches_reference_float64(n, m, B, kind, tied):
    """IMPLS.get("triton").loss_and_grad (the sparse_encode and relu_readout kernels, backward written out)
    against the einsum reference with autograd, in float64, every kind, tied (D is E) and untied, on a
    sampled batch with pairs and densities 1, 0.3, 0.05 (odd sizes)."""
    cfg = small_config(kind, n_features=n, n_hidden=m, importance=0.9 ** torch.arange(float(n)))
    g = torch.Generator().manual_seed(n * m)
    E = (torch.randn(3, n, m, generator=g, dtype=torch.float64) / m**0.5).to(TRITON_DEVICE)
    D = E if tied else (torch.randn(3, n, m, generator=g, dtype=torch.float64) / m**0.5).to(TRITON_DEVICE)
    b = 0.1 * torch.randn(3, n, generator=g, dtype=torch.float64).to(TRITON_DEVICE)
    importance = cfg.importances().to(TRITON_DEVICE)
    batch = sample_batch(cfg, B, seed=5, step=2, dtype=torch.float64)
    loss, gE, gD, gb = triton_impl(IMPLS).loss_and_grad(batch, E, D, b, importance, kind)
    r_loss, r_gE, r_gD, r_gb = reference_loss_and_grad(batch, E, D, b, importance, kind)
    assert (gD is None) == tied and (r_gD is None) == tied
    pairs = [("loss", loss, r_loss), ("grad_E", gE, r_gE), ("grad_b", gb, r_gb)]
    pairs += [] if tied else [("grad_D", gD, r_gD)]
    for name, got, want in pairs:
        assert got.dtype == torch.float64 and got.device.type == TRITON_DEVICE.type, name
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13, msg=name)


@pytest.mark.triton
@pytest.mark.parametrize("kind", KINDS)
def test_triton_through_the_trainer_entry_point(kind):
    """supcomp.tms.train.fused_loss_and_grad under use_backend("triton") runs the Triton composition and
    writes the reference's losses and .grad (abs: the untied model, W_out's gradient too)."""
    cfg = small_config(kind, n_features=21, n_hidden=5, importance=0.9 ** torch.arange(21.0))
    model = ToyModel(cfg, seed=2, dtype=torch.float64, device=TRITON_DEVICE)
    with torch.no_grad():
        model.b.normal_(0, 0.1)
    batch = sample_batch(cfg, 11, seed=4, dtype=torch.float64)
    with use_backend("triton"):
        loss = fused_loss_and_grad(model, batch)
    got = grads(model)
    ref = model_reference_loss_and_grad(model, batch)
    assert (model.W_out is None) == (kind != "abs") and len(got) == (3 if kind == "abs" else 2)
    torch.testing.assert_close(loss.double(), ref.double(), rtol=1e-10, atol=1e-13)
    for a, b in zip(got, grads(model)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
