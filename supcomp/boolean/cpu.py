"""The "cpp" backend of the U-AND kernels: CPU tensors through ``supcomp._C`` (csrc/uand.cpp).

Same functions and canonical layout as ``supcomp.boolean.naive``. Tensors go to
C++ as zero-copy numpy views; outputs are allocated here and filled in place.
"""
from __future__ import annotations

import torch

from .. import _C
from .naive import pair_offset


def _np(t: torch.Tensor):
    return t.detach().numpy()


def _threads() -> int:
    return torch.get_num_threads()


def uand_forward(indices, values, col_ptr, col_idx, bias: float, d: int):
    out = torch.empty(indices.shape[0], d, dtype=values.dtype)
    _C.uand_forward(_np(indices), _np(values), _np(col_ptr), _np(col_idx), float(bias), _np(out), _threads())
    return out


def uand_intersect(gates, col_ptr, col_idx, d: int):
    G = gates.shape[0]
    counts = torch.empty(G, dtype=torch.int64)
    _C.uand_intersect_count(_np(gates), _np(col_ptr), _np(col_idx), _np(counts), _threads())
    row_ptr = torch.zeros(G + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=row_ptr[1:])
    nidx = torch.empty(int(row_ptr[-1]), dtype=torch.int64)
    _C.uand_intersect_fill(_np(gates), _np(col_ptr), _np(col_idx), _np(row_ptr), _np(nidx), _threads())
    return row_ptr, nidx


def uand_readout(a, row_ptr, nidx):
    # Neuron-major activations: every read-out set entry is one contiguous [B] row.
    aT = a.T.contiguous()
    outT = torch.empty(row_ptr.numel() - 1, a.shape[0], dtype=a.dtype)
    _C.uand_readout(_np(aT), _np(row_ptr), _np(nidx), _np(outT), _threads())
    return outT.T


def uand_pair_counts(col_ptr, col_idx, nrn_ptr, nrn_idx, m: int):
    counts = torch.empty(pair_offset(m, m), dtype=torch.int32)
    _C.uand_pair_counts(_np(col_ptr), _np(col_idx), _np(nrn_ptr), _np(nrn_idx), _np(counts), _threads())
    return counts


def uand_all_pairs(a, col_ptr, col_idx, nrn_ptr, nrn_idx, counts, m: int, i0: int, i1: int, out=None):
    W = pair_offset(i1, m) - pair_offset(i0, m)
    if out is None:
        out = torch.empty(a.shape[0], W, dtype=a.dtype)
    _C.uand_all_pairs(_np(a), _np(nrn_ptr), _np(nrn_idx), _np(counts), m, i0, i1, _np(out), _threads())
    return out
