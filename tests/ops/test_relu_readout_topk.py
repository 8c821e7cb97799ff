"""relu_readout_topk on every backend against the float64 reference (values, ids, gradients)."""
import pytest
import torch

from supcomp.ops import naive, relu_readout, relu_readout_topk, use_backend
from supcomp.ops import cpu as cpu_backend
from utils import assert_rel_close, device_for

# (I or None, batch, n_features, d, k)
CASES = [
    (None, (7,), 37, 24, 5),
    (None, (3, 5), 100, 13, 3),
    (3, (7,), 37, 5, 7),
    (2, (4,), 29, 48, 29),  # k == n_features
    (None, (0,), 37, 24, 5),
]
BACKEND_DTYPES = [("reference", torch.float64), ("cpp", torch.float32), ("cpp", torch.float64),
                  pytest.param("triton", torch.float32, marks=pytest.mark.triton)]


def make(I, batch, n, d, dtype, device, bias=-0.2):
    lead = (I,) if I is not None else ()
    h = torch.randn(*lead, *batch, d, dtype=torch.float64)
    W = torch.randn(*lead, n, d, dtype=torch.float64) / d ** 0.5
    b = torch.randn(*lead, n, dtype=torch.float64) * 0.3 + bias
    return [t.to(dtype).to(device) for t in (h, W, b)]


def reference(h, W, b, k):
    if W.dim() == 2:
        v, i = reference(h[None], W[None], b[None], k)
        return v[0], i[0]
    I, d = W.shape[0], W.shape[-1]
    v, i = naive.relu_readout_topk_forward(h.reshape(I, -1, d), W, b, k)
    return v.reshape(*h.shape[:-1], k), i.reshape(*h.shape[:-1], k)


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
def test_forward_backward(backend, dtype, case):
    I, batch, n, d, k = case
    device = device_for(backend)
    h, W, b = (t.requires_grad_(True) for t in make(I, batch, n, d, dtype, device))
    with use_backend(backend):
        vals, ids = relu_readout_topk(h, W, b, k)
    ref_in = [t.detach().double().requires_grad_(True) for t in (h, W, b)]
    v64, i64 = reference(*ref_in, k)
    # Ids must match the float64 selection except where two scores are closer
    # than the kernel's rounding: compare ids only where the gap is clear.
    assert ids.dtype == torch.int64 and vals.dtype == dtype
    assert_rel_close("values", vals, v64, dtype)
    full = reference(*[t.detach().double() for t in (h, W, b)], n)[0]
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
        vals, ids = relu_readout_topk(h, W, None, 4)
    # two positives tie at 0.5: the lower id comes first; unfilled slots are (0, -1)
    assert vals.cpu().tolist() == [[2.0, 0.5, 0.5, 0.0], [0.0] * 4]
    assert ids.cpu().tolist() == [[2, 0, 5, -1], [-1] * 4]


def test_matches_dense_readout_and_feeds_sparse_encode():
    h, W, b = make(None, (20,), 300, 16, torch.float32, "cpu")
    vals, ids = relu_readout_topk(h, W, b, 10)
    y = relu_readout(h, W, b)
    got = torch.gather(y, -1, ids.clamp(min=0)) * (ids >= 0)
    assert torch.allclose(got, vals, atol=1e-5)
    # the output is a valid padded sparse code
    from supcomp.ops import sparse_encode
    assert sparse_encode(ids, vals, W).shape == (20, 16)


def test_blockwise_path_many_tiles(monkeypatch):
    """Force tiny tiles so that rows and features are split across many GEMM tiles."""
    monkeypatch.setattr(cpu_backend, "TOPK_TILE_ELEMENTS", 64)
    h, W, b = make(2, (13,), 1000, 8, torch.float64, "cpu", bias=0.0)
    with use_backend("cpp"):
        vals, ids = relu_readout_topk(h, W, b, 17)
    v64, i64 = reference(h, W, b, 17)
    assert torch.equal(ids, i64)
    assert_rel_close("values", vals, v64, torch.float64)


def test_gradcheck_cpp():
    h, W, b = make(2, (3,), 13, 4, torch.float64, "cpu")
    with use_backend("cpp"):
        assert torch.autograd.gradcheck(lambda *a: relu_readout_topk(*a, 4)[0],
                                        tuple(t.requires_grad_() for t in (h, W, b)))
