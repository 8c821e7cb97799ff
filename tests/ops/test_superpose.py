"""superpose (fused tied-weight forward) on every backend against the float64 reference; the Triton kernel
(supcomp.kernels.superpose) called directly."""

import pytest
import torch
from utils import (
    EMPTY_SIZES,
    FWD_DTYPES,
    TRITON_TOL,
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
    triton_rel_err,
)

from supcomp.ops import relu_readout, sparse_encode, superpose, use_backend
from supcomp.ops.superpose import IMPLS, reference_forward

CASES = [
    (None, (7,), 37, 24, 5),
    (None, (3, 5), 100, 13, 3),
    (3, (7,), 37, 5, 7),
    (4, (9,), 20, 2, 3),  # a toy-model shape: tiny d
    (2, (6,), 70, 33, 4),  # n spans full register tiles plus a tail, B not a multiple of 4
    (None, (0,), 37, 24, 5),
]
BACKEND_DTYPES = [
    ("reference", torch.float64),
    ("cpp", torch.float32),
    ("cpp", torch.float64),
    pytest.param("triton", torch.float32, marks=pytest.mark.triton),
]


def reference(idx, val, W, b):
    if W.dim() == 2:
        return reference(idx[None], val[None], W[None], b[None])[0]
    I, k = W.shape[0], idx.shape[-1]
    y = reference_forward(idx.reshape(I, -1, k), val.reshape(I, -1, k), W, b)
    return y.reshape(*idx.shape[:-1], W.shape[1])


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"I{c[0]}-B{c[1]}-n{c[2]}-d{c[3]}-k{c[4]}")
def test_forward_backward(backend, dtype, case):
    I, batch, n, d, k = case
    device = device_for(backend)
    lead = (I,) if I is not None else ()
    idx, val = random_padded(lead + batch, k, n, dtype=dtype, device=device)
    W = (torch.randn(*lead, n, d, dtype=torch.float64) / d**0.5).to(dtype).to(device)
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
        assert torch.autograd.gradcheck(
            lambda v, w, bb: superpose(idx, v, w, bb), (val.requires_grad_(), W.requires_grad_(), b.requires_grad_())
        )


# ---------------------------------------------------------------- the Triton kernel (supcomp.kernels.superpose)

SUP_SHAPES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
]


@pytest.mark.triton
@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", SUP_SHAPES)
def test_triton_forward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(14)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g) / d**0.25
    b = 0.3 * torch.randn(I, n, generator=g)
    idx_d, vals_d, W_d, b_d = to_dev(idx, vals, W, b, dtype=dtype)
    y = triton_impl(IMPLS).forward(idx_d, vals_d, W_d, b_d)
    ref = reference_forward(idx, f64(vals_d), f64(W_d), f64(b_d))
    assert 0.1 < (ref > 0).double().mean() < 0.9
    assert_triton_close(y, ref, dtype, "y")
    # The all-empty row 0 reads out relu(b).
    assert triton_rel_err(cpu(y)[:, 0], torch.relu(f64(b_d))) <= TRITON_TOL[dtype]


@pytest.mark.triton
@pytest.mark.parametrize("I,B,n,d,k", EMPTY_SIZES)
def test_triton_empty_sizes(I, B, n, d, k):
    idx, vals, W, b, _, _ = empty_size_inputs(I, B, n, d, k)
    dt = torch.float32
    idx_d, vals_d, W_d, b_d = to_dev(idx, vals, W, b, dtype=dt)
    y = triton_impl(IMPLS).forward(idx_d, vals_d, W_d, b_d)
    assert_triton_close(y, reference_forward(idx, vals.double(), W.double(), b.double()), dt)
