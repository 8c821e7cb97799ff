"""The fuzz registry: one ``FuzzCase`` per public op, run by ``tests/test_fuzz_ops.py``.

Each case says how to draw random inputs (hypothesis), how to call the op, and
how to check the result against the float64 reference. The test module runs
every case on every backend it lists, with gradients where differentiable.

Adding an op (e.g. ``supcomp.uand``, ``supcomp.circuits``): append one
``FuzzCase`` to ``CASES`` below with

* ``draw(data, dtype, small)``: a dict of float64 input tensors (already rounded to
  ``dtype``, so the reference sees exactly the kernel's inputs) plus any
  non-tensor arguments; use ``shapes``/``fill`` for sizes (0 and 1 included)
  and value modes (normal, integer ties, scaled, denormal);
* ``call(inp)``: calls the public op on ``inp`` (tensors in the kernel dtype),
  returns a tuple of output tensors;
* ``grads``: the names of the differentiable inputs ('' for none);
* ``check`` (optional): ``check(out, x64, kin, dtype, backend, need_grad)``, a
  custom comparison (default: relative RMS error per
  output against the same ``call`` on float64 inputs under the reference
  backend, mask-exact for non-finite entries);
* ``nonfinite``: the documented NaN/inf policy (see docs/guarantees.md).

Shapes are drawn small (a few dozen elements per axis) so that the C++ tiles
(8-row read-out tiles, 32/64-column gather chunks) and the Triton blocks (16..128)
are crossed at non-powers of two while the interpreter stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from hypothesis import strategies as st

from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose

VALUE_MODES = ("normal", "integer", "scaled", "denormal")


# ------------------------------------------------------------------ drawing helpers
def fill(gen: torch.Generator, shape, mode: str, dtype: torch.dtype, scale_exp: int = 0) -> torch.Tensor:
    """Random float64 values of ``shape`` in a value mode, exactly representable in ``dtype``.

    normal: N(0, 1); integer: small integers in [-3, 3] (exact sums: ties and
    zeros); scaled: N(0, 1) * 2**scale_exp; denormal: a mix of normal values and
    values below ``finfo(dtype).tiny`` (subnormals).
    """
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if mode == "integer":
        x = torch.randint(-3, 4, shape, generator=gen).double()
    elif mode == "scaled":
        x = x * 2.0**scale_exp
    elif mode == "denormal":
        tiny = torch.finfo(dtype).tiny
        sub = torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5
        x = torch.where(sub, x * tiny * 0.25, x)
    return x.to(dtype).double()


def inject_nonfinite(gen: torch.Generator, x: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
    """A copy of x with about ``frac`` of its entries replaced by NaN, +inf or -inf."""
    if x.numel() == 0:
        return x
    x = x.clone()
    pick = torch.rand(x.shape, generator=gen) < frac
    kind = torch.randint(0, 3, x.shape, generator=gen)
    bad = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=x.dtype)[kind]
    return torch.where(pick, bad, x)


@st.composite
def shapes(draw, max_batch: int = 12, max_n: int = 40, max_d: int = 40, max_k: int = 6):
    """(I or None, batch shape, n, d, k): every axis may be 0 or 1, sizes are mostly not powers of two."""
    I = draw(st.sampled_from([None, None, 0, 1, 2, 3]))
    nb = draw(st.integers(0, 2))
    batch = tuple(draw(st.integers(0, max_batch)) for _ in range(nb))
    n = draw(st.integers(0, max_n))
    d = draw(st.integers(0, max_d))
    k = draw(st.integers(0, max_k))
    return I, batch, n, d, k


def _lead(I):
    return (I,) if I is not None else ()


def padded_indices(gen, shape, k, n, pattern: str, dup: bool) -> torch.Tensor:
    """int64 [*shape, k] in [-1, n): padding pattern none / random / tail / all, optional duplicates."""
    idx = torch.randint(0, max(n, 1), (*shape, k), generator=gen)
    if n == 0 or pattern == "all":
        return torch.full((*shape, k), -1, dtype=torch.int64)
    if pattern == "random":
        idx[torch.rand(idx.shape, generator=gen) < 0.4] = -1
    elif pattern == "tail":
        fill_to = torch.randint(0, k + 1, shape, generator=gen)
        idx[torch.arange(k) >= fill_to.unsqueeze(-1)] = -1
    if dup and k >= 2 and idx.numel() > 0:
        flat = idx.reshape(-1, k)
        flat[:, 1] = torch.where(flat[:, 0] >= 0, flat[:, 0], flat[:, 1])  # slot 1 repeats slot 0
    return idx


def draw_common(data, dtype, small=False, *, want_idx=True, want_h=False, nonfinite_ok=True):
    """Draw the shared inputs of the supcomp ops as a dict (float64 tensors rounded to dtype).

    ``small``: sizes for the Triton interpreter (still crossing its 16-wide blocks)."""
    sizes = shapes(max_batch=6, max_n=24, max_d=20) if small else shapes(max_batch=12, max_n=80, max_d=72)
    I, batch, n, d, k = data.draw(sizes, label="I, batch, n, d, k")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    mode = data.draw(st.sampled_from(VALUE_MODES), label="value mode")
    # scaled: keep products of three factors inside the dtype's range (no overflow to inf)
    emax = {torch.float16: 1, torch.bfloat16: 30, torch.float32: 30, torch.float64: 250}[dtype]
    exps = [data.draw(st.integers(-emax, emax), label="scale exponent") if mode == "scaled" else 0 for _ in range(3)]
    # Not with subnormals: a product that underflows to 0 in the kernel's dtype (but not in float64)
    # times inf is NaN in the kernel and +-inf in the reference -- float semantics, not a bug.
    nonfinite = (
        nonfinite_ok
        and mode != "denormal"
        and data.draw(st.sampled_from([False, False, False, True]), label="inject NaN/inf")
    )
    gen = torch.Generator().manual_seed(seed)
    out = {"I": I, "batch": batch, "n": n, "d": d, "mode": mode, "nonfinite": nonfinite}
    out["W"] = fill(gen, (*_lead(I), n, d), mode, dtype, exps[0])
    out["b"] = (
        fill(gen, (*_lead(I), n), mode, dtype, exps[0] + exps[1]) if data.draw(st.booleans(), label="bias") else None
    )
    if want_idx:
        pattern = data.draw(st.sampled_from(["none", "random", "tail", "all"]), label="padding")
        dup = data.draw(st.booleans(), label="duplicates")
        out["indices"] = padded_indices(gen, (*_lead(I), *batch), k, n, pattern, dup)
        out["values"] = fill(gen, (*_lead(I), *batch, k), mode, dtype, exps[1])
        if data.draw(st.booleans(), label="int32 indices"):
            out["indices"] = out["indices"].int()
    if want_h:
        out["h"] = fill(gen, (*_lead(I), *batch, d), mode, dtype, exps[1])
        out["k"] = data.draw(st.integers(0, n), label="k") if n > 0 else 0
    if nonfinite:
        which = data.draw(
            st.sampled_from([x for x in ("W", "b", "values", "h") if out.get(x) is not None]), label="non-finite tensor"
        )
        out[which] = inject_nonfinite(gen, out[which])
    out["gen"] = gen
    return out


# ------------------------------------------------------------------ custom checks
EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23, torch.float64: 2.0**-52}


def check_topk(out, x64, kin, dtype, backend, need_grad):
    """relu_readout_topk by its defining properties against float64 scores (robust to near-ties).

    Exact ids are compared only where the scores are exact (integer value mode): there the
    documented tie rule (lower index first) must hold bit for bit.
    """
    from supcomp.ops.relu_readout_topk import reference_forward

    idx, vals = out
    I, n, d, k = x64["I"], x64["n"], x64["d"], x64["k"]
    Ic = 1 if I is None else I
    assert vals.dtype == dtype and idx.dtype == torch.int64
    assert vals.shape == idx.shape == (*x64["h"].shape[:-1], k)
    B = math.prod(x64["h"].shape[(0 if I is None else 1) : -1])
    h3 = x64["h"].reshape(Ic, B, d)
    W3 = x64["W"].reshape(Ic, n, d)
    b3 = (x64["b"] if x64["b"] is not None else torch.zeros(*_lead(I), n, dtype=torch.float64)).reshape(Ic, n)
    pre = torch.baddbmm(b3.unsqueeze(1), h3, W3.transpose(1, 2))  # [Ic, B, n] float64 scores
    v = vals.detach().double().reshape(Ic, B, k)
    ix = idx.reshape(Ic, B, k)
    # 1. fill rule and range
    assert bool(((ix >= -1) & (ix < n)).all()), "index out of range"
    assert torch.equal(ix == -1, v == 0), "fill rule: index -1 exactly where the value is 0"
    # 2. sorted descending, ids unique per row, no NaN selected
    assert bool((v[..., :-1] >= v[..., 1:]).all()), "values not sorted descending"
    if k >= 2:
        s = torch.sort(torch.where(ix >= 0, ix, -torch.arange(1, k + 1).expand_as(ix)), -1).values
        assert bool((s[..., 1:] != s[..., :-1]).all()), "a feature selected twice in one row"
    sel = torch.gather(pre, -1, ix.clamp(min=0)) if n > 0 else torch.zeros_like(v)
    valid = ix >= 0
    assert not bool(torch.isnan(sel[valid]).any()), "a NaN score was selected"
    # 3. values equal the float64 scores of the selected ids (to rounding)
    scale = torch.baddbmm(b3.abs().unsqueeze(1), h3.abs(), W3.abs().transpose(1, 2))  # |terms| bound, [Ic, B, n]
    fin_scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    row_tol = 4 * (d + 2) * EPS[dtype] * fin_scale.amax(-1, keepdim=True) if n > 0 else torch.zeros_like(v[..., :1])
    row_tol = row_tol + torch.finfo(dtype).tiny * 8
    fin = valid & torch.isfinite(sel)
    assert bool(((v - sel).abs() <= row_tol)[fin].all()), "selected values differ from their scores"
    inf_sel = valid & ~torch.isfinite(sel)
    assert torch.equal(v[inf_sel], sel[inf_sel]), f"non-finite score value changed: {v[inf_sel]} vs {sel[inf_sel]}"
    # 4. top-k: no unselected feature scores (clearly) above the k-th kept value
    if n > 0 and k > 0:
        # scatter into a spare column n for the empty slots (a scatter of duplicates is unordered)
        chosen = torch.zeros(*pre.shape[:-1], n + 1, dtype=torch.bool).scatter_(-1, torch.where(valid, ix, n), True)[
            ..., :n
        ]
        other = torch.where(chosen | torch.isnan(pre), torch.full_like(pre, -float("inf")), pre)
        kth = v[..., -1:]
        missed = other.amax(-1, keepdim=True) > kth + 2 * row_tol
        assert not bool(missed.any()), "an unselected feature scores above the k-th selected value"
    # 5. exact scores: the reference's ids exactly (tie rule: lower index first)
    if x64["mode"] == "integer" and not x64["nonfinite"] and dtype != torch.bfloat16:
        ri, rv = reference_forward(h3, W3, b3, k)
        assert torch.equal(ix, ri), "ids differ from the reference on exact (integer) scores"
        assert torch.equal(v, rv), "values differ from the reference on exact (integer) scores"
    # 6. gradients through the selected entries: d/dx sum(vals * G) = that of sum(pre[idx] * G)
    if need_grad and vals.numel() > 0:
        G = torch.randn(vals.shape, generator=x64["gen"], dtype=torch.float64).to(dtype)
        (vals * G).sum().backward()
        r = {key: x64[key].clone().requires_grad_(True) if x64[key] is not None else None for key in ("h", "W", "b")}
        bb = r["b"] if r["b"] is not None else torch.zeros(*_lead(I), n, dtype=torch.float64)
        pre_r = torch.baddbmm(
            bb.reshape(Ic, n).unsqueeze(1), r["h"].reshape(Ic, B, d), r["W"].reshape(Ic, n, d).transpose(1, 2)
        )
        g_sel = torch.where(valid, torch.gather(pre_r, -1, ix.clamp(min=0)) if n > 0 else 0 * v, 0 * v)
        (g_sel * G.double().reshape(Ic, B, k)).sum().backward()
        from utils import REL_TOL, rel_err

        for key in ("h", "W", "b"):
            if r[key] is None:
                continue
            gk = kin[key].grad if kin[key].grad is not None else torch.zeros_like(kin[key])
            gr = r[key].grad if r[key].grad is not None else torch.zeros_like(r[key])
            assert gk.shape == gr.shape
            if gr.numel() == 0:
                continue
            if gr.abs().max() > 0:
                err = rel_err(gk, gr)
                assert err <= 8 * REL_TOL[dtype], f"grad {key}: relative error {err:.2e}"
            else:
                assert gk.abs().max() == 0, f"grad {key}: expected zero"


# ------------------------------------------------------------------ the registry
@dataclasses.dataclass
class FuzzCase:
    name: str
    draw: Callable  # (data, dtype) -> dict of inputs
    call: Callable  # (inputs) -> tuple of outputs
    grads: tuple  # names of differentiable inputs
    nonfinite: str  # the documented policy for NaN / inf inputs
    check: Callable | None = None  # (out, inp64, inp, dtype) -> None, custom comparison
    backends: tuple = ("cpp", "triton")


def _draw_indexed(data, dtype, small=False):
    return draw_common(data, dtype, small)


def _draw_readout(data, dtype, small=False):
    return draw_common(data, dtype, small, want_idx=False, want_h=True)


CASES = [
    FuzzCase(
        "sparse_encode",
        _draw_indexed,
        lambda x: (sparse_encode(x["indices"], x["values"], x["W"]),),
        grads=("values", "W"),
        nonfinite="propagates (IEEE): an output entry is NaN/inf exactly where the reference's is; empty slots "
        "(-1) never read W, so a NaN in an unused row never leaks",
    ),
    FuzzCase(
        "relu_readout",
        _draw_readout,
        lambda x: (relu_readout(x["h"], x["W"], x["b"]),),
        grads=("h", "W", "b"),
        nonfinite="propagates: wherever the reference is NaN/inf the kernel is non-finite too (ReLU keeps NaN); "
        "finite entries agree",
    ),
    FuzzCase(
        "relu_readout_topk",
        _draw_readout,
        lambda x: relu_readout_topk(x["h"], x["W"], x["b"], x["k"]),
        grads=("h", "W", "b"),
        nonfinite="NaN scores are never selected; +inf scores rank first (ties: lower index); "
        "no gradient check with non-finite inputs",
        check=lambda *a: check_topk(*a),
    ),
    FuzzCase(
        "superpose",
        _draw_indexed,
        lambda x: (superpose(x["indices"], x["values"], x["W"], x["b"]),),
        grads=("values", "W", "b"),
        nonfinite="propagates as relu_readout(sparse_encode(...)): non-finite wherever the reference is",
    ),
]
