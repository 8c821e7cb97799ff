"""Argument checks and the reshape to the canonical layout shared by all ops.

Every check raises an exception that names the argument (TypeError for a wrong
type or dtype, ValueError for a wrong shape / device / size, IndexError for an
index out of range), so that nothing invalid reaches a kernel. Only metadata
is inspected here (cheap, and traceable by torch.compile); index *values* are
checked by the kernels themselves (the C++ code before it touches memory) or by
``check_index_range`` for the other backends.
"""

from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def shape_str(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_tensor(x, name: str):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def check_float(x: torch.Tensor, name: str):
    check_tensor(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating dtype (float16, bfloat16, float32, float64), got {x.dtype}")


def check_same_dtype(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str):
    if x.dtype != ref.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} does not match {ref_name} dtype {ref.dtype}")


def check_same_device(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str):
    if x.device != ref.device:
        raise ValueError(f"{name}: on device {x.device} but {ref_name} is on {ref.device}; move them to one device")


def n_inst(I) -> int:
    """Canonical instance count: 1 without an instance axis (I is None), else I -- which may be 0,
    so never write ``I or 1``."""
    return 1 if I is None else I


def check_weight(W: torch.Tensor, name: str = "W"):
    """W [n, d] or [I, n, d] -> (I or None, n, d)."""
    check_float(W, name)
    if W.dim() == 2:
        return None, W.shape[0], W.shape[1]
    if W.dim() == 3:
        return W.shape[0], W.shape[1], W.shape[2]
    raise ValueError(
        f"{name}: expected [n_features, d] or [n_instances, n_features, d], got {W.dim()}-d tensor {shape_str(W)}"
    )


def check_indices(indices: torch.Tensor, name: str = "indices") -> torch.Tensor:
    check_tensor(indices, name)
    if indices.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected int64 or int32 feature ids, got {indices.dtype}")
    if indices.dim() < 1:
        raise ValueError(f"{name}: expected shape [..., k], got a 0-d tensor")
    return indices.long()


def split_instance(x: torch.Tensor, name: str, I, trailing: int, what: str):
    """Check x = [I, *batch, *trailing] (or [*batch, *trailing] when I is None); return batch shape."""
    need = trailing + (1 if I is not None else 0)
    if x.dim() < need:
        lead = "n_instances, " if I is not None else ""
        raise ValueError(f"{name}: expected shape [{lead}..., {what}], got {shape_str(x)}")
    if I is not None and x.shape[0] != I:
        raise ValueError(f"{name}: leading (instance) size {x.shape[0]} does not match W's n_instances {I}")
    start = 1 if I is not None else 0
    return tuple(x.shape[start : x.dim() - trailing])


def canon(x: torch.Tensor, I, tail) -> torch.Tensor:
    """Reshape to [I, B, *tail] (I = 1 without an instance axis), contiguous.

    B is the product of the batch axes, computed explicitly: ``reshape(..., -1, ...)`` is
    ambiguous (an error) when the tensor is empty because of a zero-sized tail (k = 0 or d = 0)."""
    start = 1 if I is not None else 0
    B = math.prod(x.shape[start : x.dim() - len(tail)])
    return x.reshape(n_inst(I), B, *tail).contiguous()


def check_bias(b, W: torch.Tensor, I, n: int, name: str = "b") -> torch.Tensor:
    """b [n] / [I, n] (or None = zeros) -> canonical [I, n]."""
    if b is None:
        return torch.zeros(n_inst(I), n, dtype=W.dtype, device=W.device)
    check_float(b, name)
    check_same_dtype(b, name, W, "W")
    check_same_device(b, name, W, "W")
    want = (n,) if I is None else (I, n)
    if tuple(b.shape) != want:
        raise ValueError(f"{name}: expected shape {list(want)} to match W, got {shape_str(b)}")
    return b.reshape(n_inst(I), n).contiguous()


def host_checks(t: torch.Tensor) -> bool:
    """Whether index values of ``t`` are checked eagerly on the host (CPU tensors) rather than on the device."""
    return t.device.type == "cpu"


def check_index_range(indices: torch.Tensor, n: int, name: str = "indices"):
    """Raise IndexError unless every entry is -1 (empty) or in [0, n).

    CPU tensors: checked here, the error names the first bad index and its position. Other devices
    (CUDA): no host sync -- a device-side assert (``torch._assert_async``) queued on the stream, so a
    bad index surfaces as a device-side assertion error ("RuntimeError: ... indices: an index is out
    of range ...") at the next synchronisation, and CUDA graphs can capture the op.
    """
    if indices.numel() == 0:
        return
    if not host_checks(indices):
        ok = ((indices >= -1) & (indices < n)).all()
        torch._assert_async(ok, f"{name}: an index is out of range: expected -1 (empty) or 0 <= index < {n}")
        return
    bad = (indices < -1) | (indices >= n)
    if bool(bad.any()):
        pos = int(bad.reshape(-1).nonzero()[0])
        v = int(indices.reshape(-1)[pos])
        raise IndexError(
            f"{name}: index {v} at flat position {pos} is out of range: expected -1 (empty) or 0 <= index < {n}"
        )


_is_wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


def direct_ok(*tensors: torch.Tensor) -> bool:
    """Whether a public op may run its implementation directly instead of through its ``torch.library``
    custom op: an eager call (not traced or compiled, no ``TorchDispatchMode`` active) on plain tensors
    (no subclasses, fake or functorch-wrapped tensors) of which none needs a gradient. The result is the
    same; the custom op's dispatch costs ~15-20 us a call (measured on CPU, torch 2.13), as much as the
    kernel itself at small sizes. Anything else goes through the op, with its fake impl and autograd."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if type(t) is not torch.Tensor or (grad and t.requires_grad) or (_is_wrapped is not None and _is_wrapped(t)):
            return False
    return True
