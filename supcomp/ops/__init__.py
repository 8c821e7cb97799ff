"""The supcomp ops: torch.library custom ops with fake impls, autograd and per-call dispatch.

Where each op lives (reference / C++ / Triton / test):

======================  ==============================  ==========================  ================================  ==============================
op                      reference                        C++ (CPU)                   Triton (CUDA)                     test
======================  ==============================  ==========================  ================================  ==============================
sparse_encode           ops/naive.py                     csrc/sparse_encode.cpp      kernels/sparse_encode.py          tests/test_sparse_encode.py
relu_readout            ops/naive.py                     csrc/readout.cpp + BLAS     kernels/relu_readout.py           tests/test_relu_readout.py
relu_readout_topk       ops/naive.py                     csrc/readout.cpp + BLAS     kernels/relu_readout_topk.py      tests/test_relu_readout_topk.py
superpose               ops/naive.py                     csrc/superpose.cpp          kernels/superpose.py              tests/test_superpose.py
======================  ==============================  ==========================  ================================  ==============================
"""
from .backends import BACKENDS, backend_name, use_backend
from .relu_readout import relu_readout
from .relu_readout_topk import relu_readout_topk
from .sparse_encode import sparse_encode
from .superpose import superpose

__all__ = ["sparse_encode", "relu_readout", "relu_readout_topk", "superpose", "use_backend", "backend_name", "BACKENDS"]
