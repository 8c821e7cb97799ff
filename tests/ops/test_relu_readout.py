"""relu_readout on every backend against the float64 reference, outputs and gradients; the Triton kernel
(supcomp.kernels.relu_readout) called directly, both GEMM strategies."""

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
    make_readout,
    to_dev,
    triton_impl,
)

from supcomp.ops import relu_readout, use_backend
from supcomp.ops.relu_readout import IMPLS, reference_backward, reference_forward

# (I or None, batch shape, n_features, d)
CASES = [
    (None, (7,), 37, 24),
    (None, (3, 5), 100, 13),
    (3, (7,), 37, 5),
    (2, (1,), 129, 48),
    (None, (0,), 37, 24),
]
BACKEND_DTYPES = [
    ("reference", torch.float64),
    ("cpp", torch.float32),
    ("cpp", torch.float64),
    pytest.param("triton", torch.float32, marks=pytest.mark.triton),
]


def reference(h, W, b):
    if W.dim() == 2:
        return reference(h[None], W[None], b[None])[0]
    I, d = W.shape[0], W.shape[-1]
    y = reference_forward(h.reshape(I, -1, d), W, b)
    return y.reshape(*h.shape[:-1], W.shape[1])


def make(I, batch, n, d, dtype, device):
    lead = (I,) if I is not None else ()
    h = torch.randn(*lead, *batch, d, dtype=torch.float64)
    W = torch.randn(*lead, n, d, dtype=torch.float64) / d**0.5
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


# ---------------------------------------------------------------- the Triton kernel (supcomp.kernels.relu_readout)

RO_SHAPES = [  # I, B, n, d
    (1, 7, 37, 5),
    (3, 33, 100, 24),
    (3, 1, 37, 48),
]


@pytest.mark.triton
@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", RO_SHAPES)
def test_triton_forward(shape, dtype):
    h, W, b = make_readout(*shape, gen(7))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    y = triton_impl(IMPLS).forward(h_d, W_d, b_d)
    ref = reference_forward(f64(h_d), f64(W_d), f64(b_d))
    assert_triton_close(y, ref, dtype, "y")
    assert (cpu(y) >= 0).all()


@pytest.mark.triton
@pytest.mark.parametrize("dtype", BWD_DTYPES)
@pytest.mark.parametrize("shape", RO_SHAPES)
def test_triton_backward(shape, dtype):
    I, B, n, d = shape
    g = gen(8)
    h, W, b = make_readout(I, B, n, d, g)
    gy = torch.randn(I, B, n, generator=g)
    h_d, W_d, b_d, gy_d = to_dev(h, W, b, gy, dtype=dtype)
    # The same y (rounded to dtype) for kernel and reference, so the ReLU masks agree.
    y_d = reference_forward(f64(h_d), f64(W_d), f64(b_d)).to(TRITON_DEVICE, dtype)
    assert 0.2 < (cpu(y_d) > 0).float().mean() < 0.8, "the mask should matter"
    gh, gW, gb = triton_impl(IMPLS).backward(gy_d, y_d, h_d, W_d)
    rh, rW, rb = reference_backward(f64(gy_d), f64(y_d), f64(h_d), f64(W_d))
    assert_triton_close(gh, rh, dtype, "grad_h")
    assert_triton_close(gW, rW, dtype, "grad_W")
    assert_triton_close(gb, rb, dtype, "grad_b")


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("gemm", ["fused", "cublas"])
def test_triton_gemm_strategies(gemm, dtype, monkeypatch):
    """Both GEMM strategies of kernels/relu_readout.py (whatever "auto" picks on this machine)."""
    kernel = triton_impl(IMPLS)
    monkeypatch.setattr(importlib.import_module("supcomp.kernels.relu_readout"), "GEMM", gemm)
    for I in (1, 2):  # one instance takes addmm in the cublas strategy, several baddbmm
        B, n, d = 37, 77, 24  # B not a multiple of the epilogue's 32-row blocks
        g = gen(11)
        h, W, b = make_readout(I, B, n, d, g)
        gy = torch.randn(I, B, n, generator=g)
        h_d, W_d, b_d, gy_d = to_dev(h, W, b, gy, dtype=dtype)
        y = kernel.forward(h_d, W_d, b_d)
        assert_triton_close(y, reference_forward(f64(h_d), f64(W_d), f64(b_d)), dtype, "y")
        y_d = reference_forward(f64(h_d), f64(W_d), f64(b_d)).to(TRITON_DEVICE, dtype)
        gh, gW, gb = kernel.backward(gy_d, y_d, h_d, W_d)
        rh, rW, rb = reference_backward(f64(gy_d), f64(y_d), f64(h_d), f64(W_d))
        assert_triton_close(gh, rh, dtype, "grad_h")
        assert_triton_close(gW, rW, dtype, "grad_W")
        assert_triton_close(gb, rb, dtype, "grad_b")
    monkeypatch.setattr(importlib.import_module("supcomp.kernels.relu_readout"), "GEMM", "bogus")
    with pytest.raises(ValueError, match="SUPCOMP_TRITON_GEMM"):
        kernel.forward(h_d, W_d, b_d)


@pytest.mark.triton
@pytest.mark.parametrize("I,B,n,d,k", EMPTY_SIZES)
def test_triton_empty_sizes(I, B, n, d, k):
    _, _, W, b, h, gy = empty_size_inputs(I, B, n, d, k)
    dt = torch.float32
    W_d, b_d, h_d, gy_d = to_dev(W, b, h, gy, dtype=dt)
    y_d = reference_forward(h, W, b).to(TRITON_DEVICE, dt)
    kernel = triton_impl(IMPLS)
    assert_triton_close(kernel.forward(h_d, W_d, b_d), reference_forward(h.double(), W.double(), b.double()), dt)
    out = kernel.backward(gy_d, y_d, h_d, W_d)
    ref = reference_backward(gy.double(), y_d.cpu().double(), h.double(), W.double())
    for o, r in zip(out, ref):
        assert_triton_close(o, r, dt)
