"""Correlated and anticorrelated feature pairs of "Toy Models of Superposition" (Elhage et al. 2022)."""

from __future__ import annotations

import time

import torch

from ... import metrics as M
from ...tms.analysis import best_restarts, eval_losses, feature_cosine
from ...tms.config import ToyModelConfig
from ...utils.threads import single_threaded
from .common import DEFAULT_OUT, finish, fmt_counts, train_model


@single_threaded
def correlated(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    densities=None,
    restarts=None,
    batch_size=None,
    lr=None,
    verbose=True,
):
    """Correlated and anticorrelated pairs: n=4, m=2, uniform importance, ReLU output.

    Two batched runs: features (0,1), (2,3) as 2 correlated pairs (one draw switches both members on),
    then as 2 anticorrelated pairs (never on together). For each density the lowest held-out-loss
    restart is kept and the cosine between the pair members reported: correlated members come out
    orthogonal (cos ~ 0; the two pairs are then antipodal to each other), anticorrelated members
    antipodal (cos ~ -1; the two pairs orthogonal).

    The "expected" column counts the restarts whose both pairs came out as expected (|cos| < 0.1,
    resp. cos < -0.95): a good share of anticorrelated restarts instead pair a member of one pair
    antipodally with a member of the other (a local minimum whose extra loss ~ p^2 is small when sparse),
    hence the restarts.

    Defaults: full: densities (0.1, 0.05, 0.02), 16 restarts, batch 1024, lr 1e-3, 10,000 steps; quick:
    density 0.05, 8 restarts, batch 256, lr 1e-2, 3,000 steps.
    """
    t0 = time.time()
    dens = torch.as_tensor(
        densities if densities is not None else ((0.05,) if quick else (0.1, 0.05, 0.02)), dtype=torch.float64
    ).reshape(-1)
    Rn = restarts or (8 if quick else 16)
    steps = steps if steps is not None else (3000 if quick else 10_000)
    B = batch_size or (256 if quick else 1024)
    lr = lr or (1e-2 if quick else 1e-3)
    P = dens.shape[0]
    groups = [list(range(k * Rn, (k + 1) * Rn)) for k in range(P)]
    res = dict(densities=dens, steps=steps, batch_size=B, lr=lr, restarts=Rn)
    lines = [
        f"TMS correlated features: n=4, m=2, importance 1, ReLU output; pairs (0,1) and (2,3); {Rn} restarts "
        f"per density, lowest held-out loss kept; {steps} steps, batch {B}, lr {lr:g}",
        f"{'pairs':<15} {'1-S':>6} {'loss':>9} {'norms':<24} {'cos(0,1)':>9} {'cos(2,3)':>9} "
        f"{'cos(0,2)':>9} {'cos(0,3)':>9} {'expected':>8}  geometry",
    ]
    cos = feature_cosine
    for kind_name, corr, anti in (("correlated", 2, 0), ("anticorrelated", 0, 2)):
        cfg = ToyModelConfig(
            4,
            2,
            P * Rn,
            feature_probability=dens.repeat_interleave(Rn)[:, None],
            importance=1.0,
            kind="relu_output",
            correlated_pairs=corr,
            anticorrelated_pairs=anti,
        )
        model = train_model(cfg, steps, B, lr, seed, progress)
        losses = eval_losses(cfg, model.W, model.b, groups, seed=seed + 999)
        best = best_restarts(losses, groups)
        W = model.W.detach()[best].double()
        within = torch.tensor([[cos(W[k], 0, 1), cos(W[k], 2, 3)] for k in range(P)])
        across = torch.tensor([[cos(W[k], 0, 2), cos(W[k], 0, 3), cos(W[k], 1, 2), cos(W[k], 1, 3)] for k in range(P)])
        # within-pair cosine of every restart (how robust the result is)
        allW = model.W.detach().double()
        all_within = torch.tensor([[cos(allW[j], 0, 1), cos(allW[j], 2, 3)] for j in range(P * Rn)])
        ok = ((all_within.abs() < 0.1) if corr else (all_within < -0.95)).all(-1).reshape(P, Rn)
        counts = M.geometry_counts(W)
        norms = M.feature_norms(W)
        for k in range(P):
            ns = " ".join(f"{float(x):.2f}" for x in norms[k])
            lines.append(
                f"{kind_name:<15} {float(dens[k]):>6.3f} {float(losses[best[k]]):>9.5f} {ns:<24} "
                f"{float(within[k, 0]):>9.3f} {float(within[k, 1]):>9.3f} {float(across[k, 0]):>9.3f} "
                f"{float(across[k, 1]):>9.3f} {f'{int(ok[k].sum())}/{Rn}':>8}  {fmt_counts(counts[k])}"
            )
        res[kind_name] = dict(
            W=W,
            b=model.b.detach()[best].double(),
            loss=losses[best],
            losses=losses.reshape(P, Rn),
            cos_within=within,
            cos_across=across,
            cos_within_all=all_within.reshape(P, Rn, 2),
            n_expected=ok.sum(-1),
            norms=norms,
            geometry_counts=counts,
        )
    res["train_s"] = time.time() - t0
    from . import plots

    return finish(res, lines, plots.plot_correlated, out_dir, "tms_correlated.png", t0, verbose)
