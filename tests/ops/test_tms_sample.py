"""tms_sample: the toy-model batch samplers. The C++ CSR sampler (statistics, determinism, one pass equal to
count-then-fill), the dense torch sampler equal to it bit for bit, and the Triton kernel of the independent
features (supcomp.kernels.tms_sample) equal to both, bit for bit."""

import importlib
import math

import pytest
import torch
from utils import TRITON_DEVICE, triton_impl

from supcomp.ops import use_backend
from supcomp.ops.tms_sample import IMPLS, DenseSampler, instance_seed_tensor, reference_independent
from supcomp.sparse import padded_to_dense
from supcomp.tms import BatchSampler, ToyModelConfig, sample_batch
from supcomp.tms.data import DeviceBatchSampler

# The op's module (CsrSampler reads its ONEPASS_MAX_ELEMENTS at each call).
TMS_SAMPLE = importlib.import_module("supcomp.ops.tms_sample")

# Sampler variants: independent features, feature pairs, signed values (kind "abs"), both.
VARIANTS = [
    dict(),
    dict(correlated_pairs=2, anticorrelated_pairs=3),
    dict(kind="abs"),
    dict(kind="abs", correlated_pairs=1, anticorrelated_pairs=2),
]
VARIANT_IDS = ["independent", "pairs", "abs", "abs-pairs"]


def config(n_features=23, n_instances=4, **kw):
    p = torch.tensor([1.0, 0.3, 0.05, 0.5, 0.9, 1e-3][:n_instances])
    return ToyModelConfig(n_features, 5, n_instances=n_instances, feature_probability=p[:, None], **kw)


def test_sampler_statistics_and_determinism():
    cfg = ToyModelConfig(
        60, 5, n_instances=3, feature_probability=[[0.5], [0.1], [0.01]], correlated_pairs=4, anticorrelated_pairs=4
    )
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
    assert torch.equal(padded_to_dense(idx, val, 60), x)


def test_abs_kind_samples_signed_values():
    cfg = ToyModelConfig(3, 6, n_instances=2, feature_probability=0.5, kind="abs")
    batch = sample_batch(cfg, 4000)
    assert float(batch.values.min()) < -0.9 and float(batch.values.max()) > 0.9
    assert float(batch.values.min()) >= -1 and float(batch.values.max()) < 1


@pytest.mark.parametrize("kw", VARIANTS[:3], ids=VARIANT_IDS[:3])
def test_device_sampler_matches_cpp(kw):
    """The torch sampler (used on GPUs) draws the C++ sampler's batches bit for bit, sliced or not."""
    cfg = config(**kw)
    a = BatchSampler(cfg, 37, seed=123)
    for max_elements in (23 * 37, 1 << 25):  # one instance per slice / all at once
        b = DeviceBatchSampler(cfg, 37, seed=123, max_elements=max_elements)
        for step in (0, 5, 2**40):
            xa, xb = a.sample(step).to_dense(), b.sample(step)
            assert torch.equal(xa, xb), (step, max_elements)
    assert not torch.equal(DeviceBatchSampler(cfg, 37, seed=124).sample(0), a.sample(0).to_dense())
    seeds = [5, 2**62 + 11, 0, 7]  # per-instance seeds (sweeps)
    a = BatchSampler(cfg, 37, seed=123, instance_seeds=seeds)
    b = DeviceBatchSampler(cfg, 37, seed=123, instance_seeds=seeds)
    for step in (0, 3):
        assert torch.equal(a.sample(step).to_dense(), b.sample(step)), ("instance_seeds", step)


@pytest.mark.parametrize("kw", VARIANTS[:3], ids=VARIANT_IDS[:3])
def test_onepass_sampler_equals_count_then_fill(kw, monkeypatch):
    """Small batches are drawn in one pass (tms_sample_onepass); the numbers equal the two-pass sampler's."""
    cfg = config(**kw)
    seeds = [3, 1, 4, 1]
    one = [BatchSampler(cfg, 37, seed=9, instance_seeds=s).sample(step) for s in (None, seeds) for step in (0, 6)]
    monkeypatch.setattr(TMS_SAMPLE, "ONEPASS_MAX_ELEMENTS", 0)
    two = [BatchSampler(cfg, 37, seed=9, instance_seeds=s).sample(step) for s in (None, seeds) for step in (0, 6)]
    for a, b in zip(one, two):
        assert torch.equal(a.offsets, b.offsets) and torch.equal(a.indices, b.indices)
        assert torch.equal(a.values, b.values)


def test_instance_seeds_checked():
    assert instance_seed_tensor(None, 3) is None
    assert instance_seed_tensor([1, 2, 3], 3).dtype == torch.int64
    for bad in ([1, 2], [1, -2, 3], [[1, 2, 3]], [0.5, 1.0, 2.0]):
        with pytest.raises(ValueError, match="instance_seeds"):
            instance_seed_tensor(bad, 3)
    with pytest.raises(ValueError, match="instance_seeds"):
        DenseSampler(torch.full((2, 5), 0.5), 4, instance_seeds=[1, 2, 3])


# ---------------------------------------------------------------- the Triton kernel (supcomp.kernels.tms_sample)


def random_keys(i, B, n, seed):
    """kon, kval [i, B] (uint32 values in int64) and thresholds thr [i, n] with the extremes 0 and 2^32 - 1."""
    g = torch.Generator().manual_seed(seed)
    kon = torch.randint(0, 2**32, (i, B), generator=g, dtype=torch.int64)
    kval = torch.randint(0, 2**32, (i, B), generator=g, dtype=torch.int64)
    thr = torch.randint(0, 2**32, (i, n), generator=g, dtype=torch.int64)
    if n > 1:
        thr[:, 0] = 2**32 - 1  # always on
        thr[:, 1] = 0  # on only when the hash is 0
    return kon, kval, thr


@pytest.mark.triton
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("i,B,n", [(3, 37, 23), (2, 3, 1031), (1, 1, 1), (2, 5, 17)])
def test_triton_independent_equals_reference(i, B, n, signed):
    """tms_sample_independent against reference_independent, bit for bit: the on mask and the values, on
    odd sizes, one and several feature blocks per row."""
    kon, kval, thr = random_keys(i, B, n, seed=i * B * n)
    on, u = triton_impl(IMPLS).independent(*(t.to(TRITON_DEVICE) for t in (kon, kval, thr)), signed)
    r_on, r_u = reference_independent(kon, kval, thr, signed)
    assert on.dtype == torch.bool and u.dtype == torch.float32 and on.shape == u.shape == (i, B, n)
    assert on.device.type == TRITON_DEVICE.type
    assert torch.equal(on.cpu(), r_on) and torch.equal(u.cpu(), r_u)
    lo = -1.0 if signed else 0.0
    assert float(r_u.min()) >= lo and float(r_u.max()) < 1
    if i * B * n > 100:  # the masks and values mean something
        assert bool(r_on[..., 0].all()) and 0.05 < r_on.double().mean() < 0.95
        assert (float(r_u.min()) < -0.5) == signed


@pytest.mark.triton
def test_triton_independent_empty():
    for shape in ((0, 4, 5), (2, 0, 5), (2, 4, 0)):
        kon, kval, thr = random_keys(shape[0], shape[1], shape[2], seed=0)
        on, u = triton_impl(IMPLS).independent(*(t.to(TRITON_DEVICE) for t in (kon, kval, thr)), False)
        assert on.shape == u.shape == shape and on.dtype == torch.bool


@pytest.mark.triton
@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_triton_sampler_equals_reference_and_cpp(kw):
    """DeviceBatchSampler with the Triton kernel (use_backend("triton")) draws the batches of the reference
    sampler and of the C++ BatchSampler's to_dense(), bit for bit: odd sizes, signed values for the abs
    kind, correlated and anticorrelated pairs, per-instance seeds, instance slices."""
    cfg = config(n_features=19, n_instances=5, **kw)
    B = 13
    # all instances at once, two instances per slice, per-instance seeds (sweeps)
    for seeds, max_elements in ((None, 1 << 25), (None, 2 * 19 * B), ([5, 2**62 + 11, 0, 7, 3], 1 << 25)):
        cpp = BatchSampler(cfg, B, seed=77, instance_seeds=seeds)
        dev = DeviceBatchSampler(cfg, B, seed=77, device=TRITON_DEVICE, instance_seeds=seeds, max_elements=max_elements)
        for step in (0, 9):
            with use_backend("triton"):
                x_triton = dev.sample(step)
            with use_backend("reference"):
                x_ref = dev.sample(step)
            x_cpp = cpp.sample(step).to_dense()
            assert x_triton.device.type == TRITON_DEVICE.type
            assert torch.equal(x_triton.cpu(), x_ref.cpu()), (seeds, max_elements, step)
            assert torch.equal(x_triton.cpu(), x_cpp), (seeds, max_elements, step)
    on = x_cpp != 0
    assert on.any() and not on.all()
    assert (float(x_cpp.min()) < 0) == (cfg.kind == "abs")
