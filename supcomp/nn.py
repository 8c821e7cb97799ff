"""torch.nn modules over the supcomp ops: thin wrappers that own the parameters.

Weights store one feature per row, ``W [n_features, d]``, or with an instance
axis ``W [n_instances, n_features, d]`` when ``n_instances`` is given. Sparse codes go in and come
out as ``(indices, values)`` (:class:`supcomp.ops.SparseCode`). Inputs must have the module's dtype:
mixed float dtypes raise a TypeError naming both (as ``nn.Linear`` does); cast the input or the
module (``module.to(dtype)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .ops import SparseCode, relu_readout, relu_readout_topk, sparse_encode, superpose
from .ops.checks import check_int_like

__all__ = ["SparseEncoder", "ReLUReadout", "TiedSuperposition"]


def _check_sizes(n_features, d, n_instances):
    """Sizes are checked here so that a bad one names its argument (torch.empty's error would not)."""
    for name, v in (("n_features", n_features), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    if n_instances is not None and (
        isinstance(n_instances, bool) or not isinstance(n_instances, int) or n_instances < 0
    ):
        raise ValueError(f"n_instances: expected None or a non-negative int, got {n_instances!r}")


def _weight_shape(n_features, d, n_instances):
    _check_sizes(n_features, d, n_instances)
    return (n_features, d) if n_instances is None else (n_instances, n_features, d)


def _bias_shape(n_features, n_instances):
    return (n_features,) if n_instances is None else (n_instances, n_features)


class SparseEncoder(nn.Module):
    """Read-in: padded sparse features ``(indices, values) [..., k]`` -> ``h [..., d]``.

    Weight ``W [n_features, d]`` (``[n_instances, n_features, d]``), initialised
    with random unit-norm rows (nearly orthogonal directions for d >> 1).
    """

    def __init__(self, n_features: int, d: int, n_instances: int | None = None, dtype=None, device=None):
        super().__init__()
        self.n_features, self.d, self.n_instances = n_features, d, n_instances
        self.W = nn.Parameter(torch.empty(_weight_shape(n_features, d, n_instances), dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self):
        """Redraw ``W``: random unit-norm rows."""
        with torch.no_grad():
            self.W.normal_()
            self.W /= self.W.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def forward(self, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``indices [..., k]`` (int64/int32, -1 = empty), ``values [..., k]`` (W's dtype) -> ``h [..., d]``.

        Raises:
            ValueError, IndexError, TypeError: as :func:`supcomp.ops.sparse_encode` (shapes, index range,
                dtypes: a dtype other than W's is an error naming both).
        """
        return sparse_encode(indices, values, self.W)

    def extra_repr(self):
        inst = f", n_instances={self.n_instances}" if self.n_instances is not None else ""
        return f"n_features={self.n_features}, d={self.d}{inst}"


class ReLUReadout(nn.Module):
    """Read-out with ReLU filtering: ``h [..., d]`` -> ``relu(h @ W.T + b) [..., n_features]``.

    ``tied_to=encoder`` reuses that encoder's ``W`` (the toy model's W^T W);
    otherwise the module owns a ``W`` initialised like ``nn.Linear``. ``k`` set (an int, numpy
    integer or 0-d integer tensor): return the top-k as a :class:`~supcomp.ops.SparseCode`
    ``(indices, values)`` instead of the dense output, the order :class:`SparseEncoder` takes.
    ``bias_init`` is the initial (negative = filtering) bias.

    Raises:
        TypeError: ``k`` is a bool or a float.
        ValueError: a size is negative or not an int; ``k`` outside ``[0, n_features]``.
    """

    def __init__(
        self,
        n_features: int | None = None,
        d: int | None = None,
        n_instances: int | None = None,
        tied_to: SparseEncoder | None = None,
        k: int | None = None,
        bias_init: float = 0.0,
        dtype=None,
        device=None,
    ):
        super().__init__()
        if tied_to is not None:
            n_features, d, n_instances = tied_to.n_features, tied_to.d, tied_to.n_instances
            dtype, device = tied_to.W.dtype, tied_to.W.device
        if n_features is None or d is None:
            raise ValueError("n_features, d: give both, or tied_to=an encoder")
        _check_sizes(n_features, d, n_instances)
        if k is not None:
            k = check_int_like(k, "k")
            if not 0 <= k <= n_features:
                raise ValueError(f"k: expected None or an int with 0 <= k <= n_features = {n_features}, got {k!r}")
        self.n_features, self.d, self.n_instances, self.k = n_features, d, n_instances, k
        self.bias_init = bias_init
        self.tied_to = tied_to
        if tied_to is None:
            self.W = nn.Parameter(torch.empty(_weight_shape(n_features, d, n_instances), dtype=dtype, device=device))
        else:
            self.register_parameter("W", None)
        self.b = nn.Parameter(torch.empty(_bias_shape(n_features, n_instances), dtype=dtype, device=device))
        self.reset_parameters()

    @property
    def weight(self) -> torch.Tensor:
        """The read-out weight ``[n_features, d]`` (``[I, n_features, d]``): the encoder's ``W`` when tied."""
        return self.tied_to.W if self.tied_to is not None else self.W

    def reset_parameters(self):
        """Redraw ``W`` (untied only: uniform in ±1/sqrt(d)) and set ``b`` to ``bias_init``."""
        with torch.no_grad():
            if self.W is not None:
                bound = 1 / math.sqrt(max(1, self.d))  # d = 0 is a valid (empty) layer
                self.W.uniform_(-bound, bound)
            self.b.fill_(self.bias_init)

    def forward(self, h: torch.Tensor) -> torch.Tensor | SparseCode:
        """``h [..., d]`` (W's dtype) -> ``y [..., n_features]``, or with ``k`` set a SparseCode
        ``(indices int64 [..., k], values [..., k])``.

        Raises:
            ValueError, TypeError: as :func:`supcomp.ops.relu_readout` / :func:`supcomp.ops.relu_readout_topk`.
        """
        if self.k is not None:
            return relu_readout_topk(h, self.weight, self.b, self.k)
        return relu_readout(h, self.weight, self.b)

    def extra_repr(self):
        inst = f", n_instances={self.n_instances}" if self.n_instances is not None else ""
        extra = f", k={self.k}" if self.k is not None else ""
        extra += f", bias_init={self.bias_init}" if self.bias_init != 0 else ""
        return f"n_features={self.n_features}, d={self.d}{inst}, tied={self.tied_to is not None}{extra}"


class TiedSuperposition(nn.Module):
    """The tied-weight toy model ``relu(W^T W x + b)`` on sparse ``x``, fused in one kernel.

    ``W [n_features, d]`` (``[n_instances, n_features, d]``) initialised with
    Xavier-normal scale as in the TMS notebook; ``b`` zero.
    """

    def __init__(self, n_features: int, d: int, n_instances: int | None = None, dtype=None, device=None):
        super().__init__()
        self.n_features, self.d, self.n_instances = n_features, d, n_instances
        self.W = nn.Parameter(torch.empty(_weight_shape(n_features, d, n_instances), dtype=dtype, device=device))
        self.b = nn.Parameter(torch.empty(_bias_shape(n_features, n_instances), dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self):
        """Redraw ``W`` (normal, std sqrt(2 / (n_features + d))) and zero ``b``."""
        with torch.no_grad():
            std = math.sqrt(2.0 / max(1, self.n_features + self.d))
            self.W.normal_(0.0, std)
            self.b.zero_()

    def forward(self, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``indices [..., k]`` (int64/int32, -1 = empty), ``values [..., k]`` -> ``relu(W^T W x + b) [..., n]``.

        Raises:
            ValueError, IndexError, TypeError: as :func:`supcomp.ops.superpose`.
        """
        return superpose(indices, values, self.W, self.b)

    def extra_repr(self):
        inst = f", n_instances={self.n_instances}" if self.n_instances is not None else ""
        return f"n_features={self.n_features}, d={self.d}{inst}"
