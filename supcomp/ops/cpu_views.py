"""How the C++ implementations see torch tensors: zero-copy numpy views, and torch's thread count.

``supcomp._C`` is plain pybind11 over numpy buffers (no torch at build time). A CPU tensor is handed
over as ``Tensor.numpy()``, which shares its memory; outputs are allocated with torch by the caller
and filled in place.
"""

from __future__ import annotations

import numpy as np
import torch


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of the CPU tensor ``t`` (detached first when it requires grad); no copy."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


def threads() -> int:
    """The thread count of the C++ kernels: torch's, so ``torch.set_num_threads`` governs supcomp too."""
    return torch.get_num_threads()
