"""``SparseCode``: the one return type of every op that produces a padded sparse code.

The order is ``(indices, values)``, the argument order of :func:`~supcomp.ops.sparse_encode`,
:func:`~supcomp.ops.superpose`, :class:`~supcomp.nn.SparseEncoder` and ``supcomp.sparse``, so a
top-k result feeds the read-in directly: ``sparse_encode(*relu_readout_topk(h, W, b, k), W)``.
``torch.topk`` returns ``(values, indices)``; read both by name (``.indices``, ``.values``) when
code handles either.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class SparseCode(NamedTuple):
    """A padded sparse code ``(indices, values)``, each ``[..., k]``.

    Attributes:
        indices: int64 feature ids, ``-1`` in an empty slot.
        values: the feature values (float, dtype of the op's inputs), ``0`` in an empty slot.

    A named tuple: it unpacks as ``indices, values = code`` and its fields read as ``code.indices``
    and ``code.values`` (as on ``torch.topk``'s result, whose positional order is the reverse).
    """

    indices: torch.Tensor
    values: torch.Tensor
