"""Per-call choice of the U-AND kernel implementation (as ``supcomp.ops.backends``).

CPU float32/float64 -> "cpp" (``supcomp.boolean.cpu``), CUDA -> "triton"
(``supcomp.kernels.uand``), anything else -> "reference"
(``supcomp.boolean.naive``). ``supcomp.ops.use_backend(name)`` and
``SUPCOMP_BACKEND`` override it, exactly as for the other ops.
"""
from __future__ import annotations

import importlib

import torch

from ..ops import backends as _ops_backends

_modules = {"reference": "supcomp.boolean.naive", "cpp": "supcomp.boolean.cpu", "triton": "supcomp.kernels.uand"}


def name_for(device: torch.device, dtype: torch.dtype) -> str:
    return _ops_backends.backend_name(device, dtype)


def get(name: str):
    return importlib.import_module(_modules[name])


def for_tensor(t: torch.Tensor):
    return get(name_for(t.device, t.dtype))
