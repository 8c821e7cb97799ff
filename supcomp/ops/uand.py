"""uand: the kernels of the U-AND construction (``supcomp.uand.UAnd``): forward, read-out sets, read-out.

Implementations (one table, :data:`IMPLS`): the pure-torch reference below (short and obviously
right: the tests evaluate it in float64 as the ground truth; it also builds the read-out sets for
the Triton backend on the device), the C++ kernels ``csrc/uand.cpp`` (CPU) and the Triton kernels
``kernels/uand.py`` (CUDA: the forward and the read-out). Tests: ``tests/ops/test_uand.py``;
benchmark: ``benchmarks/ops/uand.py``.

Canonical layout shared by every implementation:

    indices  int64 [B, s]      active input ids, -1 = empty slot (duplicates add up)
    values   float [B, s]      the input value of each slot (1 for boolean inputs)
    col_ptr  int64 [m + 1]     C stored by input: S_i = col_idx[col_ptr[i]:col_ptr[i+1]], sorted
    col_idx  int64 [nnz]       neuron ids in [0, d)
    nrn_ptr  int64 [d + 1]     C stored by neuron: L_n = nrn_idx[nrn_ptr[n]:nrn_ptr[n+1]], sorted
    nrn_idx  int64 [nnz]       input ids in [0, m)
    gates    int64 [G, k]      input ids of each gate (distinct within a gate)
    row_ptr  int64 [G + 1]     read-out sets R_g = S_{g_0} ∩ ... ∩ S_{g_k-1} in CSR
    nidx     int64 [nnz_R]
    a        float [B, d]      activations
    pairs    all i < j in row-major order: pair(i, j) = i (2m - i - 1) / 2 + j - i - 1
"""

from __future__ import annotations

import functools

import torch

from .. import _C
from .cpu_views import as_numpy, threads
from .dispatch import Impl, Table

# ---------------------------------------------------------------- reference (pure torch)


def pair_offset(i: int, m: int) -> int:
    """Index of the first pair (i, i+1) of row i in the row-major upper-triangle order."""
    return i * (2 * m - i - 1) // 2


def expand_csr(ptr: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor):
    """Entries of the CSR rows ``rows`` [R]: (owner [E] position in ``rows``, entries [E])."""
    lens = ptr[rows + 1] - ptr[rows]
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=idx.device), lens)
    first = torch.cumsum(lens, 0) - lens
    pos = torch.arange(owner.numel(), device=idx.device) - first[owner]
    return owner, idx[ptr[rows][owner] + pos]


def reference_forward(indices, values, col_ptr, col_idx, bias: float, d: int):
    """a [B, d] = relu(C x + bias), x[b] = sum_j values[b, j] e_{indices[b, j]}."""
    B, s = indices.shape
    flat = indices.reshape(-1)
    valid = flat >= 0
    slots = torch.arange(flat.numel(), device=flat.device)[valid]
    owner, neuron = expand_csr(col_ptr, col_idx, flat[valid])
    slot = slots[owner]
    pre = torch.zeros(B * d, dtype=values.dtype, device=values.device)
    pre.index_add_(0, (slot // max(s, 1)) * d + neuron, values.reshape(-1)[slot])
    return torch.relu(pre.view(B, d) + bias)


def reference_intersect(gates, col_ptr, col_idx, d: int):
    """Read-out sets of the gates as CSR: (row_ptr [G + 1], nidx [nnz_R]), neuron ids ascending per gate."""
    G, k = gates.shape
    owner, neuron = expand_csr(col_ptr, col_idx, gates.reshape(-1))
    # A neuron is in the intersection iff it occurs in all k lists of the gate
    # (lists hold distinct neurons and a gate distinct inputs).
    keys, counts = torch.unique(torch.div(owner, k, rounding_mode="floor") * d + neuron, return_counts=True)
    keep = keys[counts == k]
    g = torch.div(keep, d, rounding_mode="floor")
    row_ptr = torch.zeros(G + 1, dtype=torch.int64, device=gates.device)
    row_ptr[1:] = torch.cumsum(torch.bincount(g, minlength=G), 0)
    return row_ptr, keep - g * d


def reference_readout(a, row_ptr, nidx):
    """est [B, G]: mean of a over each read-out set (0 for an empty set); a transposed view of a [G, B] result."""
    G = row_ptr.numel() - 1
    sizes = row_ptr[1:] - row_ptr[:-1]
    owner = torch.repeat_interleave(torch.arange(G, device=a.device), sizes)
    outT = torch.zeros(G, a.shape[0], dtype=a.dtype, device=a.device)
    outT.index_add_(0, owner, a.T[nidx])
    return (outT / sizes.clamp(min=1).to(a.dtype)[:, None]).T


def pair_gates(m: int, i0: int, i1: int, device="cpu"):
    """All pairs (i, j), i0 <= i < i1, i < j < m, in pair order: [W, 2] int64."""
    rows = torch.arange(i0, i1, device=device)
    i = torch.repeat_interleave(rows, m - 1 - rows)
    p = torch.arange(i.numel(), device=device) + pair_offset(i0, m)
    j = p - (i * (2 * m - i - 1)) // 2 + i + 1
    return torch.stack([i, j], 1)


def reference_pair_counts(col_ptr, col_idx, nrn_ptr, nrn_idx, m: int):
    """counts [m (m - 1) / 2] int32: |S_i ∩ S_j| for every pair in pair order."""
    d = nrn_ptr.numel() - 1
    row_ptr, _ = reference_intersect(pair_gates(m, 0, m, col_idx.device), col_ptr, col_idx, d)
    return (row_ptr[1:] - row_ptr[:-1]).to(torch.int32)


def reference_all_pairs(
    a, col_ptr, col_idx, nrn_ptr, nrn_idx, counts, m: int, i0: int, i1: int, out=None, readout=None
):
    """est [B, W]: every pair of rows i0 <= i < i1 read out, into ``out`` when given.

    ``counts`` (the cached pair sizes) is unused here; ``readout`` (default ``reference_readout``)
    reads the sets, which lets the Triton backend build the sets here and read them in its kernel.
    """
    readout = readout or reference_readout
    gates = pair_gates(m, i0, i1, a.device)
    row_ptr, nidx = reference_intersect(gates, col_ptr, col_idx, a.shape[1])
    est = readout(a, row_ptr, nidx)
    return out.copy_(est) if out is not None else est.contiguous()


# ---------------------------------------------------------------- C++ (CPU)


def cpp_forward(indices, values, col_ptr, col_idx, bias: float, d: int):
    """``reference_forward`` on ``_C.uand_forward``."""
    out = torch.empty(indices.shape[0], d, dtype=values.dtype)
    _C.uand_forward(
        as_numpy(indices), as_numpy(values), as_numpy(col_ptr), as_numpy(col_idx), float(bias), as_numpy(out), threads()
    )
    return out


def cpp_intersect(gates, col_ptr, col_idx, d: int):
    """``reference_intersect`` in two C++ passes: the set sizes, then the sets."""
    G = gates.shape[0]
    counts = torch.empty(G, dtype=torch.int64)
    _C.uand_intersect_count(as_numpy(gates), as_numpy(col_ptr), as_numpy(col_idx), as_numpy(counts), threads())
    row_ptr = torch.zeros(G + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=row_ptr[1:])
    nidx = torch.empty(int(row_ptr[-1]), dtype=torch.int64)
    _C.uand_intersect_fill(
        as_numpy(gates), as_numpy(col_ptr), as_numpy(col_idx), as_numpy(row_ptr), as_numpy(nidx), threads()
    )
    return row_ptr, nidx


def cpp_readout(a, row_ptr, nidx):
    """``reference_readout`` on neuron-major activations: every set entry reads one contiguous [B] row."""
    aT = a.T.contiguous()
    outT = torch.empty(row_ptr.numel() - 1, a.shape[0], dtype=a.dtype)
    _C.uand_readout(as_numpy(aT), as_numpy(row_ptr), as_numpy(nidx), as_numpy(outT), threads())
    return outT.T


def cpp_pair_counts(col_ptr, col_idx, nrn_ptr, nrn_idx, m: int):
    """``reference_pair_counts`` on ``_C.uand_pair_counts``."""
    counts = torch.empty(pair_offset(m, m), dtype=torch.int32)
    _C.uand_pair_counts(
        as_numpy(col_ptr), as_numpy(col_idx), as_numpy(nrn_ptr), as_numpy(nrn_idx), as_numpy(counts), threads()
    )
    return counts


def cpp_all_pairs(a, col_ptr, col_idx, nrn_ptr, nrn_idx, counts, m: int, i0: int, i1: int, out=None):
    """``reference_all_pairs`` on ``_C.uand_all_pairs``, into ``out`` [B, W] when given."""
    W = pair_offset(i1, m) - pair_offset(i0, m)
    if out is None:
        out = torch.empty(a.shape[0], W, dtype=a.dtype)
    _C.uand_all_pairs(
        as_numpy(a), as_numpy(nrn_ptr), as_numpy(nrn_idx), as_numpy(counts), m, i0, i1, as_numpy(out), threads()
    )
    return out


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import uand as kernel

    return Impl(
        forward=kernel.uand_forward,
        intersect=reference_intersect,
        readout=kernel.uand_readout,
        pair_counts=reference_pair_counts,
        all_pairs=functools.partial(reference_all_pairs, readout=kernel.uand_readout),
    )


IMPLS = Table(
    "uand",
    reference=Impl(
        forward=reference_forward,
        intersect=reference_intersect,
        readout=reference_readout,
        pair_counts=reference_pair_counts,
        all_pairs=reference_all_pairs,
    ),
    cpp=Impl(
        forward=cpp_forward,
        intersect=cpp_intersect,
        readout=cpp_readout,
        pair_counts=cpp_pair_counts,
        all_pairs=cpp_all_pairs,
    ),
    triton=_triton_impl,
)
