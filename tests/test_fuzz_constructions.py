"""Property-based tests of the constructions: U-AND (C++ and Triton against the float64 reference), circuits in
superposition (every backend against the slow loop-built reference) and the compressed-computation step (the
fused hand-written gradients against the einsum reference). Same hypothesis profiles as tests/test_fuzz_ops.py
(``ci`` derandomized by default, ``--hypothesis-profile=long`` for more examples).
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from supcomp.ops import use_backend


def _n(share=0.5):
    return settings(max_examples=max(5, int(settings.default.max_examples * share)), deadline=None)


def _active(gen, B, s, m, pad):
    """[B, s] distinct active inputs per row, with -1 padding where ``pad``."""
    idx = (
        torch.stack([torch.randperm(m, generator=gen)[:s] for _ in range(B)])
        if B
        else torch.zeros(0, s, dtype=torch.long)
    )
    if pad and s and B:
        idx[torch.rand(B, s, generator=gen) < 0.3] = -1
    return idx


@_n()
@given(
    m=st.integers(2, 40),
    d=st.integers(1, 70),
    p=st.floats(0.05, 1.0),
    B=st.integers(0, 6),
    s=st.integers(0, 6),
    pad=st.booleans(),
    backend=st.sampled_from(["cpp", "triton"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_uand_backends_match_reference(m, d, p, B, s, pad, backend, dtype, seed):
    from supcomp.uand import UAnd

    if backend == "triton" and dtype == torch.float64:
        dtype = torch.float32
    s = min(s, m)
    gen = torch.Generator().manual_seed(seed)
    idx = _active(gen, B, s, m, pad)
    gates = torch.stack([torch.randperm(m, generator=gen)[:2] for _ in range(5)])  # distinct inputs per gate
    u = UAnd(m, d, p, seed=seed % 1000, dtype=dtype)
    u64 = UAnd(m, d, p, seed=seed % 1000, dtype=torch.float64)
    with use_backend("reference"):
        a_ref = u64.forward(idx)
        est_ref, ok_ref = u64.read(a_ref, gates, on_empty="mask")
    with use_backend(backend):
        a = u.forward(idx)
        est, ok = u.read(a, gates, on_empty="mask")
    assert a.dtype == dtype and a.shape == a_ref.shape
    torch.testing.assert_close(a.double(), a_ref, rtol=0, atol=0)  # small integer counts: exact in any float
    assert torch.equal(ok, ok_ref)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(est.double(), est_ref, rtol=tol, atol=tol)
    assert bool(torch.isfinite(est).all())


@_n(0.3)
@given(
    T=st.integers(1, 12),
    L=st.integers(1, 3),
    kind=st.sampled_from(["random", "rotations"]),
    S=st.integers(1, 4),
    assignment=st.sampled_from(["overlap1", "random"]),
    z=st.integers(1, 4),
    B=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_circuits_forward_matches_slow_reference(T, L, kind, S, assignment, z, B, seed):
    from supcomp.circuits import CircuitSet, compress
    from supcomp.circuits.reference import slow_forward

    cs = (
        CircuitSet.random(T, L, 2, seed=seed % 997, dtype=torch.float64)
        if kind == "random"
        else CircuitSet.rotations(T, L, seed=seed % 997, dtype=torch.float64)
    )
    M = max(S * 4, 8)
    width = (cs.d + 2) * M
    try:
        net = compress(cs, width, S, assignment=assignment, seed=seed % 997)
    except ValueError as e:  # overlap-1 may not fit: a clear error naming the arguments is the contract
        assert "overlap-1" in str(e) or "neurons_per_unit" in str(e)
        return
    z = min(z, T)
    active, x = cs.sample(B, z, seed=seed % 991, dtype=torch.float64)
    if B:
        active[0, -1] = -1
    ref = slow_forward(cs, net.assignments, width, x, active)
    for backend in ("reference", "cpp"):
        with use_backend(backend):
            out = net(x, active)
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10, msg=f"backend {backend}")


@_n(0.3)
@given(
    n=st.integers(2, 12),
    m=st.integers(1, 5),
    model=st.sampled_from(["residual", "mlp"]),
    mixing=st.sampled_from(["embedding", "none", "symmetric", "asymmetric"]),
    p=st.floats(0.05, 1.0),
    I=st.integers(1, 3),
    B=st.integers(1, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_cc_fused_step_matches_reference(n, m, model, mixing, p, I, B, seed):
    from supcomp.cc import CCConfig, CCModel
    from supcomp.cc.train import fused_loss_and_grad, make_sampler, reference_loss_and_grad

    if model == "residual":
        mixing = "embedding"
    sigma = 0.1 if mixing in ("symmetric", "asymmetric") else None
    cfg = CCConfig(
        model=model,
        mixing=mixing,
        sigma=sigma,
        n_features=n,
        d_embed=3 * n,
        d_mlp=m,
        feature_probability=p,
        n_instances=I,
    )
    net = CCModel(cfg, seed=seed % 1000, dtype=torch.float64)
    batch = make_sampler(cfg, B, seed=seed % 1000, dtype=torch.float64).sample(seed % 50)
    lf = fused_loss_and_grad(net, batch)
    gf = [q.grad.clone() for q in (net.W_in, net.W_out)]
    lr = reference_loss_and_grad(net, batch)
    gr = [q.grad.clone() for q in (net.W_in, net.W_out)]
    torch.testing.assert_close(lf.double(), lr.double(), rtol=1e-9, atol=1e-12)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
