"""supcomp: compiled kernels for computation in superposition.

Ops (``supcomp.ops``): ``sparse_encode``, ``relu_readout``, ``relu_readout_topk``,
``superpose``. Modules (``supcomp.nn``), the padded sparse layout
(``supcomp.sparse``), and the ``supcomp`` command line (``supcomp.cli``). ``__version__`` is the
library's version (``supcomp --version``).
"""

__version__ = "0.1.0"

from . import nn, ops, sparse  # noqa: E402
from .build_info import build_info  # noqa: E402
from .ops import SparseCode, relu_readout, relu_readout_topk, sparse_encode, superpose  # noqa: E402

__all__ = [
    "__version__",
    "build_info",
    "nn",
    "ops",
    "sparse",
    "SparseCode",
    "sparse_encode",
    "relu_readout",
    "relu_readout_topk",
    "superpose",
]
