"""supcomp.circuits: assignments, the construction against a slow loop-built reference, exact
cases, the ReLU silencing of inactive circuits, and invalid arguments."""

from __future__ import annotations

import pytest
import torch

from supcomp.circuits import CircuitSet, assign, compress, max_circuits
from supcomp.circuits.reference import DenseNetwork, slow_forward, slow_weights, torch_index_forward
from supcomp.ops import use_backend


@pytest.mark.parametrize("M,S", [(37, 3), (60, 5), (23, 1), (50, 4)])
def test_overlap1_shares_at_most_one(M, S):
    cap = max_circuits(M, S)
    A = assign.overlap1(cap, M, S)
    assert A.shape == (cap, S) and int(A.min()) >= 0 and int(A.max()) < M
    assert all(len(set(r)) == S for r in A.tolist())
    O = assign.overlaps(A, M)
    off = O - torch.diag(torch.diag(O))
    assert float(off.max()) <= 1.0
    assert torch.equal(torch.diag(O), torch.full((cap,), float(S), dtype=torch.float64))
    with pytest.raises(ValueError, match="width / neurons_per_unit"):
        assign.overlap1(cap + 1, M, S)


def test_overlap1_capacity_fits_the_2025_sizes():
    # T=4000 circuits in D=2400 (M=600 positions per block) with S=5, as in Linsefors & Bushnaq's code
    assert max_circuits(600, 5) >= 4000
    assert max_circuits(4, 5) == 0


def test_random_assignment_distinct():
    A = assign.random_assignment(200, 31, 6, torch.Generator().manual_seed(0))
    assert all(len(set(r)) == 6 for r in A.tolist()) and int(A.max()) < 31


CASES = [  # (circuits, width, S, assignment)
    (lambda: CircuitSet.random(10, 3, 3, seed=1, dtype=torch.float64), 5 * 16 + 2, 3, "overlap1"),
    (lambda: CircuitSet.random(9, 2, 2, seed=2, dtype=torch.float64), 40, 4, "random"),
    (lambda: CircuitSet.rotations(12, 3, seed=3, dtype=torch.float64), 4 * 16, 3, "overlap1"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_compress_matches_slow_reference(case):
    make, width, S, how = CASES[case]
    cs = make()
    net = compress(cs, width, S, assignment=how, seed=case)
    W, b = slow_weights(cs, net.assignments, width)
    torch.testing.assert_close(net.weight, W, rtol=0, atol=1e-12)
    torch.testing.assert_close(net.bias, b, rtol=0, atol=0)
    active, x = cs.sample(7, 3, seed=case, dtype=torch.float64)
    active[1, 2] = -1  # padding
    active[4] = -1  # an all-padding row
    ref = slow_forward(cs, net.assignments, width, x, active)
    dense = DenseNetwork(net)(x, active)
    for backend in ("reference", "cpp", "triton"):
        with use_backend(backend):
            out = net(x, active)
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10, msg=f"backend {backend}")
    torch.testing.assert_close(dense, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(torch_index_forward(net, x, active), ref, rtol=1e-9, atol=1e-10)
    assert torch.equal(net(x, active)[4], torch.zeros_like(ref[4]))


def test_float32_backends_agree():
    cs = CircuitSet.random(40, 3, 4, seed=0)
    net = compress(cs, 6 * 30, 3)
    active, x = cs.sample(9, 3, seed=0)
    ref = DenseNetwork(compress(cs.to(torch.float64), 6 * 30, 3))(x.double(), active)
    for backend in ("reference", "cpp", "triton"):
        with use_backend(backend):
            torch.testing.assert_close(net(x, active).double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CircuitSet.rotations(10, 5, seed=0, dtype=torch.float64),
        lambda: CircuitSet.random(10, 5, 3, seed=0, dtype=torch.float64),
    ],
)
def test_disjoint_hosts_are_exact(make):
    """T S <= M: the overlap-1 progressions with step 1 are disjoint, nothing is shared, and the
    large network computes every circuit exactly for any z (the construction's error is 0)."""
    cs = make()
    net = compress(cs, (cs.d + 2) * 30, 3)
    for z in (1, 4):
        active, x = cs.sample(20, z, seed=z, dtype=torch.float64)
        torch.testing.assert_close(net(x, active), cs.run(x, active)[-1], rtol=0, atol=1e-12)


def test_inactive_circuits_are_silenced():
    """At every layer the state neurons of positions that host no active circuit are exactly 0
    (the -1 bias beats the interference), and an inactive circuit none of whose hosts is shared
    with an active one reads out exactly 0."""
    cs = CircuitSet.rotations(300, 4, seed=0)
    net = compress(cs, 4 * 300, 4)  # interference std ~0.1 per neuron: far below the threshold 1
    active, x = cs.sample(64, 2, seed=0)
    acts = net.activations(x, active)
    M, d = net.M, net.d
    for l, a in enumerate(acts[1:], start=1):
        ind = a[:, (l % 2) * M : (l % 2 + 1) * M]
        state = a[:, 2 * M : (d + 2) * M].reshape(-1, M, d)
        assert torch.equal(state[ind == 0], torch.zeros_like(state[ind == 0])), f"layer {l}"
        others = torch.arange(cs.T).repeat(64, 1)
        hosts = net.assignments[l % 2][others]  # [64, T, S]
        free = (ind.gather(1, hosts.reshape(64, -1)).reshape(hosts.shape) == 0).all(-1)
        out = net.read(a, others, l)
        assert free.sum() > 1000
        assert torch.equal(out[free], torch.zeros_like(out[free]))


def test_invalid_arguments():
    cs = CircuitSet.random(20, 2, 3, seed=0)
    with pytest.raises(TypeError, match="circuits"):
        compress("nope", 100)
    with pytest.raises(ValueError, match="width"):
        compress(cs, 4)
    with pytest.raises(ValueError, match="width"):
        compress(cs, 0)
    with pytest.raises(ValueError, match="neurons_per_unit"):
        compress(cs, 50, neurons_per_unit=11)
    with pytest.raises(ValueError, match="neurons_per_unit"):
        compress(cs, 50, neurons_per_unit=0)
    with pytest.raises(ValueError, match="assignment"):
        compress(cs, 50, assignment="overlap2")
    with pytest.raises(ValueError, match="width / neurons_per_unit"):
        compress(CircuitSet.random(500, 2, 3), 50, neurons_per_unit=4)
    net = compress(cs, 50, 3, assignment="random")
    active, x = cs.sample(4, 2)
    with pytest.raises(IndexError, match="active"):
        net(x, torch.tensor([[0, 20]] * 4))
    with pytest.raises(IndexError, match="active"):
        net(x, torch.tensor([[0, -2]] * 4))
    with pytest.raises(TypeError, match="active"):
        net(x, active.float())
    with pytest.raises(ValueError, match="active"):
        net(x, active[0])
    with pytest.raises(ValueError, match="x"):
        net(x[:, :, :2], active)
    with pytest.raises(ValueError, match="x"):
        net(torch.full_like(x, float("nan")), active)
    with pytest.raises(ValueError, match="weights"):
        CircuitSet(torch.zeros(3, 2, 2, 3))
    with pytest.raises(ValueError, match="biases"):
        CircuitSet(torch.zeros(3, 2, 2, 2), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="activation"):
        CircuitSet(torch.zeros(3, 2, 2, 2), activation="tanh")
    with pytest.raises(ValueError, match="T"):
        CircuitSet.random(0, 2, 2)
    with pytest.raises(ValueError, match="z"):
        cs.sample(4, 21)


def test_empty_batch_no_circuits_and_all_padding():
    cs = CircuitSet.rotations(50, 2, seed=0)
    net = compress(cs, 200, 3)
    for B, z in [(0, 2), (3, 0), (0, 0)]:
        out = net(torch.zeros(B, z, 2), torch.zeros(B, z, dtype=torch.long))
        assert out.shape == (B, z, 2)
    out = net(torch.randn(2, 3, 2), torch.full((2, 3), -1))
    assert torch.equal(out, torch.zeros(2, 3, 2))
