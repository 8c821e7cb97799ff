"""sparse_encode on every backend against the float64 reference, outputs and gradients."""
import pytest
import torch

from supcomp.ops import naive, sparse_encode, use_backend
from utils import assert_rel_close, device_for, random_padded

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
BACKEND_DTYPES = [("reference", torch.float64), ("cpp", torch.float32), ("cpp", torch.float64),
                  pytest.param("triton", torch.float32, marks=pytest.mark.triton)]


def reference(indices, values, W):
    """Public-shape reference through naive.py (instance axis added when absent)."""
    if W.dim() == 2:
        return reference(indices[None], values[None], W[None])[0]
    I, k = W.shape[0], indices.shape[-1]
    h = naive.sparse_encode_forward(indices.reshape(I, -1, k), values.reshape(I, -1, k), W)
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
        assert torch.autograd.gradcheck(lambda v, w: sparse_encode(idx, v, w),
                                        (val.requires_grad_(), W.requires_grad_()))


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


@pytest.fixture
def cpp_strategy():
    """Force the C++ strategy (1 row-major, 2 feature-major) for one test, then back to automatic."""
    from supcomp import _C

    def set_(s):
        _C.sparse_encode_strategy(s)
    yield set_
    _C.sparse_encode_strategy(0)


@pytest.mark.parametrize("strategy", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES + [(None, (600,), 1000, 40, 9), (2, (300,), 301, 33, 16)],
                         ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
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
    for name, a, b in (("grad values", gv, rv), ("grad W", gW, rW), ("grad values alone", gv_only, rv),
                       ("grad W alone", gW_only, rW)):
        assert_rel_close(name, a, b, dtype)


def test_feature_major_picked_and_deterministic_across_threads():
    """At B*k >= 4096 the automatic strategy takes the feature-major backward (the forward stays row-major);
    feature-major h and gradients are bitwise the same for 1 and 2 threads (sums in (feature, slot) order)."""
    from supcomp import _C

    idx, val, W = make(None, (700,), 900, 48, 7, torch.float32, "cpu")  # 4900 slots
    g = torch.randn(700, 48)
    outs = []
    old = torch.get_num_threads()
    try:
        for s in (0, 2, 1):
            _C.sparse_encode_strategy(s)
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
        _C.sparse_encode_strategy(0)
    auto, csc, row = outs
    assert torch.equal(auto[0][0], row[0][0]), "automatic forward should be row-major"
    for a, b in zip(auto[0][1:], csc[0][1:]):
        assert torch.equal(a, b), "automatic backward did not take the feature-major path"
    for a, b in zip(csc[0], csc[1]):
        assert torch.equal(a, b), "feature-major results depend on the thread count"
    assert not torch.equal(csc[0][0], row[0][0]), "row-major sums h in slot order: expected other rounding"
