"""The Triton kernels (supcomp.kernels) against the pure-torch reference (supcomp.ops.naive).

On a machine without CUDA the kernels run on CPU tensors under Triton's
interpreter (TRITON_INTERPRET=1, set below before triton is imported), which
is slow: sizes stay small. The reference is evaluated in float64 on the same
(already rounded) inputs; every output and gradient is compared by relative
error ||out - ref|| / max(||ref||, floor).
"""
import importlib
import os

import torch

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA:
    # Must happen before triton (or supcomp.kernels) is imported: @triton.jit
    # picks the interpreter at decoration time.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from supcomp.ops import naive  # noqa: E402

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

if not ON_CUDA and not INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET is disabled: Triton kernels cannot run", allow_module_level=True)

_KERNEL_MODULES = ["_utils", "sparse_encode", "relu_readout", "relu_readout_topk", "superpose"]


def _load_kernels():
    """supcomp.kernels, re-imported if something imported it before TRITON_INTERPRET was set."""
    K = importlib.import_module("supcomp.kernels")
    if not ON_CUDA:
        from triton.runtime.interpreter import InterpretedFunction

        probe = importlib.import_module("supcomp.kernels.sparse_encode")._sparse_encode_forward_kernel
        if not isinstance(probe, InterpretedFunction):
            for name in _KERNEL_MODULES:
                importlib.reload(importlib.import_module(f"supcomp.kernels.{name}"))
            K = importlib.reload(K)
    return K


K = _load_kernels()
topk_mod = importlib.import_module("supcomp.kernels.relu_readout_topk")

pytestmark = pytest.mark.triton

# Relative-error tolerances per input dtype (outputs are rounded to that dtype).
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
FWD_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
BWD_DTYPES = [torch.float32, torch.float16]


# ----------------------------------------------------------------------------- helpers


def rel_err(out, ref, floor=1e-6):
    out = out.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    if ref.numel() == 0:
        return 0.0
    assert torch.isfinite(out).all(), "non-finite output"
    return ((out - ref).norm() / max(ref.norm().item(), floor)).item()


def assert_close(out, ref, dtype, what=""):
    assert out.dtype == dtype, f"{what}: dtype {out.dtype}, expected {dtype}"
    assert out.device.type == DEVICE.type, f"{what}: on {out.device}"
    err = rel_err(out, ref)
    assert err <= TOL[dtype], f"{what}: relative error {err:.3g} > {TOL[dtype]:.1g}"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_codes(I, B, n, k, g):
    """indices [I, B, k] in [-1, n) with -1 padding, a duplicate in a row and an all-empty row; values [I, B, k]."""
    idx = torch.randint(0, n, (I, B, k), generator=g)
    pad = torch.rand(I, B, k, generator=g) < 0.25
    idx = torch.where(pad, torch.full_like(idx, -1), idx)
    if B > 0:
        idx[:, 0, :] = -1  # all-empty row
    if B > 1 and k > 1:
        idx[:, 1, 0] = idx[:, 1, 1] = n // 2  # duplicate feature in one row
    if B > 2 and k > 2:
        idx[:, 2, -1] = -1  # padding at the end
        idx[:, 2, 0] = n - 1  # last feature
    vals = torch.randn(I, B, k, generator=g)
    return idx, vals


def to_dev(*ts, dtype=None):
    out = []
    for t in ts:
        if t.is_floating_point() and dtype is not None:
            t = t.to(dtype)
        out.append(t.to(DEVICE).contiguous())
    return out


def f64(t):
    return t.detach().to("cpu", torch.float64)


def cpu(t):
    return t.detach().to("cpu")


# ----------------------------------------------------------------------------- meta


def test_checker_detects_errors():
    """The comparison used below is able to fail."""
    ref = torch.randn(3, 7, 5, generator=gen(0), dtype=torch.float64)
    bad = ref.clone()
    bad[1, 2, 3] += 0.1 * ref.norm()
    with pytest.raises(AssertionError):
        assert_close(bad.to(DEVICE, torch.float32), ref, torch.float32)
    assert_close(ref.to(DEVICE, torch.float32), ref, torch.float32)


# ----------------------------------------------------------------------------- sparse_encode

ENC_SHAPES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
    (2, 1, 100, 5, 3),
]


@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", ENC_SHAPES)
def test_sparse_encode_forward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(1)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    idx_d, vals_d, W_d = to_dev(idx, vals, W, dtype=dtype)
    h = K.sparse_encode_forward(idx_d, vals_d, W_d)
    ref = naive.sparse_encode_forward(cpu(idx_d), f64(vals_d), f64(W_d))
    assert_close(h, ref, dtype, "h")
    assert (cpu(h)[:, 0] == 0).all(), "all-empty row must give h = 0"


def test_sparse_encode_empty_slot_reads_nothing():
    """-1 slots are masked, not multiplied by 0: an inf in W row 0 must not leak (as in naive.py)."""
    I, B, n, d, k = 2, 7, 37, 24, 3
    idx, vals = make_codes(I, B, n, k, gen(2))
    idx = torch.where(idx == 0, torch.ones_like(idx), idx)
    W = torch.randn(I, n, d, generator=gen(3))
    W[:, 0, :] = float("inf")
    idx_d, vals_d, W_d = to_dev(idx, vals, W, dtype=torch.float32)
    h = K.sparse_encode_forward(idx_d, vals_d, W_d)
    assert torch.isfinite(cpu(h)).all()
    assert_close(h, naive.sparse_encode_forward(idx, f64(vals_d), f64(W_d)), torch.float32)


@pytest.mark.parametrize("dtype", BWD_DTYPES)
@pytest.mark.parametrize("shape", ENC_SHAPES)
def test_sparse_encode_backward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(4)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=dtype)
    gv, gW = K.sparse_encode_backward(gh_d, idx_d, vals_d, W_d, True, True)
    rv, rW = naive.sparse_encode_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert_close(gv, rv, dtype, "grad_values")
    assert_close(gW, rW, dtype, "grad_W")
    assert (cpu(gv)[:, 0] == 0).all(), "empty slots get zero grad_values"


@pytest.mark.parametrize("need", [(True, False), (False, True), (False, False)])
def test_sparse_encode_backward_need_flags(need):
    I, B, n, d, k = 2, 7, 37, 24, 3
    g = gen(5)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=torch.float32)
    gv, gW = K.sparse_encode_backward(gh_d, idx_d, vals_d, W_d, *need)
    rv, rW = naive.sparse_encode_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert (gv is not None) == need[0] and (gW is not None) == need[1]
    if need[0]:
        assert_close(gv, rv, torch.float32, "grad_values")
    if need[1]:
        assert_close(gW, rW, torch.float32, "grad_W")


def test_sparse_encode_heavy_duplicates():
    """Many rows hitting the same few features: the scatter must sum every contribution."""
    I, B, n, d, k = 2, 33, 37, 5, 7
    g = gen(6)
    idx = torch.randint(-1, 3, (I, B, k), generator=g)  # only features 0..2
    vals = torch.randn(I, B, k, generator=g)
    W = torch.randn(I, n, d, generator=g)
    gh = torch.randn(I, B, d, generator=g)
    idx_d, vals_d, W_d, gh_d = to_dev(idx, vals, W, gh, dtype=torch.float32)
    gv, gW = K.sparse_encode_backward(gh_d, idx_d, vals_d, W_d, True, True)
    rv, rW = naive.sparse_encode_backward(f64(gh_d), idx, f64(vals_d), f64(W_d), True, True)
    assert_close(gv, rv, torch.float32, "grad_values")
    assert_close(gW, rW, torch.float32, "grad_W")
    assert (cpu(gW)[:, 3:] == 0).all(), "rows that never occur get no gradient"


# ----------------------------------------------------------------------------- relu_readout

RO_SHAPES = [  # I, B, n, d
    (1, 7, 37, 5),
    (3, 33, 100, 24),
    (3, 1, 37, 48),
]


def make_readout(I, B, n, d, g):
    h = torch.randn(I, B, d, generator=g)
    W = torch.randn(I, n, d, generator=g) / d ** 0.5
    b = 0.5 * torch.randn(I, n, generator=g)
    return h, W, b


@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", RO_SHAPES)
def test_relu_readout_forward(shape, dtype):
    h, W, b = make_readout(*shape, gen(7))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    y = K.relu_readout_forward(h_d, W_d, b_d)
    ref = naive.relu_readout_forward(f64(h_d), f64(W_d), f64(b_d))
    assert_close(y, ref, dtype, "y")
    assert (cpu(y) >= 0).all()


@pytest.mark.parametrize("dtype", BWD_DTYPES)
@pytest.mark.parametrize("shape", RO_SHAPES)
def test_relu_readout_backward(shape, dtype):
    I, B, n, d = shape
    g = gen(8)
    h, W, b = make_readout(I, B, n, d, g)
    gy = torch.randn(I, B, n, generator=g)
    h_d, W_d, b_d, gy_d = to_dev(h, W, b, gy, dtype=dtype)
    # The same y (rounded to dtype) for kernel and reference, so the ReLU masks agree.
    y_d = naive.relu_readout_forward(f64(h_d), f64(W_d), f64(b_d)).to(DEVICE, dtype)
    assert 0.2 < (cpu(y_d) > 0).float().mean() < 0.8, "the mask should matter"
    gh, gW, gb = K.relu_readout_backward(gy_d, y_d, h_d, W_d)
    rh, rW, rb = naive.relu_readout_backward(f64(gy_d), f64(y_d), f64(h_d), f64(W_d))
    assert_close(gh, rh, dtype, "grad_h")
    assert_close(gW, rW, dtype, "grad_W")
    assert_close(gb, rb, dtype, "grad_b")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("gemm", ["fused", "cublas"])
def test_relu_readout_gemm_strategies(gemm, dtype, monkeypatch):
    """Both GEMM strategies of kernels/relu_readout.py (whatever "auto" picks on this machine)."""
    import supcomp.kernels.relu_readout as RR

    monkeypatch.setattr(RR, "GEMM", gemm)
    for I in (1, 2):  # one instance takes addmm in the cublas strategy, several baddbmm
        B, n, d = 37, 77, 24  # B not a multiple of the epilogue's 32-row blocks
        g = gen(11)
        h, W, b = make_readout(I, B, n, d, g)
        gy = torch.randn(I, B, n, generator=g)
        h_d, W_d, b_d, gy_d = to_dev(h, W, b, gy, dtype=dtype)
        y = K.relu_readout_forward(h_d, W_d, b_d)
        assert_close(y, naive.relu_readout_forward(f64(h_d), f64(W_d), f64(b_d)), dtype, "y")
        y_d = naive.relu_readout_forward(f64(h_d), f64(W_d), f64(b_d)).to(DEVICE, dtype)
        gh, gW, gb = K.relu_readout_backward(gy_d, y_d, h_d, W_d)
        rh, rW, rb = naive.relu_readout_backward(f64(gy_d), f64(y_d), f64(h_d), f64(W_d))
        assert_close(gh, rh, dtype, "grad_h")
        assert_close(gW, rW, dtype, "grad_W")
        assert_close(gb, rb, dtype, "grad_b")
    monkeypatch.setattr(RR, "GEMM", "bogus")
    with pytest.raises(ValueError, match="SUPCOMP_TRITON_GEMM"):
        K.relu_readout_forward(h_d, W_d, b_d)


# ----------------------------------------------------------------------------- relu_readout_topk


def check_topk(v, i, h, W, b, k, dtype, exact):
    """v, i from the kernel; h, W, b the (rounded) inputs; exact: indices must equal naive's bit for bit."""
    rv, ri = naive.relu_readout_topk_forward(f64(h), f64(W), f64(b), k)
    assert i.dtype == torch.int64 and v.dtype == dtype
    assert v.shape == rv.shape and i.shape == ri.shape
    assert i.device.type == DEVICE.type, f"topk indices: on {i.device}"
    assert_close(v, rv, dtype, "topk values")  # checks the device of v, then compares on the CPU
    v, i = cpu(v), cpu(i)
    assert torch.equal(i == -1, v == 0), "fill rule: index -1 exactly where value 0"
    if exact:
        assert torch.equal(i, ri), "topk indices"
        return
    # Up to near-ties: the chosen entries are the scores they claim, sorted, distinct.
    y = naive.relu_readout_forward(f64(h), f64(W), f64(b))
    got = torch.where(i >= 0, y.gather(-1, i.clamp(min=0)), torch.zeros((), dtype=torch.float64))
    assert rel_err(v, got) <= TOL[dtype]
    assert (v[..., :-1] >= v[..., 1:]).all(), "sorted descending"
    srt = torch.sort(torch.where(i >= 0, i, -1 - torch.arange(i.shape[-1])), dim=-1).values
    assert (srt[..., 1:] != srt[..., :-1]).all(), "distinct indices"
    # Indices agree wherever the reference has no near-tie around that rank.
    tol = 8 * TOL[dtype] * max(rv.abs().max().item(), 1.0)
    ref_sorted = torch.sort(y, dim=-1, descending=True).values
    nxt = ref_sorted[..., 1:k + 1] if k < y.shape[-1] else torch.cat([ref_sorted[..., 1:], torch.full_like(ref_sorted[..., :1], -1.0)], -1)
    prv = torch.cat([torch.full_like(ref_sorted[..., :1], float("inf")), ref_sorted[..., :k - 1]], -1)
    clear = ((ref_sorted[..., :k] - nxt) > tol) & ((prv - ref_sorted[..., :k]) > tol)
    assert torch.equal(i[clear], ri[clear]), "topk indices away from near-ties"


TOPK_CASES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
    (2, 7, 37, 5, 37),  # k == n
    (1, 1, 100, 24, 100),  # k == n, n not a power of two
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", TOPK_CASES)
def test_relu_readout_topk_random(case, dtype):
    I, B, n, d, k = case
    h, W, b = make_readout(I, B, n, d, gen(9))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("gemm", ["fused", "cublas"])
def test_relu_readout_topk_gemm_strategies(gemm, dtype, monkeypatch):
    """Both strategies, with tiles small enough that rows and features span several tiles, and exact ties."""
    import supcomp.kernels.relu_readout as RR
    import supcomp.kernels.relu_readout_topk as RT

    monkeypatch.setattr(RR, "GEMM", gemm)
    monkeypatch.setattr(RT, "CUBLAS_TILE_ELEMENTS", 2 * 13 * 17)
    for case, exact in ((TOPK_CASES[0], False), (TOPK_CASES[-1], False)):
        I, B, n, d, k = case
        h, W, b = make_readout(I, B, n, d, gen(12))
        h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
        v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=exact)
    I, B, n, d, k = 2, 9, 61, 5, 7
    h, W, b = make_integer_readout(I, B, n, d, gen(13))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=True)


def make_integer_readout(I, B, n, d, g, bias_shift=0):
    """Small-integer inputs: every score is exact in fp16/fp32 and ties are everywhere."""
    h = torch.randint(-2, 3, (I, B, d), generator=g).double()
    W = torch.randint(-1, 2, (I, n, d), generator=g).double()
    b = torch.randint(-2, 3, (I, n), generator=g).double() + bias_shift
    return h, W, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", TOPK_CASES)
def test_relu_readout_topk_ties_exact(case, dtype):
    """Ties go to the lower index, exactly as naive.py's stable sort."""
    I, B, n, d, k = case
    h, W, b = make_integer_readout(I, B, n, d, gen(10))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=dtype)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
    check_topk(v, i, h_d, W_d, b_d, k, dtype, exact=True)


@pytest.mark.parametrize("k", [3, 7, 37])
def test_relu_readout_topk_few_positive(k):
    """Fewer than k positive scores (and all-zero rows): the tail is index -1 / value 0."""
    I, B, n, d = 3, 7, 37, 5
    h, W, b = make_integer_readout(I, B, n, d, gen(11), bias_shift=-6)
    h[:, 0] = 0  # all scores of row 0 are b <= -4: no positive entry at all
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
    npos = (naive.relu_readout_forward(h, W, b) > 0).sum(-1)
    assert (npos < k).any() and (npos[:, 0] == 0).all()
    assert (cpu(i)[:, 0] == -1).all() and (cpu(v)[:, 0] == 0).all()
    check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)


@pytest.mark.parametrize("block_n,target", [(16, 1), (16, 64), (128, 64)])
def test_relu_readout_topk_chunks_and_tiles(monkeypatch, block_n, target):
    """Several BLOCK_N tiles per chunk (the running merge) and several chunks (the final torch step)."""
    monkeypatch.setattr(topk_mod, "MAX_BLOCK_N", block_n)
    monkeypatch.setattr(topk_mod, "TARGET_PROGRAMS", target)
    for seed, (I, B, n, d, k) in enumerate([(3, 7, 100, 24, 7), (1, 33, 100, 5, 3), (2, 7, 37, 5, 37)]):
        h, W, b = make_integer_readout(I, B, n, d, gen(20 + seed))
        h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
        v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)
    h, W, b = make_readout(3, 7, 100, 24, gen(30))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, 7)
    check_topk(v, i, h_d, W_d, b_d, 7, torch.float32, exact=False)


def test_relu_readout_topk_large_k_fallback(monkeypatch):
    """k above the kernel's register budget takes the sliced readout + sort path."""
    monkeypatch.setattr(topk_mod, "MAX_KERNEL_K", 2)
    monkeypatch.setattr(topk_mod, "FALLBACK_SLICE_ELEMS", 3 * 37 * 3)  # 3 rows per slice
    h, W, b = make_integer_readout(3, 7, 37, 5, gen(12))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    for k in (7, 37):
        v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, k)
        check_topk(v, i, h_d, W_d, b_d, k, torch.float32, exact=True)


def test_relu_readout_topk_k_above_n():
    """k > n gives n slots, like naive.py's sort(...)[..., :k]."""
    h, W, b = make_integer_readout(2, 7, 37, 5, gen(13))
    h_d, W_d, b_d = to_dev(h, W, b, dtype=torch.float32)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, 50)
    check_topk(v, i, h_d, W_d, b_d, 50, torch.float32, exact=True)


# ----------------------------------------------------------------------------- superpose

SUP_SHAPES = [  # I, B, n, d, k
    (1, 7, 37, 5, 1),
    (3, 33, 100, 24, 7),
    (3, 7, 37, 48, 3),
]


@pytest.mark.parametrize("dtype", FWD_DTYPES)
@pytest.mark.parametrize("shape", SUP_SHAPES)
def test_superpose_forward(shape, dtype):
    I, B, n, d, k = shape
    g = gen(14)
    idx, vals = make_codes(I, B, n, k, g)
    W = torch.randn(I, n, d, generator=g) / d ** 0.25
    b = 0.3 * torch.randn(I, n, generator=g)
    idx_d, vals_d, W_d, b_d = to_dev(idx, vals, W, b, dtype=dtype)
    y = K.superpose_forward(idx_d, vals_d, W_d, b_d)
    ref = naive.superpose_forward(idx, f64(vals_d), f64(W_d), f64(b_d))
    assert 0.1 < (ref > 0).double().mean() < 0.9
    assert_close(y, ref, dtype, "y")
    # The all-empty row 0 reads out relu(b).
    assert rel_err(cpu(y)[:, 0], torch.relu(f64(b_d))) <= TOL[dtype]


# ----------------------------------------------------------------------------- empty sizes


@pytest.mark.parametrize("I,B,n,d,k", [(3, 0, 37, 5, 3), (0, 7, 37, 5, 3), (2, 7, 37, 5, 0), (2, 7, 37, 0, 3)])
def test_empty_sizes(I, B, n, d, k):
    g = gen(15)
    idx, vals = make_codes(I, B, n, k, g) if I * B * k else (torch.zeros(I, B, k, dtype=torch.int64), torch.zeros(I, B, k))
    W = torch.randn(I, n, d, generator=g)
    b = torch.randn(I, n, generator=g)
    h = torch.randn(I, B, d, generator=g)
    gy = torch.randn(I, B, n, generator=g)
    dt = torch.float32
    idx_d, vals_d, W_d, b_d, h_d, gy_d = to_dev(idx, vals, W, b, h, gy, dtype=dt)
    y_d = naive.relu_readout_forward(h, W, b).to(DEVICE, dt)

    assert_close(K.sparse_encode_forward(idx_d, vals_d, W_d), naive.sparse_encode_forward(idx, vals.double(), W.double()), dt)
    gv, gW = K.sparse_encode_backward(h_d, idx_d, vals_d, W_d, True, True)
    if d > 0:
        rv, rW = naive.sparse_encode_backward(h.double(), idx, vals.double(), W.double(), True, True)
    else:  # naive.py's index_add_ cannot reshape [..., 0]; the answer is plain zeros
        rv, rW = torch.zeros(I, B, k, dtype=torch.float64), torch.zeros(I, n, 0, dtype=torch.float64)
    assert_close(gv, rv, dt)
    assert_close(gW, rW, dt)
    assert_close(K.relu_readout_forward(h_d, W_d, b_d), naive.relu_readout_forward(h.double(), W.double(), b.double()), dt)
    out = K.relu_readout_backward(gy_d, y_d, h_d, W_d)
    ref = naive.relu_readout_backward(gy.double(), y_d.cpu().double(), h.double(), W.double())
    for o, r in zip(out, ref):
        assert_close(o, r, dt)
    kk = max(k, 1)
    v, i = K.relu_readout_topk_forward(h_d, W_d, b_d, kk)
    rv, ri = naive.relu_readout_topk_forward(h.double(), W.double(), b.double(), kk)
    assert v.shape == rv.shape and torch.equal(cpu(i), ri)
    assert_close(v, rv, dt)
    assert_close(K.superpose_forward(idx_d, vals_d, W_d, b_d), naive.superpose_forward(idx, vals.double(), W.double(), b.double()), dt)
