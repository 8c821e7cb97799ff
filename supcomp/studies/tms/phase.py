"""The phase diagram of one extra feature of "Toy Models of Superposition" (Elhage et al. 2022):
n=2 features, m=1 hidden dimension, trained next to the analytic diagram."""

from __future__ import annotations

import time

import torch

from ...tms.analysis import PHASES, classify_phase, phase_analytic, phase_exact_loss
from ...tms.config import ToyModelConfig
from ...utils.threads import single_threaded
from .common import DEFAULT_OUT, finish, train_model


@single_threaded
def phase(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    n_importance=None,
    n_density=None,
    models_per_point=None,
    batch_size=None,
    lr=None,
    verbose=True,
):
    """Phase diagram of one extra feature: n=2, m=1, ReLU output; feature 1 importance 1, the extra
    feature's relative importance 0.1-10 (log grid) x density 1-0.01 (log grid), ``models_per_point``
    instances per grid point (the highest-loss one is discarded, as in the paper).

    Every instance's expected loss is computed exactly (:func:`~supcomp.tms.analysis.phase_exact_loss`),
    the instances are classified by :func:`~supcomp.tms.analysis.classify_phase`, and each grid point
    shows the class of its lowest-loss model (``"majority"`` in the result: the most common class of the
    remaining models). The analytic diagram compares the three candidates' expected losses
    (:func:`~supcomp.tms.analysis.phase_candidate_losses`).

    Defaults: full: 11 x 11 points x 10 models, batch 256, lr 3e-3, 4,000 steps; quick: 6 x 6 x 5,
    batch 128, lr 1e-2, 2,000 steps.
    """
    t0 = time.time()
    Gi = n_importance or (6 if quick else 11)
    Gd = n_density or (6 if quick else 11)
    K = models_per_point or (5 if quick else 10)
    steps = steps if steps is not None else (2000 if quick else 4000)
    B = batch_size or (128 if quick else 256)
    lr = lr or (1e-2 if quick else 3e-3)
    rel = torch.logspace(-1, 1, Gi, dtype=torch.float64)
    dens = torch.logspace(0, -2, Gd, dtype=torch.float64)
    R = rel[:, None, None].expand(Gi, Gd, K).reshape(-1)
    Pp = dens[None, :, None].expand(Gi, Gd, K).reshape(-1)
    imp = torch.stack([torch.ones_like(R), R], -1)
    cfg = ToyModelConfig(2, 1, Gi * Gd * K, feature_probability=Pp[:, None], importance=imp, kind="relu_output")
    model = train_model(cfg, steps, B, lr, seed, progress)
    t_train = time.time() - t0
    w = model.W.detach()[..., 0].double()
    b = model.b.detach().double()
    with torch.no_grad():
        L = phase_exact_loss(w, b, R, Pp).reshape(Gi, Gd, K)
    cls = classify_phase(w).reshape(Gi, Gd, K)
    order = L.argsort(-1)
    best_cls = cls.gather(-1, order[..., :1])[..., 0]
    kept = cls.gather(-1, order[..., :-1]) if K > 1 else cls  # the worst model dropped
    majority = torch.zeros(Gi, Gd, dtype=torch.long)
    agree = torch.zeros(Gi, Gd)
    for i in range(Gi):
        for d in range(Gd):
            cnt = torch.bincount(kept[i, d], minlength=len(PHASES))
            top = int(cnt.max())
            # ties: the class of the lowest-loss model among the tied classes
            cands = (cnt == top).nonzero()[:, 0].tolist()
            majority[i, d] = int(best_cls[i, d]) if int(best_cls[i, d]) in cands else cands[0]
            agree[i, d] = top / kept.shape[-1]
    theory, cand = phase_analytic(rel[:, None], dens[None, :])
    theory_b0, _ = phase_analytic(rel[:, None], dens[None, :], refine=False)
    match = float((best_cls == theory).double().mean())
    cand_best = torch.stack([cand["[1,0]"], cand["[0,1]"], cand["[1,-1]"]], 0).min(0).values
    ratio = L.min(-1).values / cand_best  # trained lowest loss / best candidate's loss
    # a fine analytic grid for the plot
    F = 21 if quick else 41
    fr = torch.logspace(-1, 1, F, dtype=torch.float64)
    fd = torch.logspace(0, -2, F, dtype=torch.float64)
    fine, fc = phase_analytic(fr[:, None], fd[None, :])
    fine_b0, _ = phase_analytic(fr[:, None], fd[None, :], refine=False)
    # superposition margin: > 0 where the antipodal solution wins (its zero level is the boundary)
    other = torch.minimum(fc["[1,0]"], fc["[0,1]"])
    fine_margin = other - fc["[1,-1]"]
    fine_margin_b0 = other - fc["[1,-1] b=0"]
    sym = "nDS?"
    lines = [
        f"TMS phase diagram: n=2, m=1, ReLU output; {K} models per point (worst dropped), {steps} steps, "
        f"batch {B}, lr {lr:g}",
        "cell = trained (lowest exact loss) / analytic: n = extra feature not learned, D = dedicated "
        "dimension, S = superposition, ? = other",
        "rows: relative importance of the extra feature; columns: density 1-S",
        f"{'r / 1-S':>8} " + " ".join(f"{float(d):>6.3f}" for d in dens),
    ]
    for i in range(Gi):
        lines.append(
            f"{float(rel[i]):>8.3f} "
            + " ".join(f"{sym[int(best_cls[i, d])]:>4}/{sym[int(theory[i, d])]}" for d in range(Gd))
        )
    lines.append(
        f"trained (lowest-loss model) matches the analytic phase at {match * 100:.0f}% of the points; "
        f"majority of the kept models matches at {float((majority == theory).double().mean()) * 100:.0f}%; "
        f"analytic with b=0 antipode differs from refined at "
        f"{int((theory_b0 != theory).sum())} of {Gi * Gd} points"
    )
    lines.append(
        f"lowest trained loss / best candidate's loss: median {float(ratio.median()):.3f}, range "
        f"{float(ratio.min()):.3f}-{float(ratio.max()):.3f} (< 1: training found a better solution than "
        "the three candidates)"
    )
    res = dict(
        importance=rel,
        densities=dens,
        losses=L,
        classes=cls,
        best=best_cls,
        majority=majority,
        agreement=agree,
        loss_ratio=ratio,
        theory=theory,
        theory_b0=theory_b0,
        candidates=cand,
        match=match,
        fine_importance=fr,
        fine_densities=fd,
        fine_theory=fine,
        fine_theory_b0=fine_b0,
        fine_margin=fine_margin,
        fine_margin_b0=fine_margin_b0,
        W=w,
        b=b,
        steps=steps,
        batch_size=B,
        lr=lr,
        models_per_point=K,
        train_s=t_train,
    )
    from . import plots

    return finish(res, lines, plots.plot_phase, out_dir, "tms_phase.png", t0, verbose, t_train)
