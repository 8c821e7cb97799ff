"""sparse_encode's deterministic grad_W on the Triton backend: the feature-sorted (CSC) segment
reduction of kernels/sparse_encode.py, under the interpreter at small sizes (or on CUDA)."""

import importlib

import pytest
import torch
from utils import TRITON_DEVICE, assert_triton_close, gen

from supcomp.ops.sparse_encode import reference_backward

pytestmark = pytest.mark.triton


def kernel():
    return importlib.import_module("supcomp.kernels.sparse_encode")


def inputs(I, B, n, d, k, seed, dtype):
    g = gen(seed)
    idx = torch.randint(-1, n, (I, B, k), generator=g)
    idx[..., 0] = idx[..., 1].clamp(min=0)  # duplicates within a row
    val = torch.randn(I, B, k, generator=g, dtype=torch.float64)
    val[idx < 0] = float("nan")  # an empty slot's value is never read
    gh = torch.randn(I, B, d, generator=g, dtype=torch.float64)
    W = torch.randn(I, n, d, generator=g, dtype=torch.float64)
    return (
        idx,
        val,
        gh,
        W,
        [t.to(TRITON_DEVICE, dtype) if t.is_floating_point() else t.to(TRITON_DEVICE) for t in (idx, val, gh, W)],
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("I,B,n,d,k", [(1, 9, 7, 20, 4), (3, 5, 11, 3, 6), (2, 4, 300, 33, 2)])
def test_csc_grad_W_matches_reference(dtype, I, B, n, d, k):
    idx, val, gh, W, (idx_d, val_d, gh_d, W_d) = inputs(I, B, n, d, k, 0, dtype)
    _, gW = kernel().sparse_encode_backward(gh_d, idx_d, val_d, W_d, False, True)
    ref_v = torch.where(idx >= 0, val_d.double().cpu(), torch.zeros((), dtype=torch.float64))
    _, ref = reference_backward(gh_d.double().cpu(), idx, ref_v, W_d.double().cpu(), False, True)
    assert gW.dtype == dtype and not torch.isnan(gW).any()
    assert_triton_close(gW, ref, dtype, "grad_W")


def test_csc_grad_W_bit_identical_and_close_to_atomics(monkeypatch):
    idx, val, gh, W, (idx_d, val_d, gh_d, W_d) = inputs(2, 16, 5, 24, 8, 1, torch.float32)  # many collisions
    k = kernel()
    runs = [k.sparse_encode_backward(gh_d, idx_d, val_d, W_d, True, True) for _ in range(2)]
    assert torch.equal(runs[0][1], runs[1][1]) and torch.equal(runs[0][0], runs[1][0])
    monkeypatch.setattr(k, "GRAD_W", "atomic")
    gv, gW = k.sparse_encode_backward(gh_d, idx_d, torch.nan_to_num(val_d), W_d, True, True)
    torch.testing.assert_close(gW, runs[0][1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gv, runs[0][0])


def test_deterministic_flag_never_uses_atomics(monkeypatch):
    idx, val, gh, W, (idx_d, val_d, gh_d, W_d) = inputs(1, 6, 9, 8, 3, 2, torch.float32)
    k = kernel()
    calls = []
    csc = k.grad_W_csc
    monkeypatch.setattr(k, "grad_W_csc", lambda *a: calls.append(1) or csc(*a))
    monkeypatch.setattr(k, "GRAD_W", "atomic")
    k.sparse_encode_backward(gh_d, idx_d, val_d, W_d, True, True)
    assert calls == []  # atomics chosen
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    k.sparse_encode_backward(gh_d, idx_d, val_d, W_d, True, True)
    assert calls == [1]


def test_csc_slots_layout():
    idx = torch.tensor([[[2, -1], [0, 2]], [[1, 1], [-1, 0]]]).to(TRITON_DEVICE)  # I=2, B=2, k=2, n=3
    perm, start = kernel().csc_slots(idx, 3)
    assert start.tolist() == [0, 1, 1, 3, 4, 6, 6]
    assert perm[:6].tolist() == [2, 0, 3, 7, 4, 5]  # feature order, slot order within a feature
    assert sorted(perm[6:].tolist()) == [1, 6]  # the empty slots, past every feature
