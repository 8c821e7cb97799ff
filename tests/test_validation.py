"""Bad input gets a clear exception naming the argument, on every backend, before any kernel runs."""

import pytest
import torch

from supcomp import _C
from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend
from supcomp.sparse import dense_to_padded, padded_to_dense

n, d = 10, 4
W = torch.randn(n, d)
b = torch.zeros(n)
idx = torch.tensor([[0, 3, -1]])
val = torch.ones(1, 3)
h = torch.randn(2, d)

BAD = [
    # (call, exception type, text the message must contain)
    (lambda: sparse_encode(torch.tensor([[0, 10]]), torch.ones(1, 2), W), IndexError, "indices: index 10"),
    (lambda: sparse_encode(torch.tensor([[0, -2]]), torch.ones(1, 2), W), IndexError, "indices: index -2"),
    (lambda: sparse_encode(idx.float(), val, W), TypeError, "indices: expected int64 or int32"),
    (lambda: sparse_encode(idx, val.double(), W), TypeError, "values: dtype torch.float64 does not match W"),
    (lambda: sparse_encode(idx, torch.ones(1, 2), W), ValueError, "values: shape [1, 2] does not match indices"),
    (lambda: sparse_encode(idx, val, torch.randn(n)), ValueError, "W: expected [n_features, d]"),
    (lambda: sparse_encode(idx, val, torch.randn(2, n, d)), ValueError, "indices: leading (instance) size 1"),
    (lambda: sparse_encode(idx, val, W.to(torch.int32)), TypeError, "W: expected a floating dtype"),
    (lambda: sparse_encode(idx, val.to("meta"), W), ValueError, "values: on device meta"),
    (lambda: relu_readout(torch.randn(2, d + 1), W, b), ValueError, "h: last dimension 5 does not match W's d = 4"),
    (lambda: relu_readout(h, W, torch.zeros(n + 1)), ValueError, "b: expected shape [10]"),
    (lambda: relu_readout(h, W, b.double()), TypeError, "b: dtype torch.float64 does not match W"),
    (lambda: relu_readout(h.double(), W, b), TypeError, "h: dtype torch.float64 does not match W"),
    (lambda: relu_readout_topk(h, W, b, n + 1), ValueError, "k: expected 0 <= k <= n_features = 10, got 11"),
    (lambda: relu_readout_topk(h, W, b, -1), ValueError, "k: expected 0 <= k <= n_features"),
    (lambda: relu_readout_topk(h, W, b, 2.0), TypeError, "k: expected an int"),
    (lambda: superpose(torch.tensor([[11]]), torch.ones(1, 1), W, b), IndexError, "indices: index 11"),
    (lambda: superpose(idx, val, W, torch.zeros(2, n)), ValueError, "b: expected shape [10]"),
    (lambda: dense_to_padded(torch.ones(2, 5), k=3), ValueError, "k: a row of x has 5 nonzero entries"),
    (lambda: padded_to_dense(torch.tensor([[7]]), torch.ones(1, 1), 5), IndexError, "indices: index 7"),
]


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_input_raises(backend, i):
    call, exc, text = BAD[i]
    with use_backend(backend), pytest.raises(exc) as info:
        call()
    assert text in str(info.value), f"message {str(info.value)!r} lacks {text!r}"


def test_cpp_checks_bounds_before_reading():
    """The raw C++ entry points check indices themselves (for callers that skip the Python layer)."""
    W3 = W[None].contiguous()
    out = torch.empty(1, 1, d)
    with pytest.raises(IndexError, match="indices: index 1000000"):
        _C.sparse_encode_forward(
            torch.tensor([[[0, 1_000_000]]]).numpy(), torch.ones(1, 1, 2).numpy(), W3.numpy(), out.numpy()
        )
    with pytest.raises(ValueError, match=r"out: expected shape \[1, 1, 4\]"):
        _C.sparse_encode_forward(
            torch.tensor([[[0]]]).numpy(), torch.ones(1, 1, 1).numpy(), W3.numpy(), torch.empty(1, 2, d).numpy()
        )
    with pytest.raises(TypeError):  # a wrong dtype never silently copies
        _C.sparse_encode_forward(
            torch.tensor([[[0]]]).numpy(), torch.ones(1, 1, 1).double().numpy(), W3.numpy(), out.numpy()
        )
