"""Triton kernels of supcomp (shipped as ``supcomp.kernels``): the "triton" implementations.

One module per op, named after it (``sparse_encode``, ``relu_readout``, ``relu_readout_topk``,
``superpose``, ``uand``, ``tms_sample``, ``tms_step``); each op's table in ``supcomp/ops/<op>.py``
imports its module on first use, so importing supcomp imports no Triton. Inputs arrive in the
op's canonical layout, contiguous, of one float dtype, with int64 indices already checked to lie
in [-1, n). fp16/bf16 accumulate in fp32, fp64 in fp64. The kernels run on CUDA tensors, or on CPU
tensors under ``TRITON_INTERPRET=1`` (how the tests run without a GPU).
"""
