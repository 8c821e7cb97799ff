"""The supcomp ops: torch.library custom ops with fake impls, autograd and per-call dispatch.

One module per op, named after it in every layer::

    op                 C++ (CPU)                 Triton (CUDA)             test / benchmark
    sparse_encode      csrc/sparse_encode.cpp    kernels/sparse_encode.py  tests/ops/test_<op>.py
    relu_readout       csrc/relu_readout.cpp     kernels/relu_readout.py   benchmarks/ops/<op>.py
    relu_readout_topk  csrc/relu_readout_topk.cpp kernels/relu_readout_topk.py
    superpose          csrc/superpose.cpp        kernels/superpose.py
    uand               csrc/uand.cpp             kernels/uand.py
    tms_sample         csrc/tms_sample.cpp       kernels/tms_sample.py
    tms_step           csrc/tms_step.cpp         kernels/tms_step.py

Each ``supcomp/ops/<op>.py`` holds the op's pure-torch reference, its C++ wrapper, its table of
implementations (:class:`supcomp.ops.dispatch.Table`) and, for the differentiable ops, its
``torch.library`` registration and public function. :func:`use_backend` forces a backend, one of
``BACKENDS`` (``"reference"``, ``"cpp"``, ``"triton"``).
Sparse codes go in and come out in one order, ``(indices, values)`` (:class:`SparseCode`).
"""

from .dispatch import BACKENDS, backend_name, use_backend
from .relu_readout import relu_readout
from .relu_readout_topk import relu_readout_topk
from .sparse_code import SparseCode
from .sparse_encode import sparse_encode
from .superpose import superpose

__all__ = [
    "sparse_encode",
    "relu_readout",
    "relu_readout_topk",
    "superpose",
    "SparseCode",
    "use_backend",
    "backend_name",
    "BACKENDS",
]
