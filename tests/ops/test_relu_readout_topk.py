"""relu_readout_topk on every backend against the float64 reference (values, ids, gradients); the Triton
kernel (supcomp.kernels.relu_readout_topk) called directly: ties, chunks and tiles, the large-k fallback."""

import importlib

import pytest
import torch
from utils import (
    EMPTY_SIZES,
    TRITON_DEVICE,
    TRITON_TOL,
    assert_rel_close,
    assert_triton_close,
    cpu,
    device_for,
    empty_size_inputs,
    f64,
    gen,
    make_integer_readout,
    make_readout,
    to_dev,
    triton_impl,
    triton_rel_err,
)

from supcomp.ops import SparseCode, relu_readout, relu_readout_topk, use_backend
from supcomp.ops.relu_readout import reference_forward as readout_reference
from supcomp.ops.relu_readout_topk import IMPLS, reference_forward

# The op's module (the attribute supcomp.ops.relu_readout_topk is the public function).
TOPK = importlib.import_module("supcomp.ops.relu_readout_topk")

# (I or None, batch, n_features, d, k)
CASES = [
    (None, (7,), 37, 24, 5),
    (None, (3, 5), 100, 13, 3),
    (3, (7,), 37, 5, 7),
    (2, (4,), 29, 48, 29),  # k == n_features
    (None, (0,), 37, 24, 5),
]
BACKEND_DTYPES = [
    ("reference", torch.float64),
    ("cpp", torch.float32),
    ("cpp", torch.float64),
    pytest.param("triton", torch.float32, marks=pytest.mark.triton),
]


def make(I, batch, n, d, dtype, device, bias=-0.2):
    lead = (I,) if I is not None else ()
    h = torch.randn(*lead, *batch, d, dtype=torch.float64)
    W = torch.randn(*lead, n, d, dtype=torch.float64) / d**0.5
    b = torch.randn(*lead, n, dtype=torch.float64) * 0.3 + bias
    return [t.to(dtype).to(device) for t in (h, W, b)]


def reference(h, W, b, k):
    """The reference's SparseCode (indices, values) for any leading shape."""
    if W.dim() == 2:
        i, v = reference(h[None], W[None], b[None], k)
        return SparseCode(i[0], v[0])
    I, d = W.shape[0], W.shape[-1]
    i, v = reference_forward(h.reshape(I, -1, d), W, b, k)
    return SparseCode(i.reshape(*h.shape[:-1], k), v.reshape(*h.shape[:-1], k))


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
def test_forward_backward(backend, dtype, case):
    I, batch, n, d, k = case
    device = device_for(backend)
    h, W, b = (t.requires_grad_(True) for t in make(I, batch, n, d, dtype, device))
    with use_backend(backend):
        ids, vals = relu_readout_topk(h, W, b, k)
    ref_in = [t.detach().double().requires_grad_(True) for t in (h, W, b)]
    i64, v64 = reference(*ref_in, k)
    # Ids must match the float64 selection except where two scores are closer
    # than the kernel's rounding: compare ids only where the gap is clear.
    assert ids.dtype == torch.int64 and vals.dtype == dtype
    assert_rel_close("values", vals, v64, dtype)
    full = reference(*[t.detach().double() for t in (h, W, b)], n).values
    gaps = (full[..., :-1] - full[..., 1:])[..., :k] if k < n else (full[..., :-1] - full[..., 1:])
    clear = torch.ones_like(i64, dtype=torch.bool)
    if gaps.shape[-1] > 0:
        amb = gaps < 1e-5 if dtype != torch.float64 else gaps < 1e-12
        clear[..., : amb.shape[-1]] &= ~amb
        clear[..., 1:] &= ~amb[..., : k - 1]
    assert ids.device == h.device, f"ids on {ids.device}, inputs on {h.device}"
    clear = clear.cpu()
    assert torch.equal(ids.cpu()[clear], i64.cpu()[clear]), "selected feature ids differ from the reference"
    g = torch.randn(vals.shape, dtype=torch.float64).to(dtype).to(device)
    vals.backward(g)
    v64.backward(g.double())
    for name, t, r in zip(("h", "W", "b"), (h, W, b), ref_in):
        assert_rel_close(f"grad {name}", t.grad, r.grad, dtype, factor=10)


@pytest.mark.parametrize("backend", ["reference", "cpp", pytest.param("triton", marks=pytest.mark.triton)])
def test_fill_rule_fewer_positives_than_k(backend):
    device = device_for(backend)
    W = torch.eye(6, device=device)
    h = torch.tensor([[0.5, -1.0, 2.0, 0.0, -3.0, 0.5], [-1.0] * 6], device=device)
    with use_backend(backend):
        ids, vals = relu_readout_topk(h, W, None, 4)
    # two positives tie at 0.5: the lower id comes first; unfilled slots are (0, -1)
    assert vals.cpu().tolist() == [[2.0, 0.5, 0.5, 0.0], [0.0] * 4]
    assert ids.cpu().tolist() == [[2, 0, 5, -1], [-1] * 4]


def test_matches_dense_readout_and_feeds_sparse_encode():
    h, W, b = make(None, (20,), 300, 16, torch.float32, "cpu")
    ids, vals = relu_readout_topk(h, W, b, 10)
    y = relu_readout(h, W, b)
    got = torch.gather(y, -1, ids.clamp(min=0)) * (ids >= 0)
    assert torch.allclose(got, vals, atol=1e-5)
    # the output is a valid padded sparse code
    from supcomp.ops import sparse_encode

    assert sparse_encode(ids, vals, W).shape == (20, 16)


def test_blockwise_path_many_tiles(monkeypatch):
    """Force tiny tiles so that rows and features are split across many GEMM tiles."""
    monkeypatch.setattr(TOPK, "TOPK_TILE_ELEMENTS", 64)
    h, W, b = make(2, (13,), 1000, 8, torch.float64, "cpu", bias=0.0)
    with use_backend("cpp"):
        ids, vals = relu_readout_topk(h, W, b, 17)
    i64, v64 = reference(h, W, b, 17)
    assert torch.equal(ids, i64)
    assert_rel_close("values", vals, v64, torch.float64)


def test_gradcheck_cpp():
    h, W, b = make(2, (3,), 13, 4, torch.float64, "cpu")
    with use_backend("cpp"):
        assert torch.autograd.gradcheck(
            lambda *a: relu_readout_topk(*a, 4).values, tuple(t.requires_grad_() for t in (h, W, b))
        )


# ---------------------------------------------------------------- the Triton kernel (supcomp.kernels.relu_readout_topk)


def kernel_module(name="relu_readout_topk"):
    return importlib.import_module(f"supcomp.kernels.{name}")


def check_topk(v, i, h, W, b, k, dtype, exact):
    """v, i from the kernel; h, W, b the (rounded) inputs; exact: indices must equal the reference's bit for bit."""
    ri, rv = reference_forward(f64(h), f64(W), f64(b), k)
    assert i.dtype == torch.int64 and v.dtype == dtype
    assert v.shape == rv.shape and i.shape == ri.shape
    assert i.device.type == TRITON_DEVICE.type, f"topk indices: on {i.device}"
    assert_triton_close(v, rv, dtype, "topk values")  # checks the device of v, then compares on the CPU
    v, i = cpu(v), cpu(i)
    assert torch.equal(i == -1, v == 0), "fill rule: index -1 exactly where value 0"
    if exact:
        assert torch.equal(i, ri), "topk indices"
        return
    # Up to near-ties: the chosen entries are the scores they claim, sorted, distinct.
    y = readout_reference(f64(h), f64(W), f64(b))
    got = torch.where(i >= 0, y.gather(-1, i.clamp(min=0)), torch.zeros((), dtype=torch.float64))
    assert triton_rel_err(v, got) <= TRITON_TOL[dtype]
    assert (v[..., :-1] >= v[..., 1:]).all(), "sorted descending"
    srt = torch.sort(torch.where(i >= 0, i, -1 - torch.arange(i.shape[-1])), dim=-1).values
    assert (srt[..., 1:] != srt[..., :-1]).all(), "distinct indices"
    # Indices agree wherever the reference has no near-tie around that rank.
    tol = 8 * TRITON_TOL[dtype] * max(rv.abs().max().item(), 1.0)
    ref_sorted = torch.sort(y, dim=-1, descending=True).values
    nxt = (
        ref_sorted[..., 1 : k + 1]
        if k < y.shape[-1]
        else torch.cat([ref_sorted[..., 1:], torch.full_like(ref_sorted[..., :1], -1.0)], -1)
    )
    prv = torch.cat([torch.full_like(ref_sorted[..., :1], float("inf")), ref_sorted[..., : k - 1]], -1)
    clear = ((ref_sorted[..., :k] - nxt) > tol) & ((prv - ref_sorted[..., :k]) > tol)
    assert torch.equal(i[clear], ri[clear]), "topk indices away from near-ties"


TOPK_CASES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
    (2, 7, 37, 5, 37),  # k == n
    (1, 1, 100, 24, 100),  # k == n, n not a power of two
]


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", TOPK_CASES)
def test_triton_random(case, dtype):
    I, B, n, d, k = case
    h, W, b = make_readout(I, B, n, d, gen(9))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    i, v = triton_impl(IMPLS).forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=False)


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("gemm", ["fused", "cublas"])
def test_triton_gemm_strategies(gemm, dtype, monkeypatch):
    """Both strategies, with tiles small enough that rows and features span several tiles, and exact ties."""
    kernel = triton_impl(IMPLS)
    monkeypatch.setattr(kernel_module("relu_readout"), "GEMM", gemm)
    monkeypatch.setattr(kernel_module(), "CUBLAS_TILE_ELEMENTS", 2 * 13 * 17)
    for case in (TOPK_CASES[0], TOPK_CASES[-1]):
        I, B, n, d, k = case
        h, W, b = make_readout(I, B, n, d, gen(12))
        h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
        i, v = kernel.forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=False)
    I, B, n, d, k = 2, 9, 61, 5, 7
    h, W, b = make_integer_readout(I, B, n, d, gen(13))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    i, v = kernel.forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=True)


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", TOPK_CASES)
def test_triton_ties_exact(case, dtype):
    """Ties go to the lower index, exactly as the reference's stable sort."""
    I, B, n, d, k = case
    h, W, b = make_integer_readout(I, B, n, d, gen(10))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    i, v = triton_impl(IMPLS).forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=True)


@pytest.mark.triton
@pytest.mark.parametrize("k", [3, 7, 37])
def test_triton_few_positive(k):
    """Fewer than k positive scores (and all-zero rows): the tail is index -1 / value 0."""
    I, B, n, d = 3, 7, 37, 5
    h, W, b = make_integer_readout(I, B, n, d, gen(11), bias_shift=-6)
    h[:, 0] = 0  # all scores of row 0 are b <= -4: no positive entry at all
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    i, v = triton_impl(IMPLS).forward(h_d, W_d, b_d, k)
    npos = (readout_reference(h, W, b) > 0).sum(-1)
    assert (npos < k).any() and (npos[:, 0] == 0).all()
    assert (cpu(i)[:, 0] == -1).all() and (cpu(v)[:, 0] == 0).all()
    check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)


@pytest.mark.triton
@pytest.mark.parametrize("block_n,target", [(16, 1), (16, 64), (128, 64)])
def test_triton_chunks_and_tiles(monkeypatch, block_n, target):
    """Several BLOCK_N tiles per chunk (the running merge) and several chunks (the final torch step)."""
    kernel = triton_impl(IMPLS)
    monkeypatch.setattr(kernel_module(), "MAX_BLOCK_N", block_n)
    monkeypatch.setattr(kernel_module(), "TARGET_PROGRAMS", target)
    for seed, (I, B, n, d, k) in enumerate([(3, 7, 100, 24, 7), (1, 33, 100, 5, 3), (2, 7, 37, 5, 37)]):
        h, W, b = make_integer_readout(I, B, n, d, gen(20 + seed))
        h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
        i, v = kernel.forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)
    h, W, b = make_readout(3, 7, 100, 24, gen(30))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    i, v = kernel.forward(h_d, W_d, b_d, 7)
    check_topk(v, i, h_d, W_d, b_d, 7, torch.float32, exact=False)


@pytest.mark.triton
def test_triton_large_k_fallback(monkeypatch):
    """k above the kernel's register budget takes the sliced readout + sort path."""
    kernel = triton_impl(IMPLS)
    monkeypatch.setattr(kernel_module(), "MAX_KERNEL_K", 2)
    monkeypatch.setattr(kernel_module(), "FALLBACK_SLICE_ELEMS", 3 * 37 * 3)  # 3 rows per slice
    h, W, b = make_integer_readout(3, 7, 37, 5, gen(12))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    for k in (7, 37):
        i, v = kernel.forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)


@pytest.mark.triton
def test_triton_k_above_n():
    """k > n gives n slots, like the reference's sort(...)[..., :k]."""
    h, W, b = make_integer_readout(2, 7, 37, 5, gen(13))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    i, v = triton_impl(IMPLS).forward(h_d, W_d, b_d, 50)
    check_topk(v, i, h_d, W_d, b_d, 50, torch.float32, exact=True)


@pytest.mark.triton
@pytest.mark.parametrize("I,B,n,d,k", EMPTY_SIZES)
def test_triton_empty_sizes(I, B, n, d, k):
    _, _, W, b, h, _ = empty_size_inputs(I, B, n, d, k)
    dt = torch.float32
    W_d, b_d, h_d = to_dev(W, b, h, dtype=dt)
    kk = max(k, 1)
    i, v = triton_impl(IMPLS).forward(h_d, W_d, b_d, kk)
    ri, rv = reference_forward(h.double(), W.double(), b.double(), kk)
    assert v.shape == rv.shape and torch.equal(cpu(i), ri)
    assert_triton_close(v, rv, dt)
