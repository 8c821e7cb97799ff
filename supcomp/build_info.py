"""What this installation of supcomp runs: compiler, CPU kernel variants, threads, Triton and CUDA.

The C++ extension carries several instruction-set variants of its kernels (baseline x86-64,
AVX2 + FMA, AVX-512; one portable variant on other architectures) and picks the best one the CPU
supports when it loads; ``SUPCOMP_CPU_CAPABILITY=baseline|avx2|avx512`` forces a lower one.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from . import _C, __version__
from .ops.dispatch import triton_available

__all__ = ["build_info", "format_build_info"]


def build_info() -> dict[str, Any]:
    """Describe the build and what it runs on this machine.

    Returns:
        A dict with the keys ``version`` (str), ``compiler`` (str: name and version of the compiler
        that built ``supcomp._C``), ``cpu_variants_compiled`` (list of str, lowest first),
        ``cpu_variants_supported`` (list of str: the compiled variants this CPU runs),
        ``cpu_variant`` (str: the one in use), ``cpu_capability_env`` (str or None: the value of
        ``SUPCOMP_CPU_CAPABILITY``), ``machine`` (str), ``openmp`` (bool), ``openmp_threads``
        (int: the OpenMP default), ``torch_threads`` (int: the thread count the ops pass to the C++
        kernels), ``torch`` (str), ``triton`` (str or None: its version when installed),
        ``triton_usable`` (bool: Triton imports and there is a CUDA device, or ``TRITON_INTERPRET=1``),
        ``cuda_usable`` (bool) and ``extension`` (str: path of the loaded ``supcomp._C``).

    Nothing here raises: ``import supcomp`` has already raised ImportError when
    ``SUPCOMP_CPU_CAPABILITY`` names a variant this build or CPU cannot run.
    """
    cuda = bool(torch.cuda.is_available())
    triton_ok = triton_available()
    triton_version = None
    if triton_ok:
        import triton

        triton_version = getattr(triton, "__version__", "unknown")
    return {
        "version": __version__,
        "compiler": _C.compiler(),
        "cpu_variants_compiled": list(_C.compiled_variants()),
        "cpu_variants_supported": list(_C.supported_variants()),
        "cpu_variant": _C.cpu_variant(),
        "cpu_capability_env": os.environ.get("SUPCOMP_CPU_CAPABILITY") or None,
        "machine": platform.machine(),
        "openmp": bool(_C.has_openmp),
        "openmp_threads": int(_C.max_threads()),
        "torch_threads": int(torch.get_num_threads()),
        "torch": torch.__version__,
        "triton": triton_version,
        "triton_usable": triton_ok and (cuda or os.environ.get("TRITON_INTERPRET") == "1"),
        "cuda_usable": cuda,
        "extension": _C.__file__,
    }


def format_build_info(info: dict[str, Any] | None = None) -> str:
    """``info`` (default: :func:`build_info`) as aligned ``key: value`` lines, for ``supcomp --version -v``."""
    info = build_info() if info is None else info
    width = max(len(k) for k in info)
    lines = []
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value)
        lines.append(f"{key.ljust(width)}  {value}")
    return "\n".join(lines)
