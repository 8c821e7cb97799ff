"""relu_readout on every backend against the float64 reference, outputs and gradients."""
import pytest
import torch

from supcomp.ops import naive, relu_readout, use_backend
from utils import assert_rel_close, device_for

# (I or None, batch shape, n_features, d)
CASES = [
    (None, (7,), 37, 24),
    (None, (3, 5), 100, 13),
    (3, (7,), 37, 5),
    (2, (1,), 129, 48),
    (None, (0,), 37, 24),
]
BACKEND_DTYPES = [("reference", torch.float64), ("cpp", torch.float32), ("cpp", torch.float64),
                  pytest.param("triton", torch.float32, marks=pytest.mark.triton)]


def reference(h, W, b):
    if W.dim() == 2:
        return reference(h[None], W[None], b[None])[0]
    I, d = W.shape[0], W.shape[-1]
    y = naive.relu_readout_forward(h.reshape(I, -1, d), W, b)
    return y.reshape(*h.shape[:-1], W.shape[1])


def make(I, batch, n, d, dtype, device):
    lead = (I,) if I is not None else ()
    h = torch.randn(*lead, *batch, d, dtype=torch.float64)
    W = torch.randn(*lead, n, d, dtype=torch.float64) / d ** 0.5
    b = torch.randn(*lead, n, dtype=torch.float64) * 0.3
    return [t.to(dtype).to(device) for t in (h, W, b)]


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}")
def test_forward_backward(backend, dtype, case):
    device = device_for(backend)
    h, W, b = (t.requires_grad_(True) for t in make(*case, dtype, device))
    with use_backend(backend):
        y = relu_readout(h, W, b)
    g = torch.randn(y.shape, dtype=torch.float64).to(dtype).to(device)
    y.backward(g)
    ref_in = [t.detach().double().requires_grad_(True) for t in (h, W, b)]
    y64 = reference(*ref_in)
    y64.backward(g.double())
    assert_rel_close("y", y, y64, dtype)
    for name, t, r in zip(("h", "W", "b"), (h, W, b), ref_in):
        assert_rel_close(f"grad {name}", t.grad, r.grad, dtype)


def test_no_bias_and_negative_bias_filters():
    W = torch.eye(4)
    h = torch.tensor([[1.0, 0.2, 0.0, -0.5]])
    assert torch.equal(relu_readout(h, W), torch.tensor([[1.0, 0.2, 0.0, 0.0]]))
    assert torch.allclose(relu_readout(h, W, torch.full((4,), -0.3)), torch.tensor([[0.7, 0.0, 0.0, 0.0]]))


def test_gradcheck_cpp():
    h, W, b = make(2, (3,), 9, 4, torch.float64, "cpu")
    with use_backend("cpp"):
        assert torch.autograd.gradcheck(relu_readout, tuple(t.requires_grad_() for t in (h, W, b)))
