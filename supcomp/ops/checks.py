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
import operator

import torch
import torch.autograd.forward_ad as _fwad
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
        hint = ""
        if x.is_complex():  # a conjugate view (x.conj()) exists only for complex tensors
            hint = " (complex and conjugate tensors are not supported: pass a real tensor, e.g. " + name + ".real)"
        raise TypeError(f"{name}: expected a floating dtype (float16, bfloat16, float32, float64), got {x.dtype}{hint}")


def check_same_dtype(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str):
    """Mixed float dtypes raise (as torch.matmul and nn.Linear do); the message names both and the cast."""
    if x.dtype != ref.dtype:
        raise TypeError(
            f"{name}: dtype {x.dtype} does not match {ref_name} dtype {ref.dtype}; supcomp ops do not promote "
            f"mixed dtypes (as torch.matmul does not): cast one, e.g. {name}.to({ref_name}.dtype)"
        )


def check_int_like(k, name: str) -> int:
    """An integer-like ``k`` (int, numpy integer, 0-d integer tensor) -> int; bool and floats raise TypeError.

    A 0-d tensor is read with ``.item()`` (a sync on a GPU tensor, a graph break under torch.compile).
    """
    if isinstance(k, torch.Tensor):
        if k.dim() != 0 or k.dtype == torch.bool or k.is_floating_point() or k.is_complex():
            raise TypeError(f"{name}: expected an int or a 0-d integer tensor, got a {k.dim()}-d {k.dtype} tensor")
        return int(k.item())
    if isinstance(k, bool) or type(k).__name__ in ("bool", "bool_"):  # Python and numpy booleans are not counts
        raise TypeError(f"{name}: expected an int, got {type(k).__name__}")
    try:
        return operator.index(k)  # int and numpy integers; floats raise
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(k).__name__}") from None


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
    return x.reshape(n_inst(I), B, *tail).contiguous().resolve_neg()


def canon_weight(W: torch.Tensor, I, n: int, d: int) -> torch.Tensor:
    """W -> contiguous [I, n, d] (I = 1 without an instance axis)."""
    return W.reshape(n_inst(I), n, d).contiguous().resolve_neg()


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
    return b.reshape(n_inst(I), n).contiguous().resolve_neg()


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
        if (
            type(t) is not torch.Tensor
            or (grad and t.requires_grad)
            or t.is_meta  # meta tensors go through the op, which runs its fake impl
            or (_is_wrapped is not None and _is_wrapped(t))
        ):
            return False
    return True


def reference_needed(*tensors: torch.Tensor) -> bool:
    """Whether a public op must run its pure-torch reference, differentiated by torch itself: under a
    ``torch.func`` transform (``grad``, ``jvp``, ``vmap``, ``jacrev``, ``jacfwd``, ``hessian``: the
    tensors are functorch-wrapped) or with a forward-mode AD dual tensor (``torch.autograd.forward_ad``).
    The custom ops have backward formulas only; the reference is the same math in torch ops, which
    carry forward-mode, batching and higher-order rules."""
    if torch.compiler.is_compiling():  # tensors are fake here: a transform inlined by torch.compile shows on
        return _functorch_active() or _fwad._current_level >= 0  # functorch's stack; any open dual level counts
    if _is_wrapped is not None and any(_is_wrapped(t) for t in tensors):
        return True
    if _fwad._current_level >= 0:  # a dual level is open: look for tangents
        return any(_fwad.unpack_dual(t).tangent is not None for t in tensors)
    return False


def _functorch_active() -> bool:
    """Whether a torch.func transform is active (its interpreter is on functorch's stack)."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


# torch.compile evaluates this while tracing and keeps the result as a constant of the graph: what
# torch.compiler.assume_constant_result(fn) sets, without importing torch._dynamo with supcomp.
_functorch_active._dynamo_marked_constant = True


def unwrapped(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor under any functorch wrappers (a vmapped tensor: all its batch entries), for value checks."""
    while _is_wrapped is not None and _is_wrapped(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def check_index_range_transformed(indices: torch.Tensor, n: int):
    """``check_index_range`` on the reference path: on the tensor under any functorch wrappers (under
    ``vmap``, every batch entry). Skipped while torch.compile traces, where a value check would break
    the graph; torch's own indexing in the reference raises then."""
    if not torch.compiler.is_compiling():
        check_index_range(unwrapped(indices), n)
