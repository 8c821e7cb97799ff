"""One dispatcher for every op: which implementation serves a call.

Each op module declares one static :class:`Table` built from plain imports, for example in
``supcomp/ops/sparse_encode.py``::

    IMPLS = Table(
        "sparse_encode",
        reference=Impl(forward=reference_forward, backward=reference_backward),
        cpp=Impl(forward=cpp_forward, backward=cpp_backward),
        triton=_triton_impl,  # () -> Impl, imports supcomp.kernels.sparse_encode on first use
    )

The rule is the same for every op and is applied on every call, from the tensors' device and dtype
(never once at import):

1. a backend forced with :func:`use_backend` (tests, benchmarks);
2. CPU tensors of a dtype the C++ kernels take (float32, float64) -> ``"cpp"`` (``supcomp._C``);
3. CUDA tensors with Triton installed -> ``"triton"`` (``supcomp.kernels``);
4. anything else (MPS, XPU, CPU half precision) -> ``"reference"``, the op's pure-torch code.

The Triton implementations are loaded lazily (``import supcomp`` imports no Triton), through a
function that imports the kernel module by name, so go-to-definition works from the table.

State: the forced backend is held in a :mod:`contextvars` variable (per thread and per asyncio
task, restored on exit from the ``with`` block); whether Triton imports is computed once and cached.
There is no other process-wide switch.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

BACKENDS = ("reference", "cpp", "triton")

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("supcomp_backend", default=None)


class Impl:
    """The functions of one implementation of an op, by name (``forward``, ``backward``, ...)."""

    def __init__(self, **functions: Callable):
        self.__dict__.update(functions)

    def __repr__(self) -> str:
        return "Impl(" + ", ".join(sorted(self.__dict__)) + ")"


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run every supcomp op inside the block on backend ``name`` (``None``: the automatic rule).

    Args:
        name: one of ``"reference"``, ``"cpp"``, ``"triton"``, or ``None``.

    Raises:
        ValueError: ``name`` is not a backend. Inside the block, an op that has no implementation
            on the forced backend runs its reference.

    The choice applies to the current thread (and asyncio task) only. Under ``TRITON_INTERPRET=1``
    ``use_backend("triton")`` runs the Triton kernels on CPU tensors, which is how the tests check
    them without a GPU.
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"use_backend: unknown backend {name!r}, expected one of {BACKENDS}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


@functools.cache
def triton_available() -> bool:
    """Whether ``import triton`` works here (computed once)."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install raising at import
        return False
    return True


@dataclass(frozen=True)
class Table:
    """The implementations of one op, by backend.

    Attributes:
        op: the op's name, used in error messages.
        reference: the pure-torch implementation (any device, any float dtype).
        cpp: the C++ implementation (CPU), or None when the op has none.
        triton: a function returning the Triton implementation (imported on first use), or None.
        cpp_dtypes: the dtypes the C++ implementation takes.
    """

    op: str
    reference: Impl
    cpp: Impl | None = None
    triton: Callable[[], Impl] | None = None
    cpp_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    def backend(self, device: torch.device, dtype: torch.dtype) -> str:
        """The name of the backend that serves a call on tensors of this device and dtype.

        A backend forced with :func:`use_backend` that this op does not have (``"cpp"`` for an op
        with no C++ implementation) serves the call with the op's reference.

        Raises:
            TypeError: ``"cpp"`` is forced and ``dtype`` is one the C++ kernels do not take (float16,
                bfloat16): the message says to cast or to stop forcing the backend.
            ValueError: ``"cpp"`` is forced on tensors that are not on the CPU.
        """
        forced = _forced.get()
        if forced == "cpp" and self.cpp is None or forced == "triton" and self.triton is None:
            return "reference"
        if forced == "cpp" and device.type != "meta":
            if device.type != "cpu":
                raise ValueError(
                    f"{self.op}: use_backend('cpp') forces the C++ kernels, which take CPU tensors, got tensors "
                    f"on {device}; move them with .cpu(), or leave the choice to supcomp (use_backend(None))"
                )
            if dtype not in self.cpp_dtypes:
                takes = ", ".join(str(t).replace("torch.", "") for t in self.cpp_dtypes)
                raise TypeError(
                    f"{self.op}: use_backend('cpp') forces the C++ kernels, which take {takes}, got {dtype}; "
                    f"cast with .float(), or run {dtype} on the reference (use_backend(None) or "
                    f"use_backend('reference'))"
                )
        return _rule(device, dtype, self.cpp is not None and dtype in self.cpp_dtypes, self.triton is not None)

    def get(self, backend: str) -> Impl:
        """The implementation of backend ``backend`` (``"reference"``, ``"cpp"`` or ``"triton"``)."""
        if backend == "reference":
            return self.reference
        if backend == "cpp" and self.cpp is not None:
            return self.cpp
        if backend == "triton" and self.triton is not None:
            return self.triton()
        raise ValueError(f"backend: {self.op} has no {backend!r} implementation")

    def impl(self, device: torch.device, dtype: torch.dtype) -> Impl:
        """The implementation that serves a call on tensors of this device and dtype."""
        return self.get(self.backend(device, dtype))

    def impl_for(self, t: torch.Tensor) -> Impl:
        """The implementation that serves a call whose main tensor is ``t``."""
        return self.impl(t.device, t.dtype)


def backend_name(device: torch.device, dtype: torch.dtype) -> str:
    """The backend the dense ops (every op with C++ and Triton kernels) use for this device and dtype.

    Args:
        device: the tensors' device.
        dtype: their float dtype.

    Returns:
        ``"cpp"``, ``"triton"`` or ``"reference"``, by the rule of this module.
    """
    return _rule(device, dtype, dtype in (torch.float32, torch.float64), True)


def _rule(device: torch.device, dtype: torch.dtype, cpp_takes: bool, has_triton: bool) -> str:
    """The forced backend, else the automatic rule of this module's docstring."""
    forced = _forced.get()
    if forced is not None:
        return forced
    if device.type == "cpu" and cpp_takes:
        return "cpp"
    if device.type == "cuda" and has_triton and triton_available():
        return "triton"
    return "reference"
