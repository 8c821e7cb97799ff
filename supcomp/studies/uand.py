"""Measurements behind ``supcomp uand``: error tables against ``theory``, the capacity sweep (plots:
:mod:`supcomp.studies.uand_plots`).

The construction and its theory are those of "Mathematical Models of Computation in Superposition"
(Hänni, Mendel & Vaintrob 2024).

Error tables (the paper's cases): for each s, ``batch`` samples with exactly s distinct active
inputs; every pair of the m inputs is read (``iter_all_pairs``, bounded memory) and its error
(estimate - AND) is split by how many of the pair's inputs are on. Mean and max are over all
(sample, pair) estimates of the case.

Capacity: for each m, the smallest d (geometric grid, factor 1.25) such that, for some p on a
small grid p = sqrt(c / d), c in (6, 12, 24), the per-gate max error over the batch stays below
``eps`` on a fraction ``quantile`` of all pairs (doubling, then bisection to within 25%). Two
settings: inputs given as indices, and inputs in superposition with residual width d0 = d (the
setting of the Õ(m^{2/3}) result). The search
for m starts at the d found for the previous (smaller) m (d_min assumed non-decreasing in m).
For inputs given as indices the error at fixed s does not depend on m (only a union bound over
all gates would add log factors), so expect a flat curve there; with superposed inputs each
neuron also sums the interference of its ~p m connected inputs, which makes d grow with m.
"""

from __future__ import annotations

import functools
import math
import os
import time

import torch

from ..uand.construction import UAnd
from ..uand.theory import theory
from ..utils.figures import save_figure
from ..utils.progress import progress_bar
from .uand_plots import plot_capacity, plot_errors

__all__ = [
    "random_active",
    "error_stats",
    "own_gate_stats",
    "error_table",
    "format_error_table",
    "capacity",
    "format_capacity",
    "run",
    "demo_section",
]

PAPER_CASES = ((1000, 2000, 0.1), (2000, 8000, 0.05))
QUICK_CASES = ((300, 2000, 0.1), (500, 8000, 0.05))


def random_active(B: int, m: int, s: int, generator: torch.Generator) -> torch.Tensor:
    """[B, s] int64: s distinct active inputs per sample (uniformly random)."""
    return torch.argsort(torch.rand(B, m, generator=generator), dim=1)[:, :s].contiguous()


def _pair_blocks(u: UAnd, a: torch.Tensor, x: torch.Tensor, block_pairs: int):
    """Yield (est [B, nb], on [B, nb] uint8) over all pairs; x [B, m] uint8 active flags."""
    for p0, p1, est, *_ in u.iter_all_pairs(a, block_pairs=block_pairs, on_empty="mask"):
        i0 = int(torch.searchsorted(_row_offsets(u.m), torch.tensor(p0), right=True)) - 1
        pr = u.pairs(i0, _row_end(u.m, p1))
        on = x[:, pr[:, 0]] + x[:, pr[:, 1]]
        yield est, on


@functools.lru_cache(maxsize=8)
def _row_offsets(m):
    """``[m + 1]``: the flat index of the first pair (i, j > i) of each row i in the list of all pairs."""
    i = torch.arange(m + 1)
    return i * (2 * m - i - 1) // 2


def _row_end(m, p1):
    return int(torch.searchsorted(_row_offsets(m), torch.tensor(p1), right=False))


def error_stats(u: UAnd, idx: torch.Tensor, block_pairs: int = 1 << 17, extra=None) -> dict:
    """Mean / max error of all pair estimates split by inputs on (0, 1, 2): {on: dict(mean, max, n)}.

    ``idx`` [B, s] int64 active input ids (-1 = empty); errors are computed in the model's float dtype and
    returned as Python floats. ``extra``: {on: [sum, max, n]} of more estimates (``own_gate_stats``) merged in.
    """
    a = u.forward(idx)
    x = (u.input_values(idx) > 0).to(torch.uint8) if u.F is None else _active_flags(u, idx)
    tot = {k: [0.0, -math.inf, 0] for k in (0, 1, 2)}
    for est, on in _pair_blocks(u, a, x, block_pairs):
        err = est.double() - (on == 2).double()
        for k in (0, 1, 2):
            sel = on == k
            n = int(sel.sum())
            if n == 0:
                continue
            tot[k][0] += float(torch.where(sel, err, 0.0).sum())
            tot[k][1] = max(tot[k][1], float(torch.where(sel, err.abs(), -math.inf).max()))
            tot[k][2] += n
    for k, (sm, mx, n) in (extra or {}).items():
        tot[k] = [tot[k][0] + sm, max(tot[k][1], mx), tot[k][2] + n]
    return {k: dict(mean=v[0] / max(v[2], 1), max=v[1], n=v[2]) for k, v in tot.items()}


def own_gate_stats(u: UAnd, n_samples: int, s: int, generator, chunk: int = 64) -> dict:
    """Extra samples read only at their own active pairs (both on) and (active, inactive) pairs (one on).

    These cases are rare among all pairs (C(s,2) and ~s m of m^2/2 per sample); a few thousand
    samples read this way bring their measured means within a few per cent of the theory.
    Returns {on: [sum, max, n]} for on in (1, 2).
    """
    tot = {1: [0.0, -math.inf, 0], 2: [0.0, -math.inf, 0]}
    if s < 1:
        return tot
    for c0 in range(0, n_samples, chunk):
        cb = min(chunk, n_samples - c0)
        idx = random_active(cb, u.m, min(s + 1, u.m), generator)
        off, idx = idx[:, s:], idx[:, :s].contiguous()  # an inactive input per sample for the one-on gates
        a = u.forward(idx)
        ii, jj = torch.triu_indices(s, s, 1)
        both = torch.stack([idx[:, ii], idx[:, jj]], -1).reshape(-1, 2)  # [cb * C(s,2), 2]
        one = torch.stack([idx[:, :1], off[:, :1]], -1).reshape(-1, 2) if off.shape[1] else both[:0]
        for k, gates, per in ((2, both, ii.numel()), (1, one, 1)):
            if gates.shape[0] == 0:
                continue
            est, ok = u.read(a, gates, on_empty="mask")
            own = est.reshape(cb, cb, per)[torch.arange(cb), torch.arange(cb)]  # [cb, per]: each sample's own gates
            okk = ok.reshape(cb, per)
            err = (own.double() - (1.0 if k == 2 else 0.0))[okk]
            if err.numel():
                tot[k][0] += float(err.sum())
                tot[k][1] = max(tot[k][1], float(err.abs().max()))
                tot[k][2] += err.numel()
    return tot


def _active_flags(u, idx):
    x = torch.zeros(idx.shape[0], u.m + 1, dtype=torch.uint8)
    x.scatter_(1, torch.where(idx < 0, u.m, idx), 1)
    return x[:, : u.m].contiguous()


def error_table(
    m: int,
    d: int,
    p: float,
    s_values=range(2, 11),
    batch: int = 32,
    seed: int = 0,
    progress: bool = True,
    extra_samples: int = 2048,
) -> list[dict]:
    """Rows (one per s) of measured mean / max error per case beside ``theory(p, s, 2, d)``.

    ``batch`` samples are read at all pairs; ``extra_samples`` more only at their own both-on and
    one-on pairs (``own_gate_stats``), so that those rare cases are measured precisely too.
    """
    u = UAnd(m, d, p, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    rows = []
    for s in progress_bar(list(s_values), desc=f"U-AND errors m={m} d={d} p={p}", enabled=progress):
        extra = own_gate_stats(u, extra_samples, s, g) if extra_samples else None
        st = error_stats(u, random_active(batch, m, s, g), extra=extra)
        th = theory(p, s, 2, d)
        row = dict(m=m, d=d, p=p, s=s, batch=batch)
        for k, name in ((2, "both"), (1, "one"), (0, "none")):
            row[f"{name}_mean"] = st[k]["mean"]
            row[f"{name}_max"] = st[k]["max"]
            row[f"{name}_n"] = st[k]["n"]
            row[f"{name}_theory"] = th.mean[k]
            row[f"{name}_std_theory"] = th.std[k]
        rows.append(row)
    return rows


def format_error_table(rows) -> str:
    """The rows of :func:`error_table` as a text table: one line per (m, d, p, s), the measured mean and max
    error of the both-on, one-on and none-on pairs beside the theory's mean."""
    head = (
        f"{'m':>5}{'d':>6}{'p':>6}{'s':>4} | {'both: mean':>10}{'theory':>8}{'max':>7} | "
        f"{'one: mean':>10}{'theory':>8}{'max':>7} | {'none: mean':>10}{'theory':>8}{'max':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for name in ("both", "one", "none"):
            cells.append(f"{r[name + '_mean']:>10.4f}{r[name + '_theory']:>8.4f}{r[name + '_max']:>7.3f}")
        lines.append(f"{r['m']:>5}{r['d']:>6}{r['p']:>6.3g}{r['s']:>4} | " + " | ".join(cells))
    return "\n".join(lines)


def _passes(m, d, s, batch, eps, quantile, seed, embed):
    """Whether some p on the grid reads all pairs with per-gate max error < eps on ``quantile`` of them."""
    for c in (6.0, 12.0, 24.0):
        p = min(1.0, math.sqrt(c / d))
        u = UAnd(m, d, p, seed=seed, input_embedding=d if embed else None)
        if bool((u.pair_counts() == 0).any()):
            continue  # an unreadable pair fails the budget outright
        g = torch.Generator().manual_seed(seed + 7)
        idx = random_active(batch, m, s, g)
        a = u.forward(idx)
        x = _active_flags(u, idx)
        worst = []
        for est, on in _pair_blocks(u, a, x, 1 << 17):
            worst.append((est - (on == 2).to(est.dtype)).abs().max(0).values)
        worst = torch.cat(worst)
        if float((worst < eps).float().mean()) >= quantile:
            return True, p
    return False, None


def capacity(
    m_values=(125, 250, 500, 1000, 2000),
    s: int = 3,
    eps: float = 0.5,
    quantile: float = 0.99,
    batch: int = 32,
    d_start: int = 128,
    d_max: int = 1 << 15,
    seed: int = 0,
    progress: bool = True,
):
    """Smallest working d per m, for inputs as indices and in superposition (d0 = d). Returns rows."""
    rows = []
    for embed in (False, True):
        d_lo = d_start  # the d found for the previous m (d_min assumed non-decreasing in m)
        for m in progress_bar(
            list(m_values), desc="capacity " + ("superposed" if embed else "indices"), enabled=progress
        ):
            # Doubling from the previous d_min to a passing d, then bisection on the 1.25x grid.
            fail, found, d = None, None, d_lo
            while d <= d_max:
                ok, p = _passes(m, d, s, batch, eps, quantile, seed, embed)
                if ok:
                    found = (d, p)
                    break
                fail, d = d, 2 * d
            while found is not None and fail is not None and found[0] > math.ceil(fail * 1.25):
                mid = int(round(math.sqrt(fail * found[0])))
                ok, p = _passes(m, mid, s, batch, eps, quantile, seed, embed)
                if ok:
                    found = (mid, p)
                else:
                    fail = mid
            if found is not None:
                d_lo = found[0]
            rows.append(
                dict(
                    m=m,
                    superposed=embed,
                    d_min=found[0] if found else None,
                    p=found[1] if found else None,
                    s=s,
                    eps=eps,
                    quantile=quantile,
                )
            )
    return rows


def format_capacity(rows) -> str:
    """The rows of :func:`capacity` as a text table: per input setting and m, the smallest d found
    (``> max`` when none passed), its p, and m^(2/3) for comparison."""
    lines = [f"{'inputs':>11}{'m':>7}{'d_min':>8}{'p':>8}{'m^(2/3)':>9}", "-" * 43]
    for r in rows:
        dm = f"{r['d_min']}" if r["d_min"] else "> max"
        p = f"{r['p']:.3f}" if r["p"] else "-"
        lines.append(
            f"{'superposed' if r['superposed'] else 'indices':>11}{r['m']:>7}{dm:>8}{p:>8}{r['m'] ** (2 / 3):>9.1f}"
        )
    return "\n".join(lines)


def run(out_dir="supcomp-report/uand", quick=False, batch=None, seed=0, progress=True, capacity_sweep=True):
    """``supcomp uand``: error tables for the paper's cases, the capacity sweep, PNG plots in ``out_dir``."""
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    cases = QUICK_CASES if quick else PAPER_CASES
    s_values = (2, 4, 6, 10) if quick else tuple(range(2, 11))
    rows = []
    for m, d, p in cases:
        b = batch or (8 if quick else max(16, 32000 // m))
        rows += error_table(m, d, p, s_values, batch=b, seed=seed, progress=progress)
    print("== U-AND error of the AND estimates, all pairs, split by inputs on (theory: exact means) ==")
    print(format_error_table(rows))
    path = save_figure(plot_errors(rows), os.path.join(out_dir, "uand_errors.png"), dpi=120)
    print(f"plot: {path}")
    cap = None
    if capacity_sweep:
        m_values = (50, 100, 200, 400) if quick else (125, 250, 500, 1000, 2000)
        cap = capacity(m_values, batch=8 if quick else 32, seed=seed, progress=progress)
        print("\n== U-AND capacity: smallest d with max error < 0.5 on 99% of pairs (s = 3) ==")
        print(format_capacity(cap))
        path = save_figure(plot_capacity(cap), os.path.join(out_dir, "uand_capacity.png"), dpi=120)
        print(f"plot: {path}")
    print(f"\ndone in {time.time() - t0:.1f} s")
    return rows, cap


def demo_section(progress=True) -> str:
    """A few-second U-AND table for ``supcomp demo``: m=300, d=2000, p=0.1, s = 2..6."""
    rows = error_table(300, 2000, 0.1, (2, 3, 4, 6), batch=8, seed=0, progress=progress, extra_samples=512)
    return (
        "U-AND (Vaintrob, Mendel & Hänni): error of the AND estimate of all pairs, measured vs theory\n"
        + format_error_table(rows)
    )
