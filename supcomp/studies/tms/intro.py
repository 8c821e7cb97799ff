"""The intro figure of "Toy Models of Superposition" (Elhage et al. 2022): five features in two dimensions."""

from __future__ import annotations

import time

import torch

from ... import metrics as M
from ...tms.analysis import LEARNED, best_restarts, eval_losses
from ...tms.config import ToyModelConfig
from ...utils.threads import single_threaded
from .common import DEFAULT_OUT, finish, fmt_counts, train_model


@single_threaded
def intro(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    n_densities=None,
    restarts=None,
    batch_size=None,
    lr=None,
    verbose=True,
):
    """The intro figure: n=5 features, m=2 hidden dimensions, importance 0.9^i, ReLU output.

    Densities ``1 - S = 20 ** -linspace(0, 1, P)`` (the notebook's intro cell; P = 10, or 4 in quick
    mode), ``restarts`` instances per density (the lowest held-out loss is kept, as the paper advises
    for m = 2). Dense: the 2 most important features get orthogonal dimensions, the rest are not
    learned; 1-S ~ 0.2-0.4: two antipodal pairs; sparse: all 5 in a pentagon (D_i ~ 2/5).

    Defaults: full: P=10, 8 restarts, batch 1024, lr 1e-3, 10,000 steps (the notebook's settings);
    quick: P=4, 4 restarts, batch 256, lr 1e-2, 3,000 steps.
    """
    t0 = time.time()
    n, m = 5, 2
    P = n_densities or (4 if quick else 10)
    R = restarts or (4 if quick else 8)
    steps = steps if steps is not None else (3000 if quick else 10_000)
    B = batch_size or (256 if quick else 1024)
    lr = lr or (1e-2 if quick else 1e-3)
    dens = 20.0 ** -torch.linspace(0, 1, P, dtype=torch.float64)
    importance = 0.9 ** torch.arange(n, dtype=torch.float64)
    cfg = ToyModelConfig(
        n, m, P * R, feature_probability=dens.repeat_interleave(R)[:, None], importance=importance, kind="relu_output"
    )
    model = train_model(cfg, steps, B, lr, seed, progress)
    t_train = time.time() - t0
    groups = [list(range(k * R, (k + 1) * R)) for k in range(P)]
    losses = eval_losses(cfg, model.W, model.b, groups, seed=seed + 777)
    best = best_restarts(losses, groups)
    W = model.W.detach()[best].double()
    b = model.b.detach()[best].double()
    norms = M.feature_norms(W)
    D = M.feature_dimensionality(W)
    geo = M.geometry(W)
    counts = M.geometry_counts(W)
    n_learned = (norms >= LEARNED).sum(-1)
    lines = [
        f"TMS intro: n={n}, m={m}, importance 0.9^i, ReLU output; {R} restarts per density, lowest "
        f"held-out loss kept; {steps} steps, batch {B}, lr {lr:g}",
        f"{'1-S':>7} {'loss':>9} {'worst':>9} {'learned':>7}  {'D_i (feature 0..4)':<30} geometry",
    ]
    for k in range(P):
        Ds = " ".join(f"{float(d):.2f}" for d in D[k])
        lines.append(
            f"{float(dens[k]):>7.3f} {float(losses[best[k]]):>9.5f} {float(losses[groups[k]].max()):>9.5f} "
            f"{int(n_learned[k]):>7d}  {Ds:<30} {fmt_counts(counts[k])}"
        )
    res = dict(
        densities=dens,
        importance=importance,
        losses=losses.reshape(P, R),
        loss=losses[best],
        W=W,
        b=b,
        norms=norms,
        D=D,
        geometry=geo,
        geometry_counts=counts,
        n_learned=n_learned,
        steps=steps,
        batch_size=B,
        lr=lr,
        restarts=R,
        train_s=t_train,
    )
    from . import plots

    return finish(res, lines, plots.plot_intro, out_dir, "tms_intro.png", t0, verbose, t_train)
