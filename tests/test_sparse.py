"""The padded sparse layout: conversions round-trip and agree with the ops."""

import torch

from supcomp.ops import sparse_encode
from supcomp.sparse import dense_to_padded, padded_to_dense, random_sparse


def test_round_trip_odd_shapes():
    x = torch.randn(3, 5, 37) * (torch.rand(3, 5, 37) < 0.1)
    x[0, 0] = 0  # an empty row
    idx, val = dense_to_padded(x)
    assert idx.shape[:-1] == (3, 5) and idx.dtype == torch.int64
    assert (idx[0, 0] == -1).all()
    assert torch.equal(padded_to_dense(idx, val, 37), x)
    # ids listed in increasing order, padding at the end
    for row in idx.reshape(-1, idx.shape[-1]).tolist():
        filled = [i for i in row if i >= 0]
        assert filled == sorted(filled) and row[len(filled) :] == [-1] * (len(row) - len(filled))


def test_fixed_k_pads_and_duplicates_add():
    idx, val = dense_to_padded(torch.tensor([[0.0, 2.0]]), k=4)
    assert idx.tolist() == [[1, -1, -1, -1]] and val.tolist() == [[2.0, 0, 0, 0]]
    dup = padded_to_dense(torch.tensor([[1, 1, -1]]), torch.tensor([[1.0, 2.0, 5.0]]), 3)
    assert dup.tolist() == [[0.0, 3.0, 0.0]]


def test_encode_matches_dense_matmul():
    x = torch.rand(50, 64) * (torch.rand(50, 64) < 0.05)
    W = torch.randn(64, 9)
    idx, val = dense_to_padded(x)
    assert torch.allclose(sparse_encode(idx, val, W), x @ W, atol=1e-5)


def test_random_sparse_density():
    g = torch.Generator().manual_seed(0)
    idx, val = random_sparse(4000, 50, 0.1, generator=g)
    x = padded_to_dense(idx, val, 50)
    density = (x > 0).float().mean().item()
    assert abs(density - 0.1) < 0.01
    assert val.min() >= 0 and val.max() <= 1
