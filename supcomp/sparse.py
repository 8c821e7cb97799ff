"""The padded fixed-k sparse layout used by every supcomp op, and conversions.

A batch of sparse feature vectors ``x [..., n_features]`` is stored as two
tensors of shape ``[..., k]``:

* ``indices`` int64 (int32 accepted by the ops): feature ids, ``-1`` marks an empty slot;
* ``values``: the feature values (0 in empty slots).

This is the layout of the OpenAI and EleutherAI SAE kernels. Duplicate ids in
one row are allowed and add up. Every function here takes and returns the pair in
the order ``(indices, values)`` (a :class:`supcomp.ops.SparseCode`), as every op does.
"""

from __future__ import annotations

import torch

from .ops import checks as V
from .ops.sparse_code import SparseCode

__all__ = ["dense_to_padded", "padded_to_dense", "random_sparse"]


def dense_to_padded(x: torch.Tensor, k: int | None = None) -> SparseCode:
    """Dense ``x [..., n]`` (float) -> ``SparseCode(indices int64 [..., k], values [..., k])`` of its nonzeros.

    Nonzeros are listed in increasing feature order; unused slots hold ``(-1, 0)``. ``k=None`` uses the
    largest nonzero count of any row.

    Raises:
        ValueError: a 0-d ``x``, a negative or non-int ``k``, or a row with more than ``k`` nonzeros
            (nothing is dropped silently).
        TypeError: ``x`` is not a floating tensor.
    """
    V.check_float(x, "x")
    if x.dim() < 1:
        raise ValueError("x: expected shape [..., n_features], got a 0-d tensor")
    nz = x != 0
    counts = nz.sum(-1)
    most = int(counts.max()) if counts.numel() else 0
    if k is None:
        k = most
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k: expected a non-negative int or None, got {k!r}")
    if most > k:
        raise ValueError(f"k: a row of x has {most} nonzero entries, more than k = {k}; pass a larger k")
    n = x.shape[-1]
    kk = min(k, n)
    # A stable sort of the "is zero" flags brings the nonzeros first, in feature order.
    order = torch.sort((~nz).to(torch.uint8), dim=-1, stable=True).indices[..., :kk]
    vals = torch.gather(x, -1, order)
    slot = torch.arange(kk, device=x.device)
    filled = slot < counts.unsqueeze(-1)
    indices = torch.where(filled, order, torch.full_like(order, -1))
    values = torch.where(filled, vals, torch.zeros_like(vals))
    if k > kk:  # k wider than n: pad
        pad = k - kk
        indices = torch.cat([indices, indices.new_full((*indices.shape[:-1], pad), -1)], -1)
        values = torch.cat([values, values.new_zeros((*values.shape[:-1], pad))], -1)
    return SparseCode(indices, values)


def padded_to_dense(indices: torch.Tensor, values: torch.Tensor, n_features: int) -> torch.Tensor:
    """``(indices [..., k]`` int64/int32, ``values [..., k]`` float) -> dense ``x [..., n_features]`` (values'
    dtype); duplicate ids add up.

    Raises:
        ValueError: mismatched shapes, a negative or non-int ``n_features``.
        IndexError: an index outside ``[-1, n_features)``.
        TypeError: integer ``values`` or float ``indices``.
    """
    indices = V.check_indices(indices)
    V.check_float(values, "values")
    if indices.shape != values.shape:
        raise ValueError(f"values: shape {V.shape_str(values)} does not match indices {V.shape_str(indices)}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 0:
        raise ValueError(f"n_features: expected a non-negative int, got {n_features!r}")
    V.check_index_range(indices, n_features)
    out = values.new_zeros(*values.shape[:-1], n_features + 1)  # one spare column takes the -1 slots
    out.scatter_add_(-1, torch.where(indices < 0, n_features, indices), values)
    return out[..., :n_features]


def random_sparse(
    batch_shape, n_features: int, p, *, k: int | None = None, generator=None, dtype=torch.float32, device="cpu"
):
    """Sample sparse features in the padded layout: each feature is on with probability ``p``
    (a scalar or ``[n_features]``), with value uniform on [0, 1] (the TMS data distribution).

    ``k`` (default: enough for every row) is the slot count; rows never overflow it because
    ``k=None`` sizes it to the densest sampled row. Returns a SparseCode ``(indices int64 [*batch_shape, k],
    values [*batch_shape, k] of dtype)``.

    Raises:
        ValueError: ``p`` outside [0, 1] or NaN; a ``k`` smaller than the densest sampled row.
    """
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    p = torch.as_tensor(p, dtype=torch.float32, device=device)
    if not bool(((p >= 0) & (p <= 1)).all()):  # NaN fails too
        shown = p.tolist() if p.numel() <= 8 else "a tensor with entries outside"
        raise ValueError(f"p: expected probabilities in [0, 1] (no NaN), got {shown}")
    on = torch.rand(*batch_shape, n_features, generator=generator, device=device) < p
    x = torch.rand(*batch_shape, n_features, generator=generator, device=device).to(dtype) * on
    return dense_to_padded(x, k)
