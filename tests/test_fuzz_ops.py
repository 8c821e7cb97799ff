"""Property-based tests: every op in ``fuzz_registry.CASES`` on every backend against the float64 reference.

Example counts come from the hypothesis profile (``tests/conftest.py``): ``ci``
(default, derandomized: the same examples every run) or ``long``
(``pytest tests/test_fuzz_ops.py --hypothesis-profile=long``). Triton runs
under the interpreter, so it gets a fraction of the examples and smaller sizes.
"""

from __future__ import annotations

import pytest
import torch
from fuzz_registry import CASES
from hypothesis import given, settings
from hypothesis import strategies as st
from utils import REL_TOL

from supcomp.ops import use_backend

DTYPES = {"cpp": [torch.float32, torch.float64], "triton": [torch.float32, torch.float64, torch.float16]}
# Share of the profile's max_examples each backend gets (the interpreter is ~100x slower).
SHARE = {"cpp": 1.0, "triton": 0.5}
FLOAT_KEYS = ("W", "b", "values", "h")
# Examples run, per (case, backend): printed at the end of the session by conftest.
EXAMPLES: dict = {}
# Examples whose gradient check was skipped because an output sits on the ReLU kink (printed too).
GRAD_SKIPPED: dict = {}


def _examples(backend):
    return max(3, int(settings.default.max_examples * SHARE[backend]))


def _to_kernel(x64: dict, dtype, grads, need_grad: bool):
    out = dict(x64)
    for key in FLOAT_KEYS:
        t = x64.get(key)
        if isinstance(t, torch.Tensor):
            out[key] = t.detach().to(dtype, copy=True).requires_grad_(need_grad and key in grads)
    return out


def _to_ref(x64: dict, grads, need_grad: bool):
    out = dict(x64)
    for key in FLOAT_KEYS:
        t = x64.get(key)
        if isinstance(t, torch.Tensor):
            out[key] = t.detach().clone().requires_grad_(need_grad and key in grads)
    return out


def assert_close(name, out, ref, dtype, exact_nonfinite: bool, factor=4.0, scale=1.0):
    """Relative RMS error of finite entries; non-finite entries match the reference's (exactly, or as a subset)."""
    assert out.shape == ref.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    out = out.detach().double()
    ref = ref.detach()
    ref_bad = ~torch.isfinite(ref)
    if exact_nonfinite:
        for what, fn in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
            assert torch.equal(fn(out), fn(ref)), f"{name}: {what} pattern differs from the reference"
    else:
        assert bool((~torch.isfinite(out[ref_bad])).all()), f"{name}: finite where the reference is not"
    good = torch.isfinite(ref) & torch.isfinite(out)
    if not exact_nonfinite:
        assert torch.equal(good, torch.isfinite(ref)), f"{name}: non-finite where the reference is finite"
    o, r = out[good], ref[good]
    if r.numel() == 0:
        return
    if r.abs().max() == 0:
        # An all-zero reference can be exact cancellation (duplicate ids with opposite values): the
        # kernel's rounding then leaves ~eps * the size of the cancelled terms (``scale``).
        bound = REL_TOL[dtype] * factor * scale + 1024 * torch.finfo(dtype).tiny
        assert o.abs().max().item() <= bound, f"{name}: expected ~0 (<= {bound:.1e}), got {o.abs().max()}"
        return
    # Below the dtype's smallest normal number results underflow (products of subnormals are 0 in
    # the kernel's dtype but not in float64): differences that small are not errors.
    atol = 1024 * torch.finfo(dtype).tiny
    diff = torch.where((o - r).abs() <= atol, torch.zeros_like(r), o - r)
    tol = REL_TOL[dtype] * factor
    s = r.abs().max()  # normalise first: the squares in a norm of 2^500-sized entries overflow float64
    err = (diff / s).norm().item() / max((r / s).norm().item(), atol / s.item())
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e}"


def _has_nonfinite(x64):
    return any(isinstance(x64.get(k), torch.Tensor) and not bool(torch.isfinite(x64[k]).all()) for k in FLOAT_KEYS)


def run_case(case, backend, dtype, x64):
    """One example: forward (and backward where finite) on ``backend`` vs the float64 reference."""
    nonfinite = _has_nonfinite(x64)
    need_grad = bool(case.grads) and not nonfinite
    kin = _to_kernel(x64, dtype, case.grads, need_grad)
    with use_backend(backend):
        out = case.call(kin)
    if callable(case.check):
        case.check(out, x64, kin, dtype, backend, need_grad)
        return
    rin = _to_ref(x64, case.grads, need_grad)
    with use_backend("reference"):
        ref = case.call(rin)
    exact = case.name == "sparse_encode"
    for j, (o, r) in enumerate(zip(out, ref)):
        assert o.dtype == dtype, f"output {j}: dtype {o.dtype} != {dtype}"
        assert_close(f"{case.name} output {j}", o, r, dtype, exact_nonfinite=exact)
    if not need_grad or all(o.numel() == 0 for o in out):
        return
    # A ReLU output that is positive in one and zero in the other (a value within rounding of 0)
    # has a different derivative: the gradient comparison is meaningless there, so skip it.
    if any(not torch.equal(o.detach() > 0, r.detach() > 0) for o, r in zip(out, ref) if case.name != "sparse_encode"):
        GRAD_SKIPPED[(case.name, backend)] = GRAD_SKIPPED.get((case.name, backend), 0) + 1
        return
    G = [torch.randn(o.shape, generator=x64["gen"], dtype=torch.float64).to(dtype).double() for o in out]
    sum((o * g.to(dtype)).sum() for o, g in zip(out, G)).backward()
    sum((r * g).sum() for r, g in zip(ref, G)).backward()
    for key in case.grads:
        if kin.get(key) is None:
            continue
        gk, gr = kin[key].grad, rin[key].grad
        if gr is None:
            gr = torch.zeros_like(rin[key])
        if gk is None:
            gk = torch.zeros_like(kin[key])
        assert gk.dtype == dtype
        # size of the terms a gradient entry sums (for an all-zero reference by cancellation)
        mags = [
            t.abs().max().item()
            for t in [*(x64.get(k) for k in FLOAT_KEYS), *G]
            if isinstance(t, torch.Tensor) and t.numel() > 0
        ]
        scale = max(mags, default=1.0) ** 2 * max(1, x64.get("d", 1), gk.shape[-1])
        assert_close(f"{case.name} grad {key}", gk, gr, dtype, exact_nonfinite=False, factor=8.0, scale=scale)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fuzz(case, backend):
    if backend not in case.backends:
        pytest.fail(f"{case.name} does not list {backend}")  # every registered case must cover both kernels
    small = backend == "triton"

    @settings(max_examples=_examples(backend))
    @given(data=st.data())
    def run(data):
        dtype = data.draw(st.sampled_from(DTYPES[backend]), label="dtype")
        x64 = case.draw(data, dtype, small)
        run_case(case, backend, dtype, x64)
        EXAMPLES[(case.name, backend)] = EXAMPLES.get((case.name, backend), 0) + 1

    run()
