"""Per-call choice of the implementation that runs an op.

Every backend module exposes the same functions over the canonical layout
(see ``supcomp.ops.naive``):

    sparse_encode_forward(indices, values, W) -> h
    sparse_encode_backward(grad_h, indices, values, W, need_values, need_W) -> (grad_values | None, grad_W | None)
    relu_readout_forward(h, W, b) -> y
    relu_readout_backward(grad_y, y, h, W) -> (grad_h, grad_W, grad_b)
    relu_readout_topk_forward(h, W, b, k) -> (values, indices)
    superpose_forward(indices, values, W, b) -> y

Inputs arrive contiguous, with matching dtypes, int64 indices and indices
already checked to lie in [-1, n).

The choice is made on every call from the tensors' device (never once at
import): CPU -> "cpp" (``supcomp._C``), CUDA -> "triton", anything else ->
"reference". ``use_backend(name)`` or the environment variable
``SUPCOMP_BACKEND`` overrides it, which is how the tests run the Triton kernels
on CPU tensors under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading

import torch

BACKENDS = ("reference", "cpp", "triton")

_local = threading.local()


def _override():
    name = getattr(_local, "name", None)
    if name is None:
        name = os.environ.get("SUPCOMP_BACKEND") or None
    if name is not None and name not in BACKENDS:
        raise ValueError(f"SUPCOMP_BACKEND / use_backend: unknown backend {name!r}, expected one of {BACKENDS}")
    return name


@contextlib.contextmanager
def use_backend(name: str | None):
    """Force every supcomp op in this thread to run on backend ``name`` (None: automatic)."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f"use_backend: unknown backend {name!r}, expected one of {BACKENDS}")
    old = getattr(_local, "name", None)
    _local.name = name
    try:
        yield
    finally:
        _local.name = old


def backend_name(device: torch.device, dtype: torch.dtype) -> str:
    """The backend an op on tensors of this device and dtype runs on."""
    forced = _override()
    if forced is not None:
        return forced
    if device.type == "cpu":
        # The C++ kernels are written for float32 and float64; CPU half
        # precision runs on the reference (which computes in that dtype).
        return "cpp" if dtype in (torch.float32, torch.float64) else "reference"
    if device.type == "cuda" and triton_available():
        return "triton"
    return "reference"


_modules = {"reference": "supcomp.ops.naive", "cpp": "supcomp.ops.cpu", "triton": "supcomp.kernels"}


def get(name: str):
    """The backend module called ``name``."""
    return importlib.import_module(_modules[name])


def for_tensor(t: torch.Tensor):
    return get(backend_name(t.device, t.dtype))


_triton_ok = None


def triton_available() -> bool:
    global _triton_ok
    if _triton_ok is None:
        try:
            import triton  # noqa: F401
            _triton_ok = True
        except Exception:  # ImportError, or a broken install raising at import
            _triton_ok = False
    return _triton_ok
