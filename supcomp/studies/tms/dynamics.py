"""Learning dynamics of "Toy Models of Superposition" (Elhage et al. 2022): every feature's
dimensionality over training, jumping between discrete levels."""

from __future__ import annotations

import math
import time

import torch

from ... import metrics as M
from ...tms.analysis import LEARNED, level_paths, threads_for, train_with_snapshots
from ...tms.config import ToyModelConfig
from ...utils.threads import threads
from .common import DEFAULT_OUT, finish, fmt_counts, frac


def dynamics(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    n_features=None,
    n_hidden=None,
    density=None,
    n_snapshots=None,
    batch_size=None,
    lr=None,
    verbose=True,
):
    """Learning dynamics: the dimensionality D_i of every feature over training (uniform importance, ReLU
    output), snapshotting W during one run (:func:`~supcomp.tms.analysis.train_with_snapshots`).

    Features sit on a few dimensionalities and move between them in discrete jumps (the paper's "energy
    levels"), each with a small drop in the loss. Defaults: full: the paper's n=400, m=30 at 1-S=0.23
    (where the dimensionality sweep mixes pentagons, square antiprisms and pairs), batch 1024, lr 1e-3,
    20,000 steps (one instance: ~1-2 minutes); quick: n=40, m=8, 1-S=0.25, batch 256, lr 3e-3, 3,000
    steps.
    """
    t0 = time.time()
    n = n_features or (40 if quick else 400)
    m = n_hidden or (8 if quick else 30)
    p = density or (0.25 if quick else 0.23)
    steps = steps if steps is not None else (3000 if quick else 20_000)
    S = n_snapshots or (150 if quick else 400)
    B = batch_size or (256 if quick else 1024)
    lr = lr or (3e-3 if quick else 1e-3)
    cfg = ToyModelConfig(n, m, 1, feature_probability=p, importance=1.0, kind="relu_output")
    # snapshot steps: log-spaced early, linear later (union)
    snap = sorted(
        set(torch.logspace(0, math.log10(max(steps, 1)), S // 2).round().long().tolist())
        | set(torch.linspace(0, steps, S // 2).round().long().tolist())
    )
    with threads(threads_for(n, m)):
        model, taken, Ws, hist = train_with_snapshots(cfg, steps, snap, B, lr, seed, progress)
    t_train = time.time() - t0
    Ws = Ws[:, 0].double()  # [S, n, m]
    D = M.feature_dimensionality(Ws)  # [S, n]
    norms = M.feature_norms(Ws)
    dpf = M.dimensions_per_feature(Ws)
    loss = hist[:, 0].double()
    # smoothed loss at the snapshots (mean of the 50 steps before)
    sm = torch.tensor([float(loss[max(0, s - 50) : max(1, s)].mean()) for s in taken])
    paths, jumps = level_paths(D, norms, taken)
    show = sorted(
        {
            min(range(len(taken)), key=lambda i: abs(taken[i] - s))
            for s in [0, 100, 300, 1000, 2000, 3000, 5000, 10_000, 15_000, 20_000, steps]
            if s <= steps
        }
    )
    # geometry of the tabulated snapshots only ([S, n, n] cosines for every snapshot would be GBs at n=400)
    counts = dict(zip(show, M.geometry_counts(Ws[show])))
    lines = [
        f"TMS learning dynamics: n={n}, m={m}, 1-S={p:g}, importance 1, ReLU output; {steps} steps, batch {B}, "
        f"lr {lr:g}; {len(taken)} snapshots of W",
        f"{'step':>7} {'loss':>9} {'learned':>7} {'D*':>6}  {'#D near 1, 3/4, 2/3, 1/2, 2/5, 3/8':<36} geometry",
    ]
    for i in show:
        Di = D[i][norms[i] >= LEARNED]
        near = [int(((Di - v).abs() <= 0.03).sum()) for v in (1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)]
        lines.append(
            f"{taken[i]:>7d} {float(sm[i]):>9.5f} {int((norms[i] >= LEARNED).sum()):>7d} "
            f"{float(dpf[i]):>6.3f}  "
            f"{str(near):<36} {fmt_counts(counts[i])}"
        )
    ends = {}
    for pth in paths:
        if pth:
            key = " -> ".join(frac(v) for v, _ in pth)
            ends[key] = ends.get(key, 0) + 1
    lines.append(
        "levels each feature dwelt on (see level_paths: within 0.0125 of 0, 1, 3/4, 2/3, 1/2, 2/5, 3/8 "
        "for >= 3% of the run), in order: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(ends.items(), key=lambda kv: -kv[1]))
    )
    lines.append(
        f"jumps between two nonzero levels: {len(jumps)}"
        + (
            ""
            if not jumps
            else " (feature: from -> to @ step: "
            + ", ".join(f"{i}: {frac(a)} -> {frac(b)} @ {st}" for i, a, b, st in jumps[:8])
            + (" ..." if len(jumps) > 8 else "")
            + ")"
        )
    )
    res = dict(
        steps_list=taken,
        W=Ws,
        D=D,
        norms=norms,
        dims_per_feature=dpf,
        loss_history=loss,
        loss_at=sm,
        jumps=jumps,
        level_paths=paths,
        geometry_counts=counts,
        n_features=n,
        n_hidden=m,
        density=p,
        steps=steps,
        batch_size=B,
        lr=lr,
        train_s=t_train,
    )
    from . import plots

    return finish(res, lines, plots.plot_dynamics, out_dir, "tms_dynamics.png", t0, verbose, t_train)
