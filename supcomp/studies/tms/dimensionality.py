"""Uniform superposition of "Toy Models of Superposition" (Elhage et al. 2022): dimensions per feature
against sparsity, and the feature dimensionalities D_i."""

from __future__ import annotations

import math
import time

import torch

from ... import metrics as M
from ...tms.analysis import D_LINES, LEARNED
from ...tms.config import ToyModelConfig
from .common import DEFAULT_OUT, SHORT, finish, train_model


def dimensionality(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    n_features=None,
    n_hidden=None,
    n_densities=None,
    min_density=None,
    batch_size=None,
    lr=None,
    verbose=True,
):
    """Uniform superposition: n=400, m=30 (quick: 200, 20), importance 1, ReLU output.

    One instance per density, ``1 - S`` from 1 to ``min_density`` (default 1/100; the notebook's
    geometry cell stops at 1/20): ``n_densities`` log-spaced points if given, else log-spaced with 16
    points (quick: 8) in [1/10, 1], where the geometry changes, and 6 (quick: 3) below. Reports the
    dimensions per feature ``D* = m / ||W||_F^2`` against ``1/(1-S)`` (sticky at 1/2: antipodal pairs)
    and every feature's dimensionality ``D_i`` (clustering on 3/4, 2/3, 1/2, 2/5, 3/8), with the
    geometry counts of ``supcomp.metrics``.

    Defaults: full: 22 densities, batch 1024, lr 1e-3, 10,000 steps; quick: 11 densities, batch 256,
    lr 3e-3, 2,000 steps.
    """
    t0 = time.time()
    n = n_features or (200 if quick else 400)
    m = n_hidden or (20 if quick else 30)
    min_density = min_density or 0.01
    steps = steps if steps is not None else (2000 if quick else 10_000)
    B = batch_size or (256 if quick else 1024)
    lr = lr or (3e-3 if quick else 1e-3)
    if n_densities:
        dens = torch.logspace(0, math.log10(min_density), n_densities, dtype=torch.float64)
    else:  # denser where the geometry changes (1/(1-S) < 10), sparser below 1/10
        a, b = (8, 3) if quick else (16, 6)
        lo = math.log10(min_density)
        dens = (
            torch.cat(
                [torch.logspace(0, -1, a, dtype=torch.float64), torch.logspace(-1, lo, b + 1, dtype=torch.float64)[1:]]
            )
            if lo < -1
            else torch.logspace(0, lo, a + b, dtype=torch.float64)
        )
    P = dens.shape[0]
    cfg = ToyModelConfig(n, m, P, feature_probability=dens[:, None], importance=1.0, kind="relu_output")
    model = train_model(cfg, steps, B, lr, seed, progress)
    t_train = time.time() - t0
    W = model.W.detach().double()
    loss = model.final_loss(100).double()
    norms = M.feature_norms(W)
    D = M.feature_dimensionality(W)
    dpf = M.dimensions_per_feature(W)
    counts = M.geometry_counts(W)
    learned = norms >= LEARNED
    n_learned = learned.sum(-1)
    keys = list(counts[0])
    head = f"{'1-S':>7} {'1/(1-S)':>8} {'loss':>9} {'learned':>7} {'|W|_F^2':>8} {'D*':>6} " + " ".join(
        f"{SHORT[k]:>6}" for k in keys
    )
    lines = [
        f"TMS dimensionality: n={n}, m={m}, importance 1, ReLU output; {steps} steps, batch {B}, lr {lr:g}; "
        f"loss = mean of the last 100 training losses",
        head,
    ]
    for k in range(P):
        fro = float(W[k].square().sum())
        lines.append(
            f"{float(dens[k]):>7.4f} {1 / float(dens[k]):>8.2f} {float(loss[k]):>9.5f} "
            f"{int(n_learned[k]):>7d} "
            f"{fro:>8.2f} {float(dpf[k]):>6.3f} " + " ".join(f"{counts[k][c]:>6d}" for c in keys)
        )
    # how many learned features sit near each D line, over all densities
    Dl = D[learned]
    near = {lab: int(((Dl - v).abs() <= 0.02).sum()) for v, lab in D_LINES}
    near["1 (dedicated)"] = int(((Dl - 1).abs() <= 0.02).sum())
    lines.append(
        "learned features (all densities) with |D_i - line| <= 0.02: "
        + ", ".join(f"{k}: {v}" for k, v in near.items())
        + f" (of {int(learned.sum())})"
    )
    res = dict(
        densities=dens,
        loss=loss,
        W=W,
        norms=norms,
        D=D,
        dims_per_feature=dpf,
        geometry_counts=counts,
        n_learned=n_learned,
        near_lines=near,
        n_features=n,
        n_hidden=m,
        steps=steps,
        batch_size=B,
        lr=lr,
        train_s=t_train,
    )
    from . import plots

    return finish(res, lines, plots.plot_dimensionality, out_dir, "tms_dimensionality.png", t0, verbose, t_train)
