"""relu_readout_topk edges on CPU: bfloat16 / float16 run the C++ kernel (float32 tiles), and large k
(the select-and-merge path of ``_C.topk_merge``) agrees with the reference."""

import importlib

import pytest
import torch

from supcomp.ops import relu_readout_topk, use_backend
from supcomp.ops.relu_readout_topk import IMPLS, cpp_forward, reference_forward


def _inputs(I, B, n, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(I, B, d, generator=g).to(dtype)
    W = (torch.randn(I, n, d, generator=g) / d**0.5).to(dtype)
    b = (0.1 * torch.randn(I, n, generator=g)).to(dtype)
    return h, W, b


def _check_topk(vals, idx, h, W, b, k, tol):
    """vals/idx is a valid top-k of relu(h W^T + b) (computed in float64) up to tol."""
    y = torch.relu(torch.bmm(h.double(), W.double().transpose(1, 2)) + b.double()[:, None])
    kth = torch.topk(y, k, dim=-1).values[..., -1:]  # the true k-th value per row
    filled = idx >= 0
    at = torch.gather(y, -1, idx.clamp(min=0))
    assert torch.all((vals.double() - at).abs()[filled] <= tol)  # values are the scores of their ids
    assert torch.all(at[filled] >= (kth.expand_as(at)[filled] - tol))  # nothing much larger was left out
    assert torch.all(vals[~filled] == 0)
    # ids distinct per row, values descending
    for row_i, row_v in zip(idx.reshape(-1, k), vals.reshape(-1, k)):
        ids = row_i[row_i >= 0]
        assert ids.unique().numel() == ids.numel()
        assert torch.all(row_v[:-1].double() >= row_v[1:].double())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k", [5, 50])
def test_half_cpu_runs_the_cpp_kernel(dtype, k):
    h, W, b = _inputs(2, 9, 300, 24, dtype)
    assert IMPLS.backend(h.device, dtype) == "cpp"
    idx, vals = relu_readout_topk(h, W, b, k)
    assert vals.dtype == dtype and idx.dtype == torch.int64
    # tolerance: the reference's own low-precision error against the float64 scores
    ri, rv = reference_forward(h, W, b, k)
    y = torch.relu(torch.bmm(h.double(), W.double().transpose(1, 2)) + b.double()[:, None])
    ref_err = (rv.double() - torch.gather(y, -1, ri.clamp(min=0)))[ri >= 0].abs().max().item()
    _check_topk(vals, idx, h, W, b, k, tol=max(ref_err, 1e-3))
    with use_backend("cpp"):  # forced backend: the same kernel
        i2, v2 = relu_readout_topk(h, W, b, k)
    assert torch.equal(v2, vals) and torch.equal(i2, idx)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_many_tiles(dtype, monkeypatch):
    mod = importlib.import_module("supcomp.ops.relu_readout_topk")  # the module (the package exports the function)

    monkeypatch.setattr(mod, "TOPK_TILE_ELEMENTS", 64 * 16)  # many row and feature blocks
    h, W, b = _inputs(1, 21, 700, 16, dtype, seed=3)
    idx, vals = cpp_forward(h, W, b, 40)
    _check_topk(vals, idx, h, W, b, 40, tol=2e-2)


def test_half_gradients_flow():
    h, W, b = _inputs(1, 4, 64, 8, torch.bfloat16)
    h.requires_grad_(True)
    _, vals = relu_readout_topk(h, W, b, 6)
    vals.float().sum().backward()
    assert h.grad is not None and h.grad.dtype == torch.bfloat16 and torch.isfinite(h.grad.float()).all()


@pytest.mark.parametrize("k", [33, 100, 400, 500])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_k_matches_reference_exactly(k, dtype, monkeypatch):
    mod = importlib.import_module("supcomp.ops.relu_readout_topk")  # the module (the package exports the function)

    h, W, b = _inputs(2, 7, 500, 12, dtype, seed=k)
    ref = reference_forward(h, W, b, k)
    got = cpp_forward(h, W, b, k)
    assert torch.equal(got.indices, ref.indices) and torch.allclose(got.values, ref.values, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(mod, "TOPK_TILE_ELEMENTS", 2 * 7 * 64)  # feature blocks of 64: merges across tiles
    got = cpp_forward(h, W, b, k)
    assert torch.equal(got.indices, ref.indices) and torch.allclose(got.values, ref.values, rtol=1e-5, atol=1e-6)


def test_large_k_ties_go_to_the_lower_index():
    # every feature scores the same: the k lowest ids, in order
    n, k = 300, 120
    h = torch.ones(1, 3, 2)
    W = torch.ones(1, n, 2)
    b = torch.zeros(1, n)
    idx, vals = cpp_forward(h, W, b, k)
    assert torch.equal(idx, torch.arange(k).expand(1, 3, k))
    assert torch.all(vals == 2)


def test_k_equals_n_with_few_positive():
    h, W, b = _inputs(1, 5, 400, 8, torch.float32, seed=7)
    b -= 1.0  # most scores negative: the tail is (0, -1)
    ref = reference_forward(h, W, b, 400)
    got = cpp_forward(h, W, b, 400)
    assert torch.equal(got.indices, ref.indices) and torch.allclose(got.values, ref.values)
