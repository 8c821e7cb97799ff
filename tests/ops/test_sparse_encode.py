"""sparse_encode on every backend against the float64 reference, outputs and gradients; the C++
strategies forced; the Triton kernel (supcomp.kernels.sparse_encode) called directly."""

import functools
import importlib

import pytest
import torch
from utils import (
    BWD_DTYPES,
    EMPTY_SIZES,
    FWD_DTYPES,
    TRITON_DEVICE,
    assert_rel_close,
    assert_triton_close,
    cpu,
    device_for,
    empty_size_inputs,
    f64,
    gen,
    make_codes,
    random_padded,
    to_dev,
    triton_impl,
)

from supcomp import _C
from supcomp.ops import sparse_encode, use_backend
from supcomp.ops.sparse_encode import IMPLS, reference_backward, reference_forward

# The module (the attribute supcomp.ops.sparse_encode is the public function, re-exported over its name).
SE = importlib.import_module("supcomp.ops.sparse_encode")

# (I or None, batch shape, n_features, d, k): odd sizes on purpose.
CASES = [
    (None, (7,), 37, 24, 5),
    (None, (3, 5), 100, 13, 3),
    (3, (7,), 37, 5, 7),
    (2, (2, 3), 50, 48, 4),
    (None, (0,), 37, 24, 5),
    (1, (1,), 1, 1, 1),
    (None, (5,), 200, 131, 9),  # d spans full register chunks plus a tail
]
BACKEND_DTYPES = [
    ("reference", torch.float64),
    ("cpp", torch.float32),
    ("cpp", torch.float64),
    pytest.param("triton", torch.float32, marks=pytest.mark.triton),
]


def reference(indices, values, W):
    """Public-shape reference through reference_forward (instance axis added when absent)."""
    if W.dim() == 2:
        return reference(indices[None], values[None], W[None])[0]
    I, k = W.shape[0], indices.shape[-1]
    h = reference_forward(indices.reshape(I, -1, k), values.reshape(I, -1, k), W)
    return h.reshape(*indices.shape[:-1], W.shape[-1])


def make(I, batch, n, d, k, dtype, device):
    lead = ((I,) if I is not None else ()) + batch
    idx, val = random_padded(lead, k, n, dtype=dtype, device=device)
    W = torch.randn(*((I,) if I is not None else ()), n, d, dtype=torch.float64).to(dtype).to(device)
    return idx, val, W


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
def test_forward_backward(backend, dtype, case):
    device = device_for(backend)
    idx, val, W = make(*case, dtype, device)
    val.requires_grad_(True)
    W.requires_grad_(True)
    with use_backend(backend):
        h = sparse_encode(idx, val, W)
    g = torch.randn(h.shape, dtype=torch.float64).to(dtype).to(device)
    h.backward(g)

    v64 = val.detach().double().requires_grad_(True)
    W64 = W.detach().double().requires_grad_(True)
    h64 = reference(idx, v64, W64)
    h64.backward(g.double())
    assert h.dtype == dtype
    assert_rel_close("h", h, h64, dtype)
    assert_rel_close("grad values", val.grad, v64.grad, dtype)
    assert_rel_close("grad W", W.grad, W64.grad, dtype)


@pytest.mark.parametrize("backend", ["cpp", pytest.param("triton", marks=pytest.mark.triton)])
def test_int32_indices_and_noncontiguous(backend):
    device = device_for(backend)
    idx, val, W = make(None, (9,), 41, 19, 6, torch.float32, device)
    Wt = W.t().contiguous().t()  # same values, column-major strides
    val_nc = torch.stack([val, val], dim=-1)[..., 0]  # strided view with the same values
    assert not Wt.is_contiguous() and not val_nc.is_contiguous()
    with use_backend(backend):
        h = sparse_encode(idx.int(), val_nc, Wt)
    assert_rel_close("h", h, reference(idx, val.double(), W.double()), torch.float32)


def test_only_rows_that_occur_get_gradient():
    idx = torch.tensor([[0, 3, -1], [3, -1, -1]])
    W = torch.randn(6, 4, requires_grad=True)
    sparse_encode(idx, torch.ones(2, 3), W).sum().backward()
    touched = W.grad.abs().sum(-1) > 0
    assert touched.tolist() == [True, False, False, True, False, False]
    assert torch.allclose(W.grad[3], torch.full((4,), 2.0))


def test_gradcheck_cpp():
    idx, val, W = make(2, (3,), 11, 5, 4, torch.float64, "cpu")
    with use_backend("cpp"):
        assert torch.autograd.gradcheck(
            lambda v, w: sparse_encode(idx, v, w), (val.requires_grad_(), W.requires_grad_())
        )


def test_deterministic_across_threads():
    idx, val, W = make(None, (64,), 300, 40, 8, torch.float32, "cpu")
    g = torch.randn(64, 40)
    results = []
    old = torch.get_num_threads()
    try:
        for nt in (1, 2, 1):
            torch.set_num_threads(nt)
            v, w = val.clone().requires_grad_(), W.clone().requires_grad_()
            sparse_encode(idx, v, w).backward(g)
            results.append(w.grad)
    finally:
        torch.set_num_threads(old)
    # The scatter sums every element in slot order whatever the thread count.
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


class StrategyC:
    """supcomp._C with ``strategy=s`` passed to the sparse_encode entry points (0 automatic, 1 row-major,
    2 feature-major), the others untouched."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __getattr__(self, name):
        fn = getattr(_C, name)
        return functools.partial(fn, strategy=self.strategy) if name.startswith("sparse_encode") else fn


@pytest.fixture
def cpp_strategy(monkeypatch):
    """Force the C++ strategy of the op's C++ implementation (cpp_forward, cpp_backward) for one test."""

    def set_(s):
        monkeypatch.setattr(SE, "_C", StrategyC(s))

    return set_


@pytest.mark.parametrize("strategy", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "case",
    CASES + [(None, (600,), 1000, 40, 9), (2, (300,), 301, 33, 16)],
    ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}",
)
def test_cpp_strategies(case, dtype, strategy, cpp_strategy):
    """Row-major gathers and the feature-major (CSC) kernels of csrc/sparse_encode.cpp, each forced."""
    cpp_strategy(strategy)
    idx, val, W = make(*case, dtype, "cpu")
    val.requires_grad_(True)
    W.requires_grad_(True)
    with use_backend("cpp"):
        h = sparse_encode(idx, val, W)
        g = torch.randn(h.shape, dtype=torch.float64).to(dtype)
        gv, gW = torch.autograd.grad(h, (val, W), g)
        # each gradient alone (the single-gradient kernels)
        gv_only = torch.autograd.grad(sparse_encode(idx, val, W.detach()), val, g)[0]
        gW_only = torch.autograd.grad(sparse_encode(idx, val.detach(), W), W, g)[0]
    v64 = val.detach().double().requires_grad_(True)
    W64 = W.detach().double().requires_grad_(True)
    h64 = reference(idx, v64, W64)
    rv, rW = torch.autograd.grad(h64, (v64, W64), g.double())
    assert_rel_close("h", h, h64, dtype)
    for name, a, b in (
        ("grad values", gv, rv),
        ("grad W", gW, rW),
        ("grad values alone", gv_only, rv),
        ("grad W alone", gW_only, rW),
    ):
        assert_rel_close(name, a, b, dtype)


def test_feature_major_picked_and_deterministic_across_threads(cpp_strategy):
    """At B*k >= 4096 the automatic strategy takes the feature-major backward (the forward stays row-major);
    feature-major h and gradients are bitwise the same for 1 and 2 threads (sums in (feature, slot) order)."""
    idx, val, W = make(None, (700,), 900, 48, 7, torch.float32, "cpu")  # 4900 slots
    g = torch.randn(700, 48)
    outs = []
    old = torch.get_num_threads()
    try:
        for s in (0, 2, 1):
            cpp_strategy(s)
            per_thread = []
            for nt in (1, 2):
                torch.set_num_threads(nt)
                v, w = val.clone().requires_grad_(), W.clone().requires_grad_()
                h = sparse_encode(idx, v, w)
                h.backward(g)
                per_thread.append((h.detach(), v.grad, w.grad))
            outs.append(per_thread)
    finally:
        torch.set_num_threads(old)
    auto, csc, row = outs
    assert torch.equal(auto[0][0], row[0][0]), "automatic forward should be row-major"
    for a, b in zip(auto[0][1:], csc[0][1:]):
        assert torch.equal(a, b), "automatic backward did not take the feature-major path"
    for a, b in zip(csc[0], csc[1]):
        assert torch.equal(a, b), "feature-major results depend on the thread count"
    assert not torch.equal(csc[0][0], row[0][0]), "row-major sums h in slot order: expected other rounding"


def test_strategy_keyword_is_per_call():
    """The strategy is an argument of each call, not a process-wide switch: a forced call leaves the next
    (automatic) one alone, and every strategy gives the reference's h."""
    assert not hasattr(_C, "sparse_encode_strategy")
    idx, val, W = make(None, (700,), 900, 48, 7, torch.float32, "cpu")
    i3, v3, W3 = idx[None], val[None], W[None]
    ref = reference_forward(i3, v3.double(), W3.double())
    outs = {}
    for s in (0, 1, 2, 0):
        out = torch.empty(1, 700, 48)
        _C.sparse_encode_forward(i3.numpy(), v3.numpy(), W3.numpy(), out.numpy(), 1, strategy=s)
        assert_rel_close(f"h (strategy {s})", out, ref, torch.float32)
        outs.setdefault(s, []).append(out)
    assert torch.equal(outs[0][0], outs[0][1])
    assert torch.equal(outs[0][0], outs[1][0]), "the automatic forward is row-major"


# ---------------------------------------------------------------- the Triton kernel (supcomp.kernels.sparse_encode)

ENC_SHAPES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
    (2, 1, 100, 5, 3),
]


@pytest.mark.triton
def test_triton_checker_detects_errors():
    """The comparison used by the Triton tests (tests/utils.py) is able to fail."""
    ref = torch.randn(3, 7, 5, generator=gen(0), dtype=torch.float64)
    bad = ref.clone()
    bad[1, 2, 3] += 0.1 * ref.norm()
    with pytest.raises(AssertionError):
        assert_triton_close(bad.to(TRITON_DEVICE, torch.float32), ref, torch.float32)
    assert_triton_close(ref.to(TRITON_DEVICE, torch.float32), ref, torch.float32)


@pytest.mark.triton
@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", ENC_SHAPES)
def test_triton_forward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(1)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    idx_d, vals_d, W_d = to_dev(idx, vals, W, dtype=dtype)
    h = triton_impl(IMPLS).forward(idx_d, vals_d, W_d)
    ref = reference_forward(cpu(idx_d), f64(vals_d), f64(W_d))
    assert_triton_close(h, ref, dtype, "h")
    assert (cpu(h)[:, 0] == 0).all(), "all-empty row must give h = 0"


@pytest.mark.triton
def test_triton_empty_slot_reads_nothing():
    """-1 slots are masked, not multiplied by 0: an inf in W row 0 must not leak (as in the reference)."""
    I, B, n, d, k = 2, 7, 37, 24, 3
    idx, vals = make_codes(I, B, n, k, gen(2))
    idx = torch.where(idx == 0, torch.ones_like(idx), idx)
    W = torch.randn(I, n, d, generator=gen(3))
    W[:, 0, :] = float("inf")
    idx_d, vals_d, W_d = to_dev(idx, vals, W, dtype=torch.float32)
    h = triton_impl(IMPLS).forward(idx_d, vals_d, W_d)
    assert torch.isfinite(cpu(h)).all()
    assert_triton_close(h, reference_forward(idx, f64(vals_d), f64(W_d)), torch.float32)


@pytest.mark.triton
@pytest.mark.parametrize("dtype", BWD_DTYPES)
@pytest.mark.parametrize("shape", ENC_SHAPES)
def test_triton_backward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(4)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=dtype)
    gv, gW = triton_impl(IMPLS).backward(gh_d, idx_d, vals_d, W_d, True, True)
    rv, rW = reference_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert_triton_close(gv, rv, dtype, "grad_values")
    assert_triton_close(gW, rW, dtype, "grad_W")
    assert (cpu(gv)[:, 0] == 0).all(), "empty slots get zero grad_values"


@pytest.mark.triton
@pytest.mark.parametrize("need", [(True, False), (False, True), (False, False)])
def test_triton_backward_need_flags(need):
    I, B, n, d, k = 2, 7, 37, 24, 3
    g = gen(5)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=torch.float32)
    gv, gW = triton_impl(IMPLS).backward(gh_d, idx_d, vals_d, W_d, *need)
    rv, rW = reference_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert (gv is not None) == need[0] and (gW is not None) == need[1]
    if need[0]:
        assert_triton_close(gv, rv, torch.float32, "grad_values")
    if need[1]:
        assert_triton_close(gW, rW, torch.float32, "grad_W")


@pytest.mark.triton
def test_triton_heavy_duplicates():
    """Many rows hitting the same few features: the scatter must sum every contribution."""
    I, B, n, d, k = 2, 33, 37, 5, 7
    g = gen(6)
    idx = torch.randint(-1, 3, (I, B, k), generator=g)  # only features 0..2
    vals = torch.randn(I, B, k, generator=g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=torch.float32)
    gv, gW = triton_impl(IMPLS).backward(gh_d, idx_d, vals_d, W_d, True, True)
    rv, rW = reference_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert_triton_close(gv, rv, torch.float32, "grad_values")
    assert_triton_close(gW, rW, torch.float32, "grad_W")
    assert (cpu(gW)[:, 3:] == 0).all(), "rows that never occur get no gradient"


@pytest.mark.triton
@pytest.mark.parametrize("I,B,n,d,k", EMPTY_SIZES)
def test_triton_empty_sizes(I, B, n, d, k):
    idx, vals, W, _, h, _ = empty_size_inputs(I, B, n, d, k)
    dt = torch.float32
    idx_d, vals_d, W_d, h_d = to_dev(idx, vals, W, h, dtype=dt)
    kernel = triton_impl(IMPLS)
    assert_triton_close(kernel.forward(idx_d, vals_d, W_d), reference_forward(idx, vals.double(), W.double()), dt)
    gv, gW = kernel.backward(h_d, idx_d, vals_d, W_d, True, True)
    rv, rW = reference_backward(h.double(), idx, vals.double(), W.double(), True, True)
    assert_triton_close(gv, rv, dt)
    assert_triton_close(gW, rW, dt)
