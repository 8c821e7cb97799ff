"""U-AND Triton kernels (the "triton" implementation of ``supcomp.ops.uand``).

Same canonical layout as the reference in ``supcomp/ops/uand.py``:

* ``uand_forward``: one program per (sample, slot) scatters the slot's value into the
  pre-activations of the neurons its input feeds (its connection list) with atomics,
  in BLOCK chunks of the list; bias and ReLU follow in one elementwise pass.
* ``uand_readout``: one program per (gate, block of samples) walks the gate's read-out
  set (CSR row) and sums the neuron-major activation rows aT[n, block]; writes est [B, G].
Intersections, pair sizes and the pair lists of the all-pairs read-out are built by the torch
reference on the tensors' device (``supcomp/ops/uand.py``); the read-out itself is the kernel above.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import acc_dtype, acc_torch_dtype, clamp_pow2, on_tensor_device


@triton.jit
def _uand_forward_kernel(idx_ptr, val_ptr, col_ptr, col_idx, pre_ptr, s, d, BLOCK: tl.constexpr):
    slot = tl.program_id(0).to(tl.int64)
    b = slot // s
    f = tl.load(idx_ptr + slot)
    ok = f >= 0
    fc = tl.where(ok, f, 0)
    start = tl.load(col_ptr + fc)
    end = tl.where(ok, tl.load(col_ptr + fc + 1), start)  # empty slot: an empty range
    v = tl.load(val_ptr + slot).to(pre_ptr.dtype.element_ty)
    for t0 in range(start, end, BLOCK):
        offs = t0 + tl.arange(0, BLOCK)
        mask = offs < end
        n = tl.load(col_idx + offs, mask=mask, other=0)
        # Neurons of one list are distinct, but other slots of the sample hit them too: atomics.
        tl.atomic_add(pre_ptr + b * d + n, tl.zeros([BLOCK], dtype=pre_ptr.dtype.element_ty) + v, mask=mask)


@triton.jit
def _uand_readout_kernel(aT_ptr, row_ptr, nidx_ptr, out_ptr, B, G, BLOCK_B: tl.constexpr, ACC: tl.constexpr):
    g = tl.program_id(0).to(tl.int64)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    rs = tl.load(row_ptr + g)
    re = tl.load(row_ptr + g + 1)
    acc = tl.zeros([BLOCK_B], dtype=ACC)
    for t in range(rs, re):
        n = tl.load(nidx_ptr + t)
        acc += tl.load(aT_ptr + n * B + offs_b, mask=mask_b, other=0.0).to(ACC)
    size = tl.maximum(re - rs, 1).to(ACC)  # an empty set reads 0
    tl.store(out_ptr + offs_b.to(tl.int64) * G + g, (acc / size).to(out_ptr.dtype.element_ty), mask=mask_b)


@on_tensor_device
def uand_forward(indices, values, col_ptr, col_idx, bias: float, d: int):
    """indices [B, s] int64, values [B, s] -> a [B, d] = relu(C x + bias)."""
    B, s = indices.shape
    pre = torch.zeros(B, d, dtype=acc_torch_dtype(values.dtype), device=values.device)
    if B * s > 0 and d > 0:
        _uand_forward_kernel[(B * s,)](indices, values, col_ptr, col_idx, pre, s, d, BLOCK=128, num_warps=4)
    return torch.relu_(pre.add_(bias)).to(values.dtype)


@on_tensor_device
def uand_readout(a, row_ptr, nidx):
    """a [B, d], read-out sets (row_ptr [G + 1], nidx) -> est [B, G], the mean over each set (0 if empty)."""
    B = a.shape[0]
    G = row_ptr.numel() - 1
    out = torch.empty(B, G, dtype=a.dtype, device=a.device)
    if B * G == 0:
        return out
    aT = a.T.contiguous()  # neuron-major: a set entry reads one contiguous run of samples
    BLOCK_B = clamp_pow2(B, 16, 256)
    grid = (G, triton.cdiv(B, BLOCK_B))
    _uand_readout_kernel[grid](aT, row_ptr, nidx, out, B, G, BLOCK_B=BLOCK_B, ACC=acc_dtype(a.dtype), num_warps=4)
    return out
