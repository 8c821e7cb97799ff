"""Property-based tests of the modules around the ops: supcomp.sparse, supcomp.nn, supcomp.metrics, the
TMS sampler and one fused training step. Same hypothesis profiles as tests/test_fuzz_ops.py
(``ci`` derandomized by default, ``--hypothesis-profile=long`` for more examples).
"""

from __future__ import annotations

import pytest
import torch
from fuzz_registry import fill, padded_indices, shapes
from hypothesis import given, settings
from hypothesis import strategies as st

import supcomp.metrics as M
from supcomp.nn import ReLUReadout, SparseEncoder, TiedSuperposition
from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose
from supcomp.sparse import dense_to_padded, padded_to_dense


def _n(share=0.5):
    return settings(max_examples=max(5, int(settings.default.max_examples * share)))


@_n()
@given(
    sh=shapes(max_batch=8, max_n=30, max_d=4, max_k=6),
    seed=st.integers(0, 2**31 - 1),
    pattern=st.sampled_from(["none", "random", "tail", "all"]),
    dup=st.booleans(),
)
def test_padded_dense_round_trip(sh, seed, pattern, dup):
    """padded_to_dense sums duplicates; dense_to_padded of that dense matrix lists each nonzero once, in order."""
    I, batch, n, _, k = sh
    g = torch.Generator().manual_seed(seed)
    shape = ((I,) if I is not None else ()) + batch
    idx = padded_indices(g, shape, k, n, pattern, dup)
    val = fill(g, (*shape, k), "integer", torch.float64)
    x = padded_to_dense(idx, val, n)
    assert x.shape == (*shape, n)
    ref = torch.zeros(*shape, n + 1, dtype=torch.float64).scatter_add_(-1, torch.where(idx < 0, n, idx), val)[..., :n]
    assert torch.equal(x, ref)
    i2, v2 = dense_to_padded(x)
    assert torch.equal(padded_to_dense(i2, v2, n), x)
    if i2.shape[-1] > 1:  # ascending ids, padding at the end
        valid = i2 >= 0
        assert bool((valid[..., :-1] | ~valid[..., 1:]).all())
        both = valid[..., 1:] & valid[..., :-1]
        assert bool((i2[..., 1:] > i2[..., :-1])[both].all())


@_n()
@given(
    sh=shapes(max_batch=6, max_n=40, max_d=24, max_k=5),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_nn_modules_equal_the_ops(sh, seed, dtype):
    I, batch, n, d, k = sh
    if I == 0:
        I = None
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    lead = ((I,) if I is not None else ()) + batch
    idx = padded_indices(g, lead, k, n, "random", True)
    val = torch.randn(*lead, k, generator=g, dtype=torch.float64).to(dtype)
    enc = SparseEncoder(n, d, I, dtype=dtype)
    ro = ReLUReadout(tied_to=enc, bias_init=-0.1)
    top = ReLUReadout(n, d, I, k=min(k, n), dtype=dtype)
    tied = TiedSuperposition(n, d, I, dtype=dtype)
    h = enc(idx, val)
    assert torch.equal(h, sparse_encode(idx, val, enc.W))
    assert torch.equal(ro(h), relu_readout(h, enc.W, ro.b))
    ti, tv = top(h)
    ri, rv = relu_readout_topk(h, top.W, top.b, min(k, n))
    assert torch.equal(tv, rv) and torch.equal(ti, ri)
    assert torch.equal(tied(idx, val), superpose(idx, val, tied.W, tied.b))


@_n()
@given(
    I=st.integers(1, 4),
    n=st.integers(1, 12),
    m=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    zero_rows=st.booleans(),
)
def test_metrics_batched_equals_per_instance_and_permutation_equivariant(I, n, m, seed, zero_rows):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(I, n, m, generator=g, dtype=torch.float64)
    if zero_rows:
        W[:, 0] = 0  # an unlearned feature: metrics must stay finite
    perm = torch.randperm(n, generator=g)
    for fn in (M.feature_norms, M.feature_dimensionality, M.interference):
        batched = fn(W)
        assert bool(torch.isfinite(batched).all()), fn.__name__
        for i in range(I):
            torch.testing.assert_close(fn(W[i]), batched[i], msg=fn.__name__)
        torch.testing.assert_close(fn(W[:, perm]), batched[:, perm], msg=f"{fn.__name__} under a feature permutation")
    D = M.feature_dimensionality(W)
    assert bool(((D >= -1e-12) & (D <= 1 + 1e-9)).all())
    Q = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))[0]  # rotation of the hidden space
    torch.testing.assert_close(M.feature_dimensionality(W @ Q), D)


@_n()
@given(
    I=st.integers(1, 3),
    n=st.integers(1, 40),
    B=st.integers(1, 50),
    p=st.floats(1e-3, 1.0),
    corr=st.integers(0, 3),
    anti=st.integers(0, 3),
    kind=st.sampled_from(["relu_output", "relu_hidden", "abs"]),
    seed=st.integers(-(2**63), 2**64 - 1),
    step=st.integers(0, 2**40),
)
def test_tms_sampler_valid_csr_and_fused_step_finite(I, n, B, p, corr, anti, kind, seed, step):
    from supcomp.tms import ToyModel, ToyModelConfig
    from supcomp.tms.data import BatchSampler
    from supcomp.tms.train import fused_loss_and_grad, fused_sampled_loss_and_grad, reference_loss_and_grad

    corr, anti = min(corr, n // 2), min(anti, (n - 2 * min(corr, n // 2)) // 2)
    cfg = ToyModelConfig(
        n_features=n,
        n_hidden=3,
        n_instances=I,
        feature_probability=p,
        kind=kind,
        correlated_pairs=corr,
        anticorrelated_pairs=anti,
    )
    bt = BatchSampler(cfg, B, seed=seed % 2**64, dtype=torch.float64).sample(step)
    off, idx = bt.offsets, bt.indices
    assert off[0] == 0 and off[-1] == idx.numel() and bool((off[1:] >= off[:-1]).all())
    assert bool(((idx >= 0) & (idx < n)).all())
    lo, hi = (-1.0, 1.0) if kind == "abs" else (0.0, 1.0)
    assert bool(((bt.values >= lo) & (bt.values <= hi)).all())
    rows = torch.repeat_interleave(torch.arange(I * B), off[1:] - off[:-1])
    same_row = rows[1:] == rows[:-1]
    assert bool((idx[1:] > idx[:-1])[same_row].all()), "ids ascend within a row"
    on = torch.zeros(I * B, n, dtype=torch.bool)
    on[rows, idx] = True
    for a in range(corr):  # a correlated pair is on together or not at all
        assert torch.equal(on[:, 2 * a], on[:, 2 * a + 1])
    for a in range(anti):  # an anticorrelated pair is never on together
        f = 2 * corr + 2 * a
        assert not bool((on[:, f] & on[:, f + 1]).any())
    model = ToyModel(cfg, seed=1, dtype=torch.float64)
    lf = fused_loss_and_grad(model, bt)
    gf = [q.grad.clone() for q in model.parameters()]
    lr = reference_loss_and_grad(model, bt)
    gr = [q.grad.clone() for q in model.parameters()]
    torch.testing.assert_close(lf.double(), lr.double(), rtol=1e-6, atol=1e-9)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    # the step that draws its own batch (what train() runs; SIMD lanes when n*3 <= 512 and no pairs)
    ls = fused_sampled_loss_and_grad(model, BatchSampler(cfg, B, seed=seed % 2**64, dtype=torch.float64), step)
    gs = [q.grad.clone() for q in model.parameters()]
    torch.testing.assert_close(ls.double(), lr.double(), rtol=1e-6, atol=1e-9)
    for a, b in zip(gs, gr):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_sampler_independent_of_thread_count(n_threads):
    from supcomp.tms import ToyModelConfig, sample_batch

    cfg = ToyModelConfig(n_features=64, n_hidden=4, n_instances=3, feature_probability=0.3, anticorrelated_pairs=4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(n_threads)
        a = sample_batch(cfg, 200, seed=9, step=3)
    finally:
        torch.set_num_threads(old)
    b = sample_batch(cfg, 200, seed=9, step=3)
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
