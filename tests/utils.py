"""Helpers shared by the op tests: random padded-sparse inputs and relative-error checks."""
from __future__ import annotations

import torch

# Relative-RMS tolerance of a kernel against the float64 reference, by the
# kernel's compute dtype (flash-linear-attention style: ||out - ref|| / ||ref||).
REL_TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    num = (out - ref).norm().item()
    den = ref.norm().item()
    return num / den if den > 0 else num


def assert_rel_close(name: str, out, ref, dtype, factor: float = 1.0):
    assert out is not None, f"{name}: missing"
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    if ref.numel() == 0:
        return
    tol = REL_TOL[dtype] * factor
    err = rel_err(out, ref)
    # An absolute floor for all-(near-)zero references.
    if ref.double().abs().max().item() < 1e-12:
        assert (out.double() - ref.double().to(out.device)).abs().max().item() < 1e-6, f"{name}: expected ~0"
        return
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def random_padded(shape, k: int, n: int, *, device="cpu", dtype=torch.float32, p_empty=0.25, dup=True,
                  empty_rows=True, generator=None):
    """indices [*shape, k] in [-1, n) with -1 padding, duplicates and all-empty rows; values [*shape, k]."""
    idx = torch.randint(0, max(n, 1), (*shape, k), generator=generator)
    if n == 0:
        idx.fill_(-1)
    idx[torch.rand(idx.shape, generator=generator) < p_empty] = -1
    flat = idx.reshape(-1, k)
    if dup and k >= 2 and flat.shape[0] > 0:
        flat[0, 1] = flat[0, 0] = max(0, n - 1) if n > 0 else -1  # a duplicate id in a row
    if empty_rows and flat.shape[0] > 1:
        flat[1] = -1  # an all-empty row
    values = torch.randn(idx.shape, generator=generator, dtype=torch.float64).to(dtype)
    return idx.to(device), values.to(device)


def device_for(backend: str) -> str:
    if backend == "triton" and torch.cuda.is_available():
        return "cuda"
    return "cpu"
