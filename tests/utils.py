"""Helpers shared by the tests: random padded-sparse inputs, relative-error checks, the Triton kernels'
inputs and tolerances, a small toy-model config."""

from __future__ import annotations

import importlib
import os

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


def random_padded(
    shape, k: int, n: int, *, device="cpu", dtype=torch.float32, p_empty=0.25, dup=True, empty_rows=True, generator=None
):
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


# ---- the Triton kernels' tests (the "triton" sections of tests/ops/test_<op>.py) -------------------------
# Without CUDA the kernels run on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1, set by
# tests/conftest.py before triton is first imported), which is slow: sizes stay small. The reference is
# evaluated in float64 on the same (already rounded) inputs; every output and gradient is compared by
# relative error ||out - ref|| / max(||ref||, floor).
TRITON_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Relative-error tolerances of the kernels per input dtype (outputs are rounded to that dtype).
TRITON_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
FWD_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
BWD_DTYPES = [torch.float32, torch.float16]
# Zero-size axes, (I, B, n, d, k): no rows, no instances, no slots, no hidden dimension.
EMPTY_SIZES = [(3, 0, 37, 5, 3), (0, 7, 37, 5, 3), (2, 7, 37, 5, 0), (2, 7, 37, 0, 3)]


def triton_impl(table):
    """``table.get("triton")`` (imports the op's ``supcomp.kernels`` module), checked to run where the tests
    expect: on CUDA, or under the interpreter on CPU tensors."""
    impl = table.get("triton")
    if TRITON_DEVICE.type == "cpu":
        from triton.runtime.interpreter import InterpretedFunction

        kernel = importlib.import_module(f"supcomp.kernels.{table.op}")
        jitted = [v for v in vars(kernel).values() if type(v).__module__.startswith("triton.")]
        assert os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"), "no CUDA and TRITON_INTERPRET is off"
        assert all(isinstance(f, InterpretedFunction) for f in jitted if hasattr(f, "fn")), (
            f"supcomp.kernels.{table.op} was imported before TRITON_INTERPRET was set"
        )
    return impl


def triton_rel_err(out, ref, floor=1e-6):
    out = out.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    if ref.numel() == 0:
        return 0.0
    assert torch.isfinite(out).all(), "non-finite output"
    return ((out - ref).norm() / max(ref.norm().item(), floor)).item()


def assert_triton_close(out, ref, dtype, what=""):
    """A kernel's output: dtype ``dtype``, on the kernels' device, relative error within TRITON_TOL."""
    assert out.dtype == dtype, f"{what}: dtype {out.dtype}, expected {dtype}"
    assert out.device.type == TRITON_DEVICE.type, f"{what}: on {out.device}"
    err = triton_rel_err(out, ref)
    assert err <= TRITON_TOL[dtype], f"{what}: relative error {err:.3g} > {TRITON_TOL[dtype]:.1g}"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_codes(I, B, n, k, g):
    """indices [I, B, k] in [-1, n) with -1 padding, a duplicate in a row and an all-empty row; values [I, B, k]."""
    idx = torch.randint(0, n, (I, B, k), generator=g)
    pad = torch.rand(I, B, k, generator=g) < 0.25
    idx = torch.where(pad, torch.full_like(idx, -1), idx)
    if B > 0:
        idx[:, 0, :] = -1  # all-empty row
    if B > 1 and k > 1:
        idx[:, 1, 0] = idx[:, 1, 1] = n // 2  # duplicate feature in one row
    if B > 2 and k > 2:
        idx[:, 2, -1] = -1  # padding at the end
        idx[:, 2, 0] = n - 1  # last feature
    vals = torch.randn(I, B, k, generator=g)
    return idx, vals


def make_readout(I, B, n, d, g):
    """h [I, B, d], W [I, n, d], b [I, n] with about half of the scores positive."""
    h = torch.randn(I, B, d, generator=g)
    W = torch.randn(I, n, d, generator=g) / d**0.5
    b = 0.5 * torch.randn(I, n, generator=g)
    return h, W, b


def make_integer_readout(I, B, n, d, g, bias_shift=0):
    """Small-integer inputs: every score is exact in fp16/fp32 and ties are everywhere."""
    h = torch.randint(-2, 3, (I, B, d), generator=g).double()
    W = torch.randint(-1, 2, (I, n, d), generator=g).double()
    b = torch.randint(-2, 3, (I, n), generator=g).double() + bias_shift
    return h, W, b


def empty_size_inputs(I, B, n, d, k):
    """CPU float32 inputs with the zero-size axes of EMPTY_SIZES: idx, vals, W, b, h, grad_y."""
    g = gen(15)
    if I * B * k:
        idx, vals = make_codes(I, B, n, k, g)
    else:
        idx, vals = torch.zeros(I, B, k, dtype=torch.int64), torch.zeros(I, B, k)
    W = torch.randn(I, n, d, generator=g)
    b = torch.randn(I, n, generator=g)
    h = torch.randn(I, B, d, generator=g)
    gy = torch.randn(I, B, n, generator=g)
    return idx, vals, W, b, h, gy


def to_dev(*ts, dtype=None):
    """The tensors on TRITON_DEVICE, contiguous, floats cast to ``dtype`` (when given)."""
    out = []
    for t in ts:
        if t.is_floating_point() and dtype is not None:
            t = t.to(dtype)
        out.append(t.to(TRITON_DEVICE).contiguous())
    return out


def f64(t):
    return t.detach().to("cpu", torch.float64)


def cpu(t):
    return t.detach().to("cpu")


# ---- toy models (tests/ops/test_tms_step.py, tests/ops/test_tms_sample.py, tests/test_tms_training.py) ----
def small_tms_config(kind, **kw):
    """Three instances at densities 1, 0.3, 0.05, with correlated and anticorrelated pairs."""
    from supcomp.tms import ToyModelConfig

    args = dict(
        n_features=37,
        n_hidden=6,
        n_instances=3,
        feature_probability=[[1.0], [0.3], [0.05]],  # one density per instance
        importance=0.9 ** torch.arange(37.0),
        kind=kind,
        correlated_pairs=2,
        anticorrelated_pairs=3,
    )
    args.update(kw)
    return ToyModelConfig(**args)
