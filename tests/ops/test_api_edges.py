"""The ops' and modules' surface: one sparse-code order (SparseCode), integer-like k, meta tensors,
negative-bit views, complex / conjugate tensors, a forced C++ backend with a dtype it does not take,
mixed float dtypes, and extra_repr on every module."""

import inspect

import numpy as np
import pytest
import torch
from torch import nn

import supcomp.nn as snn
from supcomp.nn import ReLUReadout, SparseEncoder, TiedSuperposition
from supcomp.ops import SparseCode, relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend
from supcomp.sparse import dense_to_padded, random_sparse

n, d = 9, 4
gen = torch.Generator().manual_seed(3)
W = torch.randn(n, d, generator=gen)
b = torch.randn(n, generator=gen) * 0.1
h = torch.randn(5, d, generator=gen)
IDX = torch.tensor([[0, 3, -1], [8, 8, 2]])
VAL = torch.rand(2, 3, generator=gen)

CALLS = {
    "sparse_encode": lambda idx, val, W, b, h: sparse_encode(idx, val, W),
    "relu_readout": lambda idx, val, W, b, h: relu_readout(h, W, b),
    "relu_readout_topk": lambda idx, val, W, b, h: relu_readout_topk(h, W, b, 3),
    "superpose": lambda idx, val, W, b, h: superpose(idx, val, W, b),
}
OPS = list(CALLS)


# ---------------------------------------------------------------- one order: (indices, values)


def test_topk_returns_a_sparse_code_in_sparse_encode_order():
    code = relu_readout_topk(h, W, b, 3)
    assert isinstance(code, SparseCode) and code._fields == ("indices", "values")
    indices, values = code
    assert indices.dtype == torch.int64 and values.dtype == torch.float32
    assert code.indices is indices and code.values is values
    # the same fields by name as torch.topk's result (whose positional order is the reverse)
    top = torch.topk(torch.relu(h @ W.T + b), 3)
    torch.testing.assert_close(code.values, top.values)
    assert torch.equal(code.indices, torch.where(top.values > 0, top.indices, -1))
    # feeds the read-in as it stands
    assert sparse_encode(*code, W).shape == h.shape


def test_modules_and_helpers_share_the_order():
    enc = SparseEncoder(n, d)
    top = ReLUReadout(tied_to=enc, k=2)
    idx, val = random_sparse(4, n, 0.3)
    code = top(enc(idx, val))
    assert isinstance(code, SparseCode) and code.indices.dtype == torch.int64
    assert enc(*code).shape == (4, d)
    padded = dense_to_padded(torch.tensor([[0.0, 2.0, 0.0, 1.0]]))
    assert isinstance(padded, SparseCode) and padded.indices.tolist() == [[1, 3]]
    assert padded.values.tolist() == [[2.0, 1.0]]


def test_sparse_code_is_exported():
    import supcomp.ops as ops

    assert "SparseCode" in ops.__all__ and ops.SparseCode is SparseCode and SparseCode.__doc__


# ---------------------------------------------------------------- integer-like k


@pytest.mark.parametrize(
    "k", [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3), torch.tensor(3, dtype=torch.int32)]
)
def test_integer_like_k(k):
    want = relu_readout_topk(h, W, b, 3)
    got = relu_readout_topk(h, W, b, k)
    assert torch.equal(got.indices, want.indices) and torch.equal(got.values, want.values)
    module = ReLUReadout(n, d, k=k)
    assert module.k == 3 and type(module.k) is int and module(h).indices.shape == (5, 3)


@pytest.mark.parametrize(
    "k",
    [True, np.bool_(True), torch.tensor(True), 3.0, np.float64(3.0), torch.tensor(3.0), torch.tensor([3]), "3"],
    ids=lambda k: f"{type(k).__name__}-{k!r}"[:40],
)
def test_k_not_integer_like_raises_naming_k(k):
    with pytest.raises(TypeError, match="^k: expected an int"):
        relu_readout_topk(h, W, b, k)
    with pytest.raises(TypeError, match="^k: expected an int"):
        ReLUReadout(n, d, k=k)


# ---------------------------------------------------------------- meta tensors: the fake implementation


@pytest.mark.parametrize("op", OPS)
def test_meta_tensors_propagate_shapes(op):
    args = [t.to("meta") for t in (IDX, VAL, W, b, h)]
    out = CALLS[op](*args)
    want = CALLS[op](IDX, VAL, W, b, h)
    for o, w in zip(out if isinstance(out, tuple) else (out,), want if isinstance(want, tuple) else (want,)):
        assert o.is_meta and o.shape == w.shape and o.dtype == w.dtype


def test_meta_modules():
    enc = SparseEncoder(n, d, n_instances=2, device="meta")
    top = ReLUReadout(tied_to=enc, k=4)
    tied = TiedSuperposition(n, d, n_instances=2, device="meta")
    idx = torch.zeros(2, 6, 3, dtype=torch.int64, device="meta")
    val = torch.zeros(2, 6, 3, device="meta")
    hh = enc(idx, val)
    assert hh.is_meta and hh.shape == (2, 6, d)
    assert top(hh).indices.shape == (2, 6, 4) and tied(idx, val).shape == (2, 6, n)


# ---------------------------------------------------------------- negative-bit views and conjugates


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("op", OPS)
def test_negative_views_are_resolved(op, backend):
    """A torch._neg_view input gives the result of its resolved copy (the C++ backend reads memory and
    would otherwise see the un-negated values, or fail in Tensor.numpy())."""
    views = [torch._neg_view(t) for t in (VAL, W, b, h)]
    assert all(v.is_neg() for v in views)
    with use_backend(backend):
        got = CALLS[op](IDX, *views)
        want = CALLS[op](IDX, *(v.resolve_neg() for v in views))
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert torch.equal(g, w)


@pytest.mark.parametrize("op", OPS)
def test_complex_and_conjugate_tensors_raise_naming_the_argument(op):
    name = "values" if op in ("sparse_encode", "superpose") else "h"
    z = {"values": VAL, "h": h}[name].to(torch.complex64).conj()
    assert z.is_conj()
    args = {"idx": IDX, "val": VAL, "W": W, "b": b, "h": h}
    args["val" if name == "values" else "h"] = z
    with pytest.raises(TypeError, match=f"^{name}: expected a floating dtype .*complex and conjugate"):
        CALLS[op](*args.values())


# ---------------------------------------------------------------- a forced C++ backend


# relu_readout_topk has a C++ half-precision path (float32 tiles); the other ops' C++ kernels do not.
HALF_CPP = {"relu_readout_topk"}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", sorted(set(OPS) - HALF_CPP))
def test_forced_cpp_with_half_precision_says_what_to_do(op, dtype):
    args = [IDX] + [t.to(dtype) for t in (VAL, W, b, h)]
    with use_backend("cpp"), pytest.raises(TypeError, match=rf"^{op}: use_backend\('cpp'\).*{dtype}; cast"):
        CALLS[op](*args)
    with use_backend(None):  # the automatic choice runs the reference in that dtype
        CALLS[op](*args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", sorted(HALF_CPP))
def test_forced_cpp_with_half_precision_runs_where_the_kernel_has_it(op, dtype):
    args = [IDX] + [t.to(dtype) for t in (VAL, W, b, h)]
    with use_backend("cpp"):
        got = CALLS[op](*args)
    with use_backend("reference"):
        ref = CALLS[op](*args)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype


# ---------------------------------------------------------------- mixed float dtypes: an error naming both


@pytest.mark.parametrize("op", OPS)
def test_mixed_dtypes_raise_naming_both(op):
    name = "values" if op in ("sparse_encode", "superpose") else "h"
    args = {"idx": IDX, "val": VAL, "W": W, "b": b, "h": h}
    args["val" if name == "values" else "h"] = args["val" if name == "values" else "h"].bfloat16()
    with pytest.raises(
        TypeError, match=rf"^{name}: dtype torch.bfloat16 does not match W dtype torch.float32; .* cast one"
    ):
        CALLS[op](*args.values())


def test_module_with_other_dtype_input_raises_and_cast_works():
    dec = ReLUReadout(n, d)
    with pytest.raises(TypeError, match="h: dtype torch.bfloat16 does not match W dtype torch.float32"):
        dec(h.bfloat16())
    assert dec.to(torch.bfloat16)(h.bfloat16()).dtype == torch.bfloat16


# ---------------------------------------------------------------- extra_repr


def test_every_module_has_an_extra_repr():
    modules = [
        c
        for _, c in inspect.getmembers(snn, inspect.isclass)
        if issubclass(c, nn.Module) and c.__module__ == snn.__name__
    ]
    assert {c.__name__ for c in modules} >= {"SparseEncoder", "ReLUReadout", "TiedSuperposition"}
    for c in modules:
        assert c.extra_repr is not nn.Module.extra_repr, c.__name__
    enc = SparseEncoder(n, d, n_instances=2)
    assert repr(enc) == f"SparseEncoder(n_features={n}, d={d}, n_instances=2)"
    tied = ReLUReadout(tied_to=enc, k=2, bias_init=-0.1)
    assert tied.extra_repr() == f"n_features={n}, d={d}, n_instances=2, tied=True, k=2, bias_init=-0.1"
    assert repr(tied).startswith("ReLUReadout(\n  n_features=")
    assert repr(TiedSuperposition(n, d)) == f"TiedSuperposition(n_features={n}, d={d})"


def test_forced_cpp_on_a_gpu_device_says_what_to_do():
    """The rule alone (no GPU needed): a forced C++ backend refuses non-CPU tensors before any kernel runs."""
    from supcomp.ops.sparse_encode import IMPLS

    with (
        use_backend("cpp"),
        pytest.raises(ValueError, match=r"^sparse_encode: use_backend\('cpp'\).*on cuda:0.*\.cpu\(\)"),
    ):
        IMPLS.backend(torch.device("cuda:0"), torch.float32)
    with use_backend("cpp"):
        assert IMPLS.backend(torch.device("cpu"), torch.float32) == "cpp"
