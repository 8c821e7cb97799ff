"""U-AND construction: exact small cases, error vs theory, variants, empty read-out sets, bad arguments."""

import math

import pytest
import torch

from supcomp.uand import UAnd, suggest_p, theory


def random_active(B, m, s, seed):
    """indices [B, s]: s distinct active inputs per sample."""
    g = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand(B, m, generator=g), dim=1)[:, :s].contiguous()


def test_storage_is_sparse_and_matches_dense():
    u = UAnd(97, 301, 0.07, seed=3)
    C = u.connection_matrix()
    assert u.nnz == int(C.sum())
    assert abs(u.nnz / (97 * 301) - 0.07) < 0.01
    # by-input and by-neuron lists describe the same C, sorted
    for i in (0, 50, 96):
        assert torch.equal(u.col_idx[u.col_ptr[i] : u.col_ptr[i + 1]], C[:, i].nonzero().reshape(-1))
    for n in (0, 150, 300):
        assert torch.equal(u.nrn_idx[u.nrn_ptr[n] : u.nrn_ptr[n + 1]], C[n].nonzero().reshape(-1))
    assert torch.equal(UAnd(97, 301, 0.07, seed=3).col_idx, u.col_idx)  # seeded
    assert not torch.equal(UAnd(97, 301, 0.07, seed=4).col_idx, u.col_idx)


def test_exact_both_on_reads_one_and_one_on_reads_zero():
    u = UAnd(50, 400, 0.3, seed=0)
    pairs = u.pairs()
    both = pairs[torch.randperm(pairs.shape[0])[:40]]
    a = u.forward(both)  # sample g: exactly the two inputs of gate g on
    est = u.read(a, both)
    assert torch.equal(torch.diagonal(est), torch.ones(40))  # exactly 1
    one = torch.arange(50)[:, None]  # one input on, nothing else
    a1 = u.forward(one)
    assert torch.count_nonzero(a1) == 0
    assert torch.count_nonzero(u.read_all_pairs(a1)) == 0  # every estimate exactly 0
    # the all-pairs read-out agrees: the active pair reads exactly 1
    allp = u.read_all_pairs(a)
    assert torch.equal(allp[torch.arange(40), u.pair_index(both[:, 0], both[:, 1])], torch.ones(40))


def _split_errors(u, idx, est):
    """Per-sample mean error of all pairs split by how many of the pair's inputs are on."""
    x = u.input_values(idx) > 0
    pr = u.pairs()
    on = x[:, pr[:, 0]].int() + x[:, pr[:, 1]].int()
    err = est - (on == 2).to(est.dtype)
    return {k: torch.stack([err[b][on[b] == k].mean() for b in range(err.shape[0])]) for k in (0, 1, 2)}, err, on


@pytest.mark.parametrize("s", [2, 4, 7])
def test_mean_errors_match_theory(s):
    m, d, p, B = 240, 2000, 0.1, 48
    u = UAnd(m, d, p, seed=11)
    idx = random_active(B, m, s, seed=s)
    est = u.read_all_pairs(u.forward(idx).double())
    per_sample, err, on = _split_errors(u, idx, est)
    th = theory(p, s, 2, d)
    for k, ms in per_sample.items():
        # samples are independent given C: z-score of the mean over samples
        se = ms.std() / math.sqrt(B) if B > 1 else 0
        z = (ms.mean().item() - th.mean[k]) / max(se.item(), 1e-12)
        assert abs(z) < 4.5, (s, k, ms.mean().item(), th.mean[k])
    # spread of the both-on estimates against the exact prediction (C(s,2) B pairs: loose)
    e2 = err[on == 2]
    if s >= 4:
        assert abs(e2.std().item() / th.std[2] - 1) < 0.3
    e0 = err[on == 0]
    assert abs(e0.std().item() / th.std[0] - 1) < 0.15
    assert (err >= -1e-12).all()  # every error is non-negative (estimates only overshoot)


def test_theory_formulas():
    th = theory(0.1, 5)
    assert th.mean[2] == pytest.approx(3 * 0.1)  # (s - 2) p, exact
    assert th.mean[1] == pytest.approx(4 * 0.1)  # (s - 1) p, exact
    assert th.mean[0] == pytest.approx(5 * 0.1 - 1 + 0.9**5)
    assert th.mean_approx[0] == pytest.approx(10 * 0.01)  # C(s, 2) p^2
    assert th.std is None
    th3 = theory(0.2, 6, fan_in=3, d=1000)
    assert th3.mean[3] == pytest.approx(3 * 0.2) and th3.mean[2] == pytest.approx(4 * 0.2)
    assert th3.std[3] > 0 and th3.std_approx[3] == pytest.approx(math.sqrt(th3.var_neuron[3] / 8), rel=1e-9)
    assert th.case("both") == 2 and th.case("none") == 0
    assert suggest_p(8000) == pytest.approx(0.05) and suggest_p(1000, 3, 8) == pytest.approx(0.2)


def test_fan_in_three_exact_and_theory():
    m, d, k = 40, 3000, 3
    p = suggest_p(d, k, overlap=20)
    u = UAnd(m, d, p, fan_in=k, seed=2)
    gates = torch.stack([torch.randperm(m)[:3] for _ in range(30)])
    est = u.read(u.forward(gates), gates)
    assert torch.equal(torch.diagonal(est), torch.ones(30))  # all three on, nothing else
    two = gates[:, :2]
    assert torch.count_nonzero(u.read(u.forward(two), gates)) == 0  # bias -2: two on fire nothing
    # random inputs with s = 5: mean error of the all-on gates against (s - 3) p
    idx = random_active(400, m, 5, seed=0)
    g_all = idx[:, :3]
    est = u.read(u.forward(idx).double(), g_all)  # [B, B], diagonal: the sample's own gate
    err = torch.diagonal(est) - 1
    th = theory(p, 5, k, d)
    assert abs(err.mean().item() - th.mean[3]) < 4 * th.std[3] / math.sqrt(400) + 1e-3


def test_targeted_subset_construction():
    m, d, npg = 500, 300, 12
    gates = torch.tensor([[0, 1], [2, 3], [1, 2], [10, 499], [7, 8]])
    u = UAnd.targeted(m, d, gates, neurons_per_gate=npg, seed=5)
    assert u.p is None and u.fan_in == 2
    rp, _ = u.intersections(gates)
    assert ((rp[1:] - rp[:-1]) >= npg).all()  # the gate's own set is inside the intersection
    est = u.read(u.forward(gates), gates)
    assert torch.equal(torch.diagonal(est), torch.ones(5))
    # inputs used by no gate feed nothing
    assert u.col_ptr[5] == u.col_ptr[4]


def test_input_embedding_variant():
    m, d, d0 = 60, 1500, 2048
    u = UAnd(m, d, 0.12, seed=1, input_embedding=d0)
    assert u.F.shape == (m, d0) and torch.allclose(u.F.norm(dim=1), torch.ones(m))
    idx = random_active(64, m, 3, seed=1)
    z = u.embed(idx)
    a = u.forward(idx)
    dense = torch.relu(z.double() @ u.first_layer().double().T + u.bias)  # relu(C F z + b)
    assert torch.allclose(a.double(), dense, atol=1e-4)
    est = u.read_all_pairs(a)
    x = u.input_values(idx)  # linear read F z
    pr = u.pairs()
    on = (x[:, pr[:, 0]] > 0.5).int() + (x[:, pr[:, 1]] > 0.5).int()
    err = (est - (on == 2).float()).abs()
    # superposed inputs add interference: still readable, errors well below 1/2 on average
    assert err[on == 2].mean() < 0.4 and err[on == 0].mean() < 0.1
    F = torch.nn.functional.normalize(torch.randn(m, 16), dim=1)
    assert UAnd(m, 50, 0.5, input_embedding=F).F.shape == (m, 16)


def test_xor_from_and():
    u = UAnd(30, 500, 0.3, seed=0)
    gates = torch.tensor([[0, 1], [0, 2], [3, 4]])
    idx = torch.tensor([[0, 1], [0, -1], [5, -1]])  # both on / one on / unrelated
    a = u.forward(idx)
    xor = u.read_xor(a, gates, idx)
    assert xor[0, 0] == 0  # both on, nothing else: 1 + 1 - 2 * 1 exactly
    assert torch.equal(xor[1], torch.tensor([1.0, 1.0, 0.0]))  # only input 0 on: exact
    assert torch.equal(xor[2], torch.zeros(3))
    # elsewhere it is x_i + x_j - 2 AND estimate (noisy)
    x = u.input_values(idx)
    assert torch.allclose(xor, x[:, gates[:, 0]] + x[:, gates[:, 1]] - 2 * u.read(a, gates))


def test_empty_intersection_raise_or_mask():
    u = UAnd(30, 20, 0.1, seed=0)  # d p^2 = 0.2: most read-out sets are empty
    gates = u.pairs()
    counts = u.pair_counts()
    assert (counts == 0).any() and (counts > 0).any()
    a = u.forward(random_active(5, 30, 4, seed=0))
    with pytest.raises(ValueError, match="empty"):
        u.read(a, gates)
    with pytest.raises(ValueError, match="empty"):
        u.read_all_pairs(a)
    with pytest.raises(ValueError, match="empty"):
        u.readout_matrix(gates)
    est, ok = u.read(a, gates, on_empty="mask")
    assert torch.equal(ok, counts > 0) and torch.isfinite(est).all() and (est[:, ~ok] == 0).all()
    est2, ok2 = u.read_all_pairs(a, on_empty="mask")
    assert torch.equal(ok2, ok) and torch.allclose(est2, est)
    R = u.readout_matrix(gates, on_empty="mask")
    assert torch.allclose((R @ a.T).T, est)


def test_iter_all_pairs_blocks_cover_read_all_pairs():
    u = UAnd(101, 600, 0.2, seed=0)
    a = u.forward(random_active(9, 101, 5, seed=3))
    full = u.read_all_pairs(a)
    parts, last = [], 0
    for p0, p1, est in u.iter_all_pairs(a, block_pairs=700):
        assert p0 == last and est.shape == (9, p1 - p0) and p1 - p0 <= 700
        parts.append(est)
        last = p1
    assert last == u.n_pairs
    assert torch.equal(torch.cat(parts, 1), full)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(p=0.0), ValueError, "p:"),
        (dict(p=1.5), ValueError, "p:"),
        (dict(p=-0.2), ValueError, "p:"),
        (dict(p=float("nan")), ValueError, "p:"),
        (dict(p=0.1, fan_in=1), ValueError, "fan_in"),
        (dict(p=0.1, fan_in=2.0), ValueError, "fan_in"),
        (dict(p=0.1, n_inputs=0), ValueError, "n_inputs"),
        (dict(p=0.1, n_neurons=-3), ValueError, "n_neurons"),
        (dict(p=0.1, seed=-1), ValueError, "seed"),
        (dict(p=0.1, dtype=torch.float16), TypeError, "dtype"),
        (dict(p=0.1, input_embedding=0), ValueError, "input_embedding"),
        (dict(p=0.1, input_embedding=torch.randn(3, 4)), ValueError, "input_embedding"),
    ],
)
def test_invalid_construction(kwargs, exc, match):
    args = dict(n_inputs=10, n_neurons=20)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        UAnd(**args)


def test_invalid_calls():
    u = UAnd(10, 50, 0.5, seed=0)
    a = u.forward(torch.tensor([[1, 2]]))
    with pytest.raises(IndexError, match="gates"):
        u.read(a, torch.tensor([[0, 10]]))
    with pytest.raises(IndexError, match="gates"):
        u.read(a, torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="gates"):
        u.read(a, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="distinct"):
        u.read(a, torch.tensor([[3, 3]]))
    with pytest.raises(TypeError, match="gates"):
        u.read(a, torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="a:"):
        u.read(torch.zeros(1, 49), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="on_empty"):
        u.read(a, torch.tensor([[0, 1]]), on_empty="ignore")
    with pytest.raises(IndexError, match="indices"):
        u.forward(torch.tensor([[0, 10]]))
    with pytest.raises(IndexError, match="indices"):
        u.forward(torch.tensor([[-2, 1]]))
    with pytest.raises(TypeError, match="indices"):
        u.forward(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="input_embedding"):
        u.embed(torch.tensor([[0]]))
    with pytest.raises(ValueError, match="fan_in"):
        UAnd(10, 50, 0.5, fan_in=3).read_all_pairs(torch.zeros(1, 50))
    with pytest.raises(ValueError, match="neurons_per_gate"):
        UAnd.targeted(10, 5, torch.tensor([[0, 1]]), neurons_per_gate=6)
    with pytest.raises(ValueError, match="s:"):
        theory(0.1, -1)
    with pytest.raises(ValueError, match="p:"):
        theory(1.1, 3)
