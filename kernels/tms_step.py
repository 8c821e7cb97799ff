"""tms_step: the toy-model training step on the Triton kernels, with its backward written out.

The "triton" implementation of ``supcomp.ops.tms_step`` (the model and loss are stated there):
the read-in is the ``sparse_encode`` kernel, the read-out the ``relu_readout`` kernel (or a GEMM
for linear models), and the gradients come from their backward kernels, without torch autograd.
"""

from __future__ import annotations

import torch

from .relu_readout import relu_readout_backward, relu_readout_forward
from .sparse_encode import sparse_encode_backward, sparse_encode_forward


def tms_step_loss_and_grad(idx, val, target, E, D, b, importance, hidden_relu: bool, output_relu: bool):
    """Losses and gradients of one step.

    Args:
        idx, val: the batch as padded sparse codes ``[I, B, k]`` (int64, -1 = empty; E's dtype).
        target: ``[I, B, n]`` the dense target.
        E, D: ``[I, n, m]`` read-in and read-out weights (``D is E`` for tied models).
        b, importance: ``[I, n]``.

    Returns:
        (loss [I], grad_E [I, n, m], grad_D [I, n, m] or None when tied, grad_b [I, n]).
    """
    I, B, n = target.shape
    h0 = sparse_encode_forward(idx, val, E)
    h = torch.relu(h0) if hidden_relu else h0
    if output_relu:
        y = relu_readout_forward(h, D, b)
    else:
        y = torch.baddbmm(b.unsqueeze(1), h, D.transpose(1, 2))
    diff = y - target
    loss = (importance[:, None] * diff * diff).mean((1, 2))
    grad_y = (2.0 / max(B * n, 1)) * importance[:, None] * diff
    if output_relu:
        grad_h, grad_D, grad_b = relu_readout_backward(grad_y.contiguous(), y, h, D)
    else:
        grad_h, grad_D, grad_b = torch.bmm(grad_y, D), torch.bmm(grad_y.transpose(1, 2), h), grad_y.sum(1)
    if hidden_relu:
        grad_h = grad_h * (h0 > 0).to(grad_h.dtype)
    _, grad_E = sparse_encode_backward(grad_h.contiguous(), idx, val, E, False, True)
    if D is E:
        return loss, grad_E + grad_D, None, grad_b
    return loss, grad_E, grad_D, grad_b
