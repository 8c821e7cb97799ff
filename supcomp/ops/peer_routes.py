"""The library routines a user would call, as exact alternative implementations of supcomp's ops.

Each function here takes an op's canonical layout (see the op's module) and returns what the op's
reference returns: same values within float rounding, the same zeros for empty slots (``-1`` ids),
and never a NaN/inf carried from a row into a slot that does not read it. They exist so that an
op can run whichever of its own kernel and the peer routine is faster (the tables in
:mod:`supcomp.ops.gpu_table` and the CPU rule in :mod:`supcomp.ops.sparse_encode`), with the same
behaviour whichever runs. The index range is checked by the caller (the op), before any route runs.

Routes (``(indices, values)`` in that order, as everywhere):

* :func:`sparse_encode_embedding_bag`: ``F.embedding_bag(mode="sum", per_sample_weights=values)``
  over the ``[I * n, d]`` flattened weights, per-instance offsets added to the ids.
* :func:`sparse_encode_sparse_csr`: ``torch.sparse.mm`` of a CSR ``[I * B, I * n]`` block-diagonal
  code matrix with the flattened weights (cuSPARSE SpMM on CUDA).
* :func:`relu_readout_addmm`: ``relu(addmm(b, h, W.T))`` per instance.
* :func:`relu_readout_topk_values_indices`: ``topk(relu(addmm(b, h, W.T)), k)`` per instance.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import checks

__all__ = [
    "embedding_bag_2d",
    "relu_readout_addmm",
    "relu_readout_topk_values_indices",
    "sparse_encode_embedding_bag",
    "sparse_encode_sparse_csr",
]


def _flat_slots(indices: torch.Tensor, values: torch.Tensor, n: int, sync_free: bool | None = None):
    """The slots of [I, B, k] codes with the empty ones moved out of the rows, as bag / CSR input.

    Returns (ids [N], vals [N], offsets [I*B + 2]): bag r = ids[offsets[r]:offsets[r + 1]] holds the
    valid slots of row r in slot order, ids offset by ``i * n`` for instance i. One more bag (index
    I*B, up to offsets[-1] = N) holds the empty slots, pointing at row 0 with weight 0; its output
    is dropped by the caller, so whatever row 0 holds (inf, NaN) never reaches an output row. On
    CUDA (``sync_free``, default: where ``checks.host_checks`` is false) there is no host sync: the empty slots are moved to the
    end by a stable sort of the "empty" flag, not cut off at a data-dependent size. On CPU they are
    dropped (that bag is empty).
    """
    if sync_free is None:
        sync_free = not checks.host_checks(indices)
    I, B, k = indices.shape
    valid = indices >= 0
    base = torch.arange(I, device=indices.device, dtype=indices.dtype).view(I, 1, 1) * n
    ids = torch.where(valid, indices + base, torch.zeros((), dtype=indices.dtype, device=indices.device)).reshape(-1)
    vals = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).reshape(-1)
    offsets = torch.empty(I * B + 2, dtype=torch.int64, device=indices.device)
    offsets[0] = 0
    torch.cumsum(valid.reshape(I * B, k).sum(1), 0, out=offsets[1 : I * B + 1])
    if not sync_free:
        if not bool(valid.all()):
            keep = valid.reshape(-1)
            ids, vals = ids[keep], vals[keep]
    else:
        order = torch.sort((~valid).reshape(-1).to(torch.uint8), stable=True).indices
        ids, vals = ids[order], vals[order]
    offsets[-1] = ids.shape[0]
    return ids, vals, offsets


def sparse_encode_embedding_bag(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """sparse_encode forward through ``F.embedding_bag``: indices/values [I, B, k], W [I, n, d] -> h [I, B, d].

    The sum of a row is taken in slot order (embedding_bag's order), as in supcomp's row-major kernels.
    """
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    if I * B * d == 0 or n == 0 or k == 0:  # nothing to gather: every row is an empty sum
        return W.new_zeros(I, B, d)
    if I == 1 and checks.host_checks(indices) and bool((indices >= 0).all()):
        # fixed-size bags, the [B, k] form: embedding_bag's fastest, no offsets to build
        return F.embedding_bag(indices[0], W[0], mode="sum", per_sample_weights=values[0])[None]
    ids, vals, offsets = _flat_slots(indices, values, n)
    h = F.embedding_bag(
        ids, W.reshape(I * n, d), offsets, mode="sum", per_sample_weights=vals, include_last_offset=True
    )
    return h[: I * B].view(I, B, d)


def embedding_bag_2d(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """One instance, every slot filled: ``F.embedding_bag`` on the [B, k] ids -> h [1, B, d] (no checks).

    indices [1, B, k] must hold ids in [0, n) only; embedding_bag raises (RuntimeError) on any other
    id, an empty slot ``-1`` included, and the caller then runs its own checked kernel.
    """
    return F.embedding_bag(indices[0], W[0], mode="sum", per_sample_weights=values[0])[None]


def sparse_encode_sparse_csr(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """sparse_encode forward as ``torch.sparse.mm(x_csr, W)``: indices/values [I, B, k], W [I, n, d] -> h [I, B, d].

    The code matrix is block diagonal over instances, ``[I * B, I * n]`` (plus one dropped row for
    the empty slots); duplicate ids in a row stay separate entries and add up. torch.sparse takes
    float32/float64 on CPU and every float dtype on CUDA (cuSPARSE SpMM).
    """
    I, B, k = indices.shape
    n, d = W.shape[1], W.shape[2]
    if I * B * d == 0 or n == 0 or k == 0:
        return W.new_zeros(I, B, d)
    ids, vals, offsets = _flat_slots(indices, values, n)
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        x = torch.sparse_csr_tensor(offsets, ids, vals, size=(I * B + 1, I * n), check_invariants=False)
    return torch.sparse.mm(x, W.reshape(I * n, d))[: I * B].view(I, B, d)


def relu_readout_addmm(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """relu(h @ W.T + b) per instance: h [I, B, d], W [I, n, d], b [I, n] -> [I, B, n].

    One ``baddbmm`` (cuBLAS; the bias broadcast in its epilogue) and an in-place ReLU; for one
    instance ``torch._addmm_activation`` (cuBLASLt's fused bias+ReLU epilogue) when it exists.
    """
    if h.shape[0] == 1 and hasattr(torch, "_addmm_activation") and h.shape[1] > 0:
        return torch._addmm_activation(b[0], h[0], W[0].T, use_gelu=False)[None]
    return torch.baddbmm(b[:, None, :], h, W.transpose(1, 2)).relu_()


def relu_readout_topk_values_indices(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, k: int):
    """``topk(relu(addmm(b, h, W.T)), k)`` per instance -> (values [I, B, k], indices [I, B, k] int64).

    The order (values, indices) is the canonical op's (``supcomp.ops.relu_readout_topk``'s
    implementations). The op's rules hold: NaN scores are never selected, a slot whose value is 0
    (fewer than k positive entries) gets index -1 and value 0. Ties among equal positive values may
    pick a different (equally valid) feature than the kernels, whose rule is "lower index first".
    Holds the [I, B, n] matrix (the kernels never do).
    """
    y = relu_readout_addmm(h, W, b)
    y = torch.nan_to_num_(y, nan=0.0, posinf=float("inf"), neginf=0.0)
    vals, idx = torch.topk(y, k, dim=-1, largest=True, sorted=True)
    pos = vals > 0
    return torch.where(pos, vals, torch.zeros((), dtype=vals.dtype, device=vals.device)), torch.where(
        pos, idx, torch.full((), -1, dtype=idx.dtype, device=idx.device)
    )
