"""The screened float32 CPU route of relu_readout_topk (supcomp.ops.relu_readout_topk_screen): the exact float32
top-k whatever the bfloat16 GEMM's rounding. Against the float64 reference and the unscreened tiles: random and
odd sizes, exact ties, rows that must fall back (non-finite, too many candidates), thread counts, gradients,
the check that the GEMM accumulates in float32, and the kernel's own argument checks."""

import importlib

import numpy as np
import pytest
import torch
from utils import assert_rel_close, gen, make_integer_readout

from supcomp import _C
from supcomp.ops import relu_readout_topk

SCREEN = importlib.import_module("supcomp.ops.relu_readout_topk_screen")
TOPK = importlib.import_module("supcomp.ops.relu_readout_topk")


@pytest.fixture
def forced(monkeypatch):
    """The route at every size; returns the list its calls are recorded in (one entry per call)."""
    monkeypatch.setenv("SUPCOMP_TOPK_SCREEN", "1")
    calls = []
    real = SCREEN.screened_forward

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(SCREEN, "screened_forward", spy)
    return calls


def _inputs(I, B, n, d, seed, scale=1.0):
    g = gen(seed)
    h = torch.randn(I, B, d, generator=g) * scale
    W = torch.randn(I, n, d, generator=g) / d**0.5
    b = torch.randn(I, n, generator=g) * 0.3 - 0.1
    return h, W, b


def _scores64(h, W, b):
    return torch.einsum("ibd,ind->ibn", h.double(), W.double()) + b.double()[:, None, :]


def assert_exact_topk(idx, vals, h, W, b, k):
    """Each selected value is its feature's score, and the values are the float64 top-k's (to float32 rounding)."""
    full = _scores64(h, W, b).clamp(min=0)
    ref = full.sort(dim=-1, descending=True).values[..., :k]
    assert_rel_close("values", vals, ref, torch.float32)
    filled = idx >= 0
    assert torch.equal(filled, vals > 0), "a slot is filled exactly when its value is positive"
    picked = full.gather(-1, idx.clamp(min=0))
    assert_rel_close(
        "scores of the selected features", torch.where(filled, vals, 0), torch.where(filled, picked, 0), torch.float32
    )
    if k:
        rows_ok = [torch.unique(r[r >= 0]).numel() == int((r >= 0).sum()) for r in idx.reshape(-1, k)]
        assert all(rows_ok), "a feature selected twice in a row"


@pytest.mark.parametrize(
    "I,B,n,d,k",
    [(1, 37, 301, 53, 5), (3, 19, 130, 17, 1), (1, 64, 1000, 96, 64), (2, 5, 40, 8, 40), (1, 600, 700, 33, 7)],
    ids=lambda v: str(v),
)
def test_random_matches_float64(forced, I, B, n, d, k):
    h, W, b = _inputs(I, B, n, d, seed=B + n)
    idx, vals = TOPK.cpp_forward(h, W, b, k)
    assert forced, "the screened route was not taken"
    assert_exact_topk(idx, vals, h, W, b, k)


def test_public_function_takes_the_route(forced):
    h, W, b = _inputs(1, 9, 50, 12, seed=3)
    idx, vals = relu_readout_topk(h[0], W[0], b[0], 4)
    assert forced
    assert_exact_topk(idx[None], vals[None], h, W, b, 4)


def test_exact_ties_go_to_the_lower_feature(forced):
    """Small integers: every score is exact in float32 and bfloat16, and ties are everywhere."""
    h, W, b = (t.float() for t in make_integer_readout(2, 23, 61, 9, gen(7)))
    ref_idx, ref_vals = TOPK.reference_forward(h.double(), W.double(), b.double(), 11)
    idx, vals = TOPK.cpp_forward(h, W, b, 11)
    assert forced
    assert torch.equal(idx, ref_idx)
    assert torch.equal(vals, ref_vals.float())


@pytest.mark.parametrize("poison", ["nan-h", "inf-h", "huge-h", "nan-W", "inf-b"])
def test_non_finite_rows_go_to_the_exact_path(monkeypatch, poison):
    monkeypatch.setenv("SUPCOMP_TOPK_SCREEN", "1")
    h, W, b = _inputs(1, 12, 90, 16, seed=11)
    if poison == "nan-h":
        h[0, 3, 2] = float("nan")
    elif poison == "inf-h":
        h[0, 5, 0] = float("inf")
    elif poison == "huge-h":
        h[0, 7, :] = 3.4e38  # rounds to inf in bfloat16
    elif poison == "nan-W":
        W[0, 17, 4] = float("nan")
    else:
        b[0, 2] = float("inf")
    redone = []

    def exact(hh, WW, bb, k):
        redone.append(hh.shape[1])
        return TOPK.tiles_forward(hh, WW, bb, k)

    idx, vals = SCREEN.screened_forward(h, W, b, 6, exact)
    ref_idx, ref_vals = TOPK.tiles_forward(h, W, b, 6)
    expect = {"nan-h": 1, "inf-h": 1, "huge-h": 1}.get(poison, 12)  # a bad W or b poisons every row's bound
    assert redone == [expect]
    # Flagged rows are the exact path's own result on those rows; the others agree with it to float32 rounding.
    if expect == 1:
        row = {"nan-h": 3, "inf-h": 5, "huge-h": 7}[poison]
        one_idx, one_vals = TOPK.tiles_forward(h[:, row : row + 1], W, b, 6)
        assert torch.equal(idx[:, row], one_idx[:, 0]) and torch.equal(vals[:, row], one_vals[:, 0])
        keep = [r for r in range(12) if r != row]
        idx, vals, ref_idx, ref_vals = idx[:, keep], vals[:, keep], ref_idx[:, keep], ref_vals[:, keep]
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(vals, ref_vals, rtol=2e-6, atol=0)


def test_too_many_candidates_fall_back(forced):
    """All scores equal: every feature is a candidate, past the cap; the exact path keeps the lower ids."""
    h = torch.ones(1, 4, 8)
    W = torch.full((1, 3000, 8), 0.25)
    b = torch.zeros(1, 3000)
    idx, vals = TOPK.cpp_forward(h, W, b, 5)
    assert idx[0].tolist() == [[0, 1, 2, 3, 4]] * 4
    assert torch.all(vals == 2.0)


def test_result_does_not_depend_on_threads(forced):
    h, W, b = _inputs(1, 300, 2000, 40, seed=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = TOPK.cpp_forward(h, W, b, 16)
        torch.set_num_threads(2)
        two = TOPK.cpp_forward(h, W, b, 16)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_gradients_match_the_unscreened_route(monkeypatch):
    h, W, b = _inputs(1, 40, 500, 24, seed=9)
    grads = []
    for mode in ("0", "1"):
        monkeypatch.setenv("SUPCOMP_TOPK_SCREEN", mode)
        args = [t[0].clone().requires_grad_(True) for t in (h, W, b)]
        idx, vals = relu_readout_topk(*args, 8)
        (vals * torch.linspace(0.5, 1.5, 8)).sum().backward()
        grads.append((idx, [a.grad for a in args]))
    assert torch.equal(grads[0][0], grads[1][0])
    for g0, g1 in zip(grads[0][1], grads[1][1]):
        assert_rel_close("grad", g1, g0.double(), torch.float32)


def test_route_gating(monkeypatch, forced):
    h, W, b = _inputs(1, 8, 60, 10, seed=1)
    monkeypatch.setenv("SUPCOMP_TOPK_SCREEN", "0")
    TOPK.cpp_forward(h, W, b, 3)
    monkeypatch.setenv("SUPCOMP_TOPK_SCREEN", "auto")
    TOPK.cpp_forward(h, W, b, 3)  # far below MIN_WORK
    TOPK.cpp_forward(h.double(), W.double(), b.double(), 3)
    assert not forced
    assert not SCREEN.screen_wanted(h, W, 0)

    def shaped(B, n, d):  # shapes only: screen_wanted reads no data
        return torch.zeros(1, 1, d).expand(1, B, d), torch.zeros(1, 1, d).expand(1, n, d)

    assert not SCREEN.screen_wanted(*shaped(128, 1 << 20, 16), 8)  # narrow: the GEMM is output-bound
    assert not SCREEN.screen_wanted(*shaped(4096, 16384, 768), SCREEN.MAX_K + 1)
    assert SCREEN.screen_wanted(*shaped(4096, 16384, 768), 32) == SCREEN._bf16_matrix_units()


def test_a_gemm_that_accumulates_in_bfloat16_turns_the_route_off(monkeypatch, forced):
    def bf16_accumulating(hb, Wb, out):
        acc = torch.zeros(out.shape, dtype=torch.bfloat16)
        for e in range(hb.shape[1]):
            acc += hb[:, e : e + 1] * Wb[:, e]
        return out.copy_(acc)

    monkeypatch.setattr(SCREEN, "_approx_gemm", bf16_accumulating)
    SCREEN._gemm_accumulates_in_float32.cache_clear()
    try:
        h, W, b = _inputs(1, 8, 60, 48, seed=2)
        assert not SCREEN.screen_wanted(h, W, 3)
        TOPK.cpp_forward(h, W, b, 3)
        assert not forced
    finally:
        SCREEN._gemm_accumulates_in_float32.cache_clear()


def test_bf16_split_matches_torch_rounding():
    x = torch.randn(50, 77) * torch.logspace(-40, 38, 77)
    x[3, 5], x[4, 6] = float("nan"), 3.4e38
    xb, terms = SCREEN._split(x, "test")
    same = (xb.view(torch.int16) == x.bfloat16().view(torch.int16)) | (xb.isnan() & x.isnan())
    assert same.all()
    wide = xb.double()
    ok = torch.isfinite(x).all(1) & torch.isfinite(wide).all(1)
    assert_rel_close("|bf16(x)|", terms[ok, 0], wide[ok].norm(dim=1), torch.float32)
    assert_rel_close("|x - bf16(x)|", terms[ok, 1], (x.double() - wide)[ok].norm(dim=1), torch.float32)
    assert terms[3].isnan().all() and terms[4].isinf().all()
    SCREEN.clear_workspace()


def _screen_args(B=4, n=6, d=3, k=2):
    approx = np.zeros((B, n), np.uint16)
    h, W, b = np.ones((B, d), np.float32), np.ones((n, d), np.float32), np.zeros(n, np.float32)
    rt, ct = np.ones((B, 2), np.float32), np.ones((n, 2), np.float32)
    return approx, h, W, b, rt, ct, np.zeros((B, k), np.float32), np.zeros((B, k), np.int64), np.zeros(B, np.uint8)


@pytest.mark.parametrize(
    "change,match",
    [
        ("neg-row", "row_terms: norms must be >= 0"),
        ("neg-col", "col_terms: norms must be >= 0"),
        ("cap", "max_candidates: must be >= k"),
        ("r0", "r0: row block out of range"),
        ("shape", "col_terms: expected shape"),
    ],
)
def test_kernel_checks_its_arguments(change, match):
    a = list(_screen_args())
    r0, cap = 0, 6
    if change == "neg-row":
        a[4][1, 0] = -1.0
    elif change == "neg-col":
        a[5][2, 1] = -0.5
    elif change == "cap":
        cap = 1
    elif change == "r0":
        r0 = 1
    else:
        a[5] = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match=match):
        _C.topk_screen(*a, r0, cap, 1)
