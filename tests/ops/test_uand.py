"""U-AND kernels (C++, Triton under the interpreter) against the float64 pure-torch reference."""

import pytest
import torch
from utils import assert_rel_close, device_for

from supcomp.ops import use_backend
from supcomp.ops.uand import (
    reference_all_pairs,
    reference_forward,
    reference_intersect,
    reference_pair_counts,
    reference_readout,
)
from supcomp.uand import UAnd

# (m, d, p, B, s): odd sizes on purpose
CASES = [(37, 53, 0.3, 7, 5), (101, 200, 0.15, 13, 9), (5, 3, 1.0, 4, 3), (64, 129, 0.2, 0, 4)]
# The Triton interpreter runs one Python program per (gate, batch block): small cases only.
PARAMS = [
    pytest.param(be, dt, c, id=f"{be}-{str(dt)[6:]}-" + "m{}-d{}-p{}-B{}-s{}".format(*c))
    for be, dt in [("cpp", torch.float32), ("cpp", torch.float64)]
    for c in CASES
]
PARAMS += [
    pytest.param(
        "triton", torch.float32, c, marks=pytest.mark.triton, id="triton-float32-" + "m{}-d{}-p{}-B{}-s{}".format(*c)
    )
    for c in CASES
    if c[0] < 100
]


def padded_active(B, m, s, seed):
    """[B, s] ids with -1 padding, a duplicate and an all-empty row."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, m, (B, s), generator=g)
    idx[torch.rand(B, s, generator=g) < 0.25] = -1
    if B > 1:
        idx[0, 1] = idx[0, 0] = m - 1
        idx[1] = -1
    return idx


def ref_forward(u, idx, values=None):
    v = torch.ones(idx.shape, dtype=torch.float64) if values is None else values.double()
    return reference_forward(idx, v, u.col_ptr, u.col_idx, u.bias, u.d)


@pytest.mark.parametrize("backend,dtype,case", PARAMS)
def test_forward_readout_all_pairs(backend, dtype, case):
    m, d, p, B, s = case
    dev = device_for(backend)
    u = UAnd(m, d, p, seed=m, dtype=dtype, device=dev)
    u64 = UAnd(m, d, p, seed=m, dtype=torch.float64)
    idx = padded_active(B, m, s, seed=d)
    # reference forward == dense relu(C x + b)
    a64 = ref_forward(u64, idx)
    dense = torch.relu(u64.input_values(idx) @ u64.connection_matrix().T + u64.bias)
    assert torch.equal(a64, dense)
    with use_backend(backend):
        a = u.forward(idx.to(dev))
        assert a.dtype == dtype
        assert_rel_close("a", a, a64, dtype)
        # read-out on activations with non-integer values too (the kernel is a generic mean)
        act = (a64 + torch.rand(a64.shape, dtype=torch.float64) * (a64 > 0)).to(dtype).to(dev)
        gates = torch.randint(0, m, (23, 2))
        gates = gates[gates[:, 0] != gates[:, 1]]
        est, ok = u.read(act, gates.to(dev), on_empty="mask")
        rp, ni = reference_intersect(gates, u64.col_ptr, u64.col_idx, d)
        assert_rel_close("read", est, reference_readout(act.double().cpu(), rp, ni), dtype)
        allp, ok_all = u.read_all_pairs(act, on_empty="mask")
        ref_all = reference_all_pairs(
            act.double().cpu(), u64.col_ptr, u64.col_idx, u64.nrn_ptr, u64.nrn_idx, None, m, 0, m
        )
        assert_rel_close("all pairs", allp, ref_all, dtype)
        ref_counts = reference_pair_counts(u64.col_ptr, u64.col_idx, u64.nrn_ptr, u64.nrn_idx, m)
        assert torch.equal(ok_all.cpu(), ref_counts > 0) and torch.equal(ok.cpu(), rp[1:] - rp[:-1] > 0)
        # a middle block of rows, as iter_all_pairs calls it
        if m > 10:
            blk = u._pairs_block(act.contiguous(), 3, 7, None)
            ref_blk = reference_all_pairs(
                act.double().cpu(), u64.col_ptr, u64.col_idx, u64.nrn_ptr, u64.nrn_idx, None, m, 3, 7
            )
            assert_rel_close("all pairs block", blk, ref_blk, dtype)


@pytest.mark.parametrize("backend", ["cpp", pytest.param("triton", marks=pytest.mark.triton)])
def test_intersections_and_pair_counts_exact(backend):
    u = UAnd(41, 97, 0.25, seed=7)
    gates3 = torch.stack([torch.randperm(41)[:3] for _ in range(50)])
    C = u.connection_matrix().bool()
    with use_backend(backend):
        rp, ni = UAnd(41, 97, 0.25, fan_in=3, seed=7).intersections(gates3)
        counts = u.pair_counts()
    for g in range(50):
        want = (C[:, gates3[g]].all(1)).nonzero().reshape(-1)
        assert torch.equal(ni[rp[g] : rp[g + 1]].cpu(), want)
    cc = (C.double().T @ C.double()).long()
    pr = u.pairs()
    assert torch.equal(counts.long().cpu(), cc[pr[:, 0], pr[:, 1]])


@pytest.mark.parametrize("backend", ["cpp", pytest.param("triton", marks=pytest.mark.triton)])
def test_forward_with_values_embedding_path(backend):
    dev = device_for(backend)  # the Triton kernels run on CUDA tensors, or on CPU ones under the interpreter
    u = UAnd(29, 61, 0.3, seed=2, input_embedding=17, device=dev)
    z = torch.randn(6, 17)
    with use_backend(backend):
        a = u.forward_embedded(z.to(dev))
    assert a.device.type == torch.device(dev).type
    dense = torch.relu(z.double() @ u.first_layer().double().cpu().T + u.bias)
    assert_rel_close("a (embedded)", a, dense, torch.float32, factor=5)


def test_cpp_kernels_reject_bad_buffers():
    from supcomp import _C

    u = UAnd(10, 20, 0.5, seed=0)
    out = torch.empty(1, 20)
    with pytest.raises(IndexError, match="indices"):
        _C.uand_forward(
            torch.tensor([[10]]).numpy(),
            torch.ones(1, 1).numpy(),
            u.col_ptr.numpy(),
            u.col_idx.numpy(),
            -1.0,
            out.numpy(),
            1,
        )
    bad_idx = u.col_idx.clone()
    bad_idx[u.col_ptr[3]] = 20  # a neuron id past d in input 3's list
    with pytest.raises(IndexError, match="col_idx"):
        _C.uand_forward(
            torch.tensor([[3]]).numpy(),
            torch.ones(1, 1).numpy(),
            u.col_ptr.numpy(),
            bad_idx.numpy(),
            -1.0,
            out.numpy(),
            1,
        )
    bad_ptr = u.col_ptr.clone()
    bad_ptr[-1] += 5
    with pytest.raises(ValueError, match="col_ptr"):
        _C.uand_forward(
            torch.tensor([[3]]).numpy(),
            torch.ones(1, 1).numpy(),
            bad_ptr.numpy(),
            u.col_idx.numpy(),
            -1.0,
            out.numpy(),
            1,
        )
    with pytest.raises(TypeError):  # wrong dtype is never converted silently
        _C.uand_forward(
            torch.tensor([[3]]).numpy(),
            torch.ones(1, 1, dtype=torch.float64).numpy(),
            u.col_ptr.numpy(),
            u.col_idx.numpy(),
            -1.0,
            out.numpy(),
            1,
        )
    with pytest.raises(IndexError, match="nidx"):
        _C.uand_readout(
            torch.zeros(20, 2).numpy(),
            torch.tensor([0, 1]).numpy(),
            torch.tensor([20]).numpy(),
            torch.empty(1, 2).numpy(),
            1,
        )
    with pytest.raises(IndexError, match="gates"):
        _C.uand_intersect_count(
            torch.tensor([[0, 10]]).numpy(),
            u.col_ptr.numpy(),
            u.col_idx.numpy(),
            torch.empty(1, dtype=torch.int64).numpy(),
            1,
        )


def test_all_pairs_deterministic_across_threads():
    u = UAnd(150, 500, 0.3, seed=0)
    a = u.forward(padded_active(17, 150, 8, seed=1))
    old = torch.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            torch.set_num_threads(nt)
            res.append(u.read_all_pairs(a))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(res[0], res[1])
