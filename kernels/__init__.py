"""Triton kernels of supcomp (shipped as ``supcomp.kernels``): the "triton" backend.

Same functions, canonical layout and return conventions as ``supcomp.ops.naive``
(see ``supcomp.ops.backends``). Inputs arrive contiguous, of one float dtype,
with int64 indices already checked to lie in [-1, n). fp16/bf16 accumulate in
fp32, fp64 in fp64. Runs on CUDA tensors, or on CPU tensors under
``TRITON_INTERPRET=1`` (how the tests run without a GPU).
"""
from .relu_readout import relu_readout_backward, relu_readout_forward
from .relu_readout_topk import relu_readout_topk_forward
from .sparse_encode import sparse_encode_backward, sparse_encode_forward
from .superpose import superpose_forward

__all__ = [
    "sparse_encode_forward",
    "sparse_encode_backward",
    "relu_readout_forward",
    "relu_readout_backward",
    "relu_readout_topk_forward",
    "superpose_forward",
]
