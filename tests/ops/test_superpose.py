"""superpose (fused tied-weight forward) on every backend against the float64 reference."""
import pytest
import torch

from supcomp.ops import naive, relu_readout, sparse_encode, superpose, use_backend
from utils import assert_rel_close, device_for, random_padded

CASES = [
    (None, (7,), 37, 24, 5),
    (None, (3, 5), 100, 13, 3),
    (3, (7,), 37, 5, 7),
    (4, (9,), 20, 2, 3),  # a toy-model shape: tiny d
    (2, (6,), 70, 33, 4),  # n spans full register tiles plus a tail, B not a multiple of 4
    (None, (0,), 37, 24, 5),
]
BACKEND_DTYPES = [("reference", torch.float64), ("cpp", torch.float32), ("cpp", torch.float64),
                  pytest.param("triton", torch.float32, marks=pytest.mark.triton)]


def reference(idx, val, W, b):
    if W.dim() == 2:
        return reference(idx[None], val[None], W[None], b[None])[0]
    I, k = W.shape[0], idx.shape[-1]
    y = naive.superpose_forward(idx.reshape(I, -1, k), val.reshape(I, -1, k), W, b)
    return y.reshape(*idx.shape[:-1], W.shape[1])


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
def test_forward_backward(backend, dtype, case):
    I, batch, n, d, k = case
    device = device_for(backend)
    lead = (I,) if I is not None else ()
    idx, val = random_padded(lead + batch, k, n, dtype=dtype, device=device)
    W = (torch.randn(*lead, n, d, dtype=torch.float64) / d ** 0.5).to(dtype).to(device)
    b = (torch.randn(*lead, n, dtype=torch.float64) * 0.2).to(dtype).to(device)
    val, W, b = (t.requires_grad_(True) for t in (val, W, b))
    with use_backend(backend):
        y = superpose(idx, val, W, b)
    g = torch.randn(y.shape, dtype=torch.float64).to(dtype).to(device)
    y.backward(g)
    ref_in = [t.detach().double().requires_grad_(True) for t in (val, W, b)]
    y64 = reference(idx, *ref_in)
    y64.backward(g.double())
    assert_rel_close("y", y, y64, dtype)
    for name, t, r in zip(("values", "W", "b"), (val, W, b), ref_in):
        assert_rel_close(f"grad {name}", t.grad, r.grad, dtype, factor=4)


def test_equals_composition():
    idx, val = random_padded((2, 11), 4, 30)
    W = torch.randn(2, 30, 7)
    b = torch.randn(2, 30) * 0.1
    assert torch.allclose(superpose(idx, val, W, b), relu_readout(sparse_encode(idx, val, W), W, b), atol=1e-5)


def test_gradcheck_cpp():
    idx, val = random_padded((2, 3), 3, 9, dtype=torch.float64)
    W = torch.randn(2, 9, 4, dtype=torch.float64)
    b = torch.randn(2, 9, dtype=torch.float64) * 0.1
    with use_backend("cpp"):
        assert torch.autograd.gradcheck(lambda v, w, bb: superpose(idx, v, w, bb),
                                        (val.requires_grad_(), W.requires_grad_(), b.requires_grad_()))
