"""Reproductions of "Toy Models of Superposition" (Elhage et al. 2022) with the supcomp trainer.

One public function per figure of the paper; each trains with :func:`supcomp.tms.train` (restarts and
sweep points are instances of one batched ``train`` call), prints a table, writes PNG(s) through
:mod:`supcomp.tms.plots` and returns a dict of results (``"table"``, ``"paths"``, ``"time_s"`` and the
numbers behind them). Every function takes ``steps`` (``None``: the experiment's default), ``seed``,
``out_dir``, ``progress`` and ``quick`` (smaller sizes for tests and the demo).

=====================  ==========================================================================
``intro``              n=5, m=2, importance 0.9^i: dense -> 2 orthogonal features, sparse -> pentagon
``dimensionality``     n=400, m=30, uniform importance: dimensions per feature (sticky at 1/2) and
                       the feature dimensionalities D_i on the lines 3/4, 2/3, 1/2, 2/5, 3/8
``phase``              n=2, m=1 phase diagram (importance x density) next to the analytic one
``correlated``         correlated pairs -> orthogonal members, anticorrelated pairs -> antipodal
``dynamics``           D_i of every feature over training: discrete jumps between dimensionalities
``cross_entropy``      one neuron, four tokens: cross-entropy vs. squared error (plain torch)
=====================  ==========================================================================

Losses are the library's: the importance-weighted squared error **meaned** over features (the TMS
notebook's convention), so an n=2 loss is half the paper's sum over features. Final losses are
re-evaluated on a large held-out sample shared by the restarts of one setting (common random numbers),
or exactly (by quadrature) for the n=2, m=1 phase diagram, because the training-batch losses of
different instances come from different batches and are too noisy to pick a restart.

Threads: the fused trainer parallelises with OpenMP over ``torch.get_num_threads()`` threads. For the
tiny models here (n*m <= 100) one thread is faster (the parallel regions are too short, and on a shared
machine a busy second core makes them much slower), so those runs use one thread; the large runs keep
the default unless the machine is already loaded (load average >= number of cores - 0.5).
"""
from __future__ import annotations

import contextlib
import math
import os
import time

import torch

from ... import metrics as M
from ...tms.config import ToyModelConfig
from ...tms.data import sample_batch
from ...tms.train import train

DEFAULT_OUT = os.path.join("supcomp-report", "tms")
NAMES = ("intro", "dimensionality", "phase", "correlated", "dynamics", "cross_entropy")

#: The feature-dimensionality lines of the paper's geometry figure.
D_LINES = ((3 / 4, "3/4 tetrahedron"), (2 / 3, "2/3 triangle"), (1 / 2, "1/2 antipodal pair"),
           (2 / 5, "2/5 pentagon"), (3 / 8, "3/8 square antiprism"))
LEARNED = 0.5  # ||W_i|| >= LEARNED: the feature is represented

_SHORT = {"not learned": "none", "dedicated dimension": "dedic", "antipodal pair": "pair", "triangle": "tri",
          "tetrahedron": "tetra", "pentagon": "penta", "square antiprism": "antipr", "other": "other"}


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _threads(k):
    old = torch.get_num_threads()
    if k is not None and k != old:
        torch.set_num_threads(k)
    try:
        yield
    finally:
        if k is not None and k != old:
            torch.set_num_threads(old)


def _threads_for(n, m):
    """1 thread for tiny models or a loaded machine, else the default (None)."""
    if n * m <= 100:
        return 1
    try:
        cores = os.cpu_count() or 1
        if cores > 1 and os.getloadavg()[0] >= cores - 0.5:
            return 1
    except OSError:
        pass
    return None


def _single_threaded(fn):
    """Run a tiny-model experiment on one thread (training, evaluation and the analytic parts alike)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _threads(1):
            return fn(*args, **kwargs)
    return wrapper


def _train(cfg, steps, batch_size, lr, seed, progress):
    with _threads(_threads_for(cfg.n_features, cfg.n_hidden)):
        return train(cfg, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress)


def _out(out_dir, name):
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def _emit(text, verbose):
    if verbose:
        print(text, flush=True)


def _fmt_counts(counts: dict) -> str:
    s = " ".join(f"{_SHORT.get(k, k)}:{v}" for k, v in counts.items() if v)
    return s or "-"


def _frac(x, tol=0.02) -> str:
    """0.4 -> '2/5' when x is within tol of a simple fraction, else '0.43'."""
    if abs(x) <= tol:
        return "0"
    for den in range(1, 9):
        num = round(x * den)
        if num and abs(x - num / den) <= tol:
            return f"{num}/{den}" if den > 1 else f"{num}"
    return f"{x:.2f}"


def _forward(x, W, b, kind):
    """x [S, n], W [R, n, m], b [R, n] -> y [R, S, n] (tied toy models)."""
    h = torch.einsum("sn,rnm->rsm", x, W)
    if kind == "relu_hidden":
        h = torch.relu(h)
    y = torch.einsum("rsm,rnm->rsn", h, W) + b[:, None]
    return y if kind == "linear" else torch.relu(y)


def eval_losses(cfg: ToyModelConfig, W, b, groups, n_samples=1 << 16, seed=12345, chunk=1 << 14):
    """Expected loss of every instance on a large held-out sample, ``[I]`` float64.

    ``groups`` is a list of instance-index lists that share the data distribution (restarts of one
    setting); each group is scored on the same sample (drawn with the library's sampler from the first
    member's probabilities), so the restarts of a setting are compared with common random numbers.
    Tied kinds only. The loss is the library's (importance-weighted squared error meaned over features).
    """
    W = W.detach().double()
    b = b.detach().double()
    probs, imps = cfg.probabilities(), cfg.importances()
    out = torch.full((cfg.n_instances,), float("nan"), dtype=torch.float64)
    for gi, group in enumerate(groups):
        g = torch.as_tensor(group)
        one = ToyModelConfig(cfg.n_features, cfg.n_hidden, 1, feature_probability=probs[g[0]][None],
                             importance=1.0, kind=cfg.kind, correlated_pairs=cfg.correlated_pairs,
                             anticorrelated_pairs=cfg.anticorrelated_pairs)
        x = sample_batch(one, n_samples, seed=seed + gi, dtype=torch.float64).to_dense()[0]
        tot = torch.zeros(len(group), dtype=torch.float64)
        for s in range(0, n_samples, chunk):
            xs = x[s:s + chunk]
            y = _forward(xs, W[g], b[g], cfg.kind)
            tot += (imps[g][:, None] * (y - xs) ** 2).sum((1, 2))
        out[g] = tot / (n_samples * cfg.n_features)
    return out


def _best(losses, groups):
    return [group[int(torch.argmin(losses[torch.as_tensor(group)]))] for group in groups]


def _cos(W, i, j):
    return float(torch.nn.functional.cosine_similarity(W[i], W[j], dim=0))


# ----------------------------------------------------------------------------- 1. intro

@_single_threaded
def intro(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, n_densities=None,
          restarts=None, batch_size=None, lr=None, verbose=True):
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
    cfg = ToyModelConfig(n, m, P * R, feature_probability=dens.repeat_interleave(R), importance=importance,
                         kind="relu_output")
    model = _train(cfg, steps, B, lr, seed, progress)
    t_train = time.time() - t0
    groups = [list(range(k * R, (k + 1) * R)) for k in range(P)]
    losses = eval_losses(cfg, model.W, model.b, groups, seed=seed + 777)
    best = _best(losses, groups)
    W = model.W.detach()[best].double()
    b = model.b.detach()[best].double()
    norms = M.feature_norms(W)
    D = M.feature_dimensionality(W)
    geo = M.geometry(W)
    counts = M.geometry_counts(W)
    n_learned = (norms >= LEARNED).sum(-1)
    lines = [f"TMS intro: n={n}, m={m}, importance 0.9^i, ReLU output; {R} restarts per density, lowest "
             f"held-out loss kept; {steps} steps, batch {B}, lr {lr:g}",
             f"{'1-S':>7} {'loss':>9} {'worst':>9} {'learned':>7}  {'D_i (feature 0..4)':<30} geometry"]
    for k in range(P):
        Ds = " ".join(f"{float(d):.2f}" for d in D[k])
        lines.append(f"{float(dens[k]):>7.3f} {float(losses[best[k]]):>9.5f} {float(losses[groups[k]].max()):>9.5f} "
                     f"{int(n_learned[k]):>7d}  {Ds:<30} {_fmt_counts(counts[k])}")
    res = dict(densities=dens, importance=importance, losses=losses.reshape(P, R), loss=losses[best], W=W, b=b,
               norms=norms, D=D, geometry=geo, geometry_counts=counts, n_learned=n_learned, steps=steps,
               batch_size=B, lr=lr, restarts=R, train_s=t_train)
    from . import plots
    res["paths"] = [plots.plot_intro(res, _out(out_dir, "tms_intro.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s, training {t_train:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- 2. dimensionality

def dimensionality(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, n_features=None,
                   n_hidden=None, n_densities=None, min_density=None, batch_size=None, lr=None, verbose=True):
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
        dens = torch.cat([torch.logspace(0, -1, a, dtype=torch.float64),
                          torch.logspace(-1, lo, b + 1, dtype=torch.float64)[1:]]) if lo < -1 else \
            torch.logspace(0, lo, a + b, dtype=torch.float64)
    P = dens.shape[0]
    cfg = ToyModelConfig(n, m, P, feature_probability=dens, importance=1.0, kind="relu_output")
    model = _train(cfg, steps, B, lr, seed, progress)
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
    head = f"{'1-S':>7} {'1/(1-S)':>8} {'loss':>9} {'learned':>7} {'|W|_F^2':>8} {'D*':>6} " + \
        " ".join(f"{_SHORT[k]:>6}" for k in keys)
    lines = [f"TMS dimensionality: n={n}, m={m}, importance 1, ReLU output; {steps} steps, batch {B}, lr {lr:g}; "
             f"loss = mean of the last 100 training losses", head]
    for k in range(P):
        fro = float(W[k].square().sum())
        lines.append(f"{float(dens[k]):>7.4f} {1 / float(dens[k]):>8.2f} {float(loss[k]):>9.5f} "
                     f"{int(n_learned[k]):>7d} "
                     f"{fro:>8.2f} {float(dpf[k]):>6.3f} " + " ".join(f"{counts[k][c]:>6d}" for c in keys))
    # how many learned features sit near each D line, over all densities
    Dl = D[learned]
    near = {lab: int(((Dl - v).abs() <= 0.02).sum()) for v, lab in D_LINES}
    near["1 (dedicated)"] = int(((Dl - 1).abs() <= 0.02).sum())
    lines.append("learned features (all densities) with |D_i - line| <= 0.02: " +
                 ", ".join(f"{k}: {v}" for k, v in near.items()) + f" (of {int(learned.sum())})")
    res = dict(densities=dens, loss=loss, W=W, norms=norms, D=D, dims_per_feature=dpf, geometry_counts=counts,
               n_learned=n_learned, near_lines=near, n_features=n, n_hidden=m, steps=steps, batch_size=B, lr=lr,
               train_s=t_train)
    from . import plots
    res["paths"] = [plots.plot_dimensionality(res, _out(out_dir, "tms_dimensionality.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s, training {t_train:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- 3. phase diagram

PHASES = ("not learned", "dedicated", "superposition", "other")


def phase_exact_loss(w, b, importance, density, nodes=256, chunk_elems=1 << 22):
    """Exact expected loss of n=2, m=1 ReLU-output models, ``[N]`` float64 (library convention: meaned
    over the 2 features).

    ``w [N, 2]`` (the two features' 1-D embeddings), ``b [N, 2]``, ``importance [N]`` (of feature 2;
    feature 1 has importance 1), ``density [N]`` (both features). Each feature is on with probability p,
    then uniform on [0, 1]; the loss splits by the set of active features::

        L = (1-p)^2 L_none + p(1-p) (L_{1} + L_{2}) + p^2 L_{12}

    and the integrals over [0,1] / [0,1]^2 are computed with the midpoint rule on ``nodes`` points per
    axis (error O(nodes^-2) at the ReLU kinks; ~1e-5 relative at 256). Differentiable in w and b.
    """
    w, b = w.double(), b.double()
    r = torch.as_tensor(importance, dtype=torch.float64).expand(w.shape[0])
    p = torch.as_tensor(density, dtype=torch.float64).expand(w.shape[0])
    step = max(1, chunk_elems // (nodes * nodes))
    if w.shape[0] > step:  # bounded memory: the 2-D integral holds [N, nodes^2] tensors
        return torch.cat([phase_exact_loss(w[s:s + step], b[s:s + step], r[s:s + step], p[s:s + step], nodes)
                          for s in range(0, w.shape[0], step)])
    imp = torch.stack([torch.ones_like(r), r], -1)  # [N, 2]
    t = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes
    # none active: outputs relu(b), target 0
    L0 = (imp * torch.relu(b) ** 2).sum(-1)
    L1 = []
    for i in range(2):
        h = w[:, i, None] * t  # [N, T]
        y = torch.relu(w[:, :, None] * h[:, None] + b[:, :, None])  # [N, 2, T]
        tgt = torch.zeros_like(y)
        tgt[:, i] = t
        L1.append((imp[:, :, None] * (y - tgt) ** 2).sum(1).mean(-1))
    x1, x2 = t[:, None].expand(nodes, nodes).reshape(-1), t[None, :].expand(nodes, nodes).reshape(-1)
    h = w[:, 0, None] * x1 + w[:, 1, None] * x2  # [N, T^2]
    y1 = torch.relu(w[:, 0, None] * h + b[:, 0, None])
    y2 = torch.relu(w[:, 1, None] * h + b[:, 1, None])
    L2 = ((y1 - x1) ** 2).mean(-1) + r * ((y2 - x2) ** 2).mean(-1)
    L = (1 - p) ** 2 * L0 + p * (1 - p) * (L1[0] + L1[1]) + p ** 2 * L2
    return L / 2


def phase_candidate_losses(importance, density, refine=True, iters=200):
    """Expected loss (library convention, /2) of the three candidate n=2, m=1 solutions, each with its
    optimal bias. Returns ``{"[1,0]", "[0,1]", "[1,-1]", "[1,-1] b=0"}`` -> tensors shaped like the
    broadcast inputs.

    Derivation (x_i = 0 w.p. 1-p, else U[0,1]; feature 1 importance 1, feature 2 importance r; sums
    over features, halved at the end):

    * W=[1,0]: x1 is reproduced exactly (b1=0, x1 >= 0); output 2 is the constant relu(b2), best at
      b2 = E[x2] = p/2, costing r Var(x2) = r (p/3 - p^2/4).
    * W=[0,1]: symmetric: p/3 - p^2/4.
    * W=[1,-1], b=0: a lone active feature is reproduced exactly (the other output is relu(-x) = 0);
      with both active, h = x1 - x2 and each output errs by min(x1, x2), so the loss is
      p^2 (1 + r) E[min(U, V)^2] = p^2 (1 + r) / 6.
      b=0 and unit norms are optimal only approximately, so with ``refine`` the antipodal solution's
      norms (a, -c) and biases are optimised numerically (Adam on :func:`phase_exact_loss`, norms
      kept in [0.5, 2] so that it stays antipodal) and the minimum of the two is used.
    """
    r = torch.as_tensor(importance, dtype=torch.float64)
    p = torch.as_tensor(density, dtype=torch.float64)
    r, p = torch.broadcast_tensors(r, p)
    v = p / 3 - p ** 2 / 4
    out = {"[1,0]": r * v / 2, "[0,1]": v / 2, "[1,-1] b=0": (1 + r) * p ** 2 / 12}
    anti = out["[1,-1] b=0"].clone()
    if refine:
        shape = r.shape
        rf, pf = r.reshape(-1), p.reshape(-1)
        N = rf.shape[0]
        # a, c = 0.5 + 1.5 sigmoid(z): starts at 1
        za = torch.full((N, 2), math.log(1 / 2), dtype=torch.float64, requires_grad=True)
        bb = torch.zeros(N, 2, dtype=torch.float64, requires_grad=True)
        # Adam is per coordinate, so the grid points (independent problems summed into one objective)
        # are optimised independently whatever their loss scale; the step size decays to 0 (cosine).
        opt = torch.optim.Adam([za, bb], lr=0.03)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)

        def wb():
            ac = 0.5 + 1.5 * torch.sigmoid(za)
            return torch.stack([ac[:, 0], -ac[:, 1]], -1), bb

        for _ in range(iters):
            opt.zero_grad()
            w, b = wb()
            phase_exact_loss(w, b, rf, pf, nodes=32).sum().backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            w, b = wb()
            ref = phase_exact_loss(w, b, rf, pf, nodes=128).reshape(shape)
        anti = torch.minimum(anti, ref)
    out["[1,-1]"] = anti
    return out


def phase_analytic(importance, density, refine=True):
    """The analytic phase (index into :data:`PHASES`) at each (importance, density): the candidate with
    the lowest expected loss (:func:`phase_candidate_losses`)."""
    c = phase_candidate_losses(importance, density, refine=refine)
    L = torch.stack([c["[1,0]"], c["[0,1]"], c["[1,-1]"]], 0)
    return L.argmin(0), c


def classify_phase(w, threshold=LEARNED):
    """Classify n=2, m=1 embeddings ``w [N, 2]`` (feature 1, extra feature 2) into :data:`PHASES`
    indices: 0 extra feature not learned (|w2| < t <= |w1|), 1 dedicated (extra feature has the
    dimension, feature 1 dropped), 2 superposition (both learned, opposite signs), 3 other."""
    a, c = w[:, 0].abs() >= threshold, w[:, 1].abs() >= threshold
    cls = torch.full((w.shape[0],), 3, dtype=torch.long)
    cls[a & ~c] = 0
    cls[~a & c] = 1
    cls[a & c & (w[:, 0] * w[:, 1] < 0)] = 2
    return cls


@_single_threaded
def phase(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, n_importance=None,
          n_density=None, models_per_point=None, batch_size=None, lr=None, verbose=True):
    """Phase diagram of one extra feature: n=2, m=1, ReLU output; feature 1 importance 1, the extra
    feature's relative importance 0.1-10 (log grid) x density 1-0.01 (log grid), ``models_per_point``
    instances per grid point (the highest-loss one is discarded, as in the paper).

    Every instance's expected loss is computed exactly (:func:`phase_exact_loss`), the instances are
    classified by :func:`classify_phase`, and each grid point shows the class of its lowest-loss model
    (``"majority"`` in the result: the most common class of the remaining models). The analytic
    diagram compares the three candidates' expected losses (:func:`phase_candidate_losses`).

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
    cfg = ToyModelConfig(2, 1, Gi * Gd * K, feature_probability=Pp, importance=imp, kind="relu_output")
    model = _train(cfg, steps, B, lr, seed, progress)
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
    lines = [f"TMS phase diagram: n=2, m=1, ReLU output; {K} models per point (worst dropped), {steps} steps, "
             f"batch {B}, lr {lr:g}",
             "cell = trained (lowest exact loss) / analytic: n = extra feature not learned, D = dedicated "
             "dimension, S = superposition, ? = other",
             "rows: relative importance of the extra feature; columns: density 1-S",
             f"{'r / 1-S':>8} " + " ".join(f"{float(d):>6.3f}" for d in dens)]
    for i in range(Gi):
        lines.append(f"{float(rel[i]):>8.3f} " + " ".join(
            f"{sym[int(best_cls[i, d])]:>4}/{sym[int(theory[i, d])]}" for d in range(Gd)))
    lines.append(f"trained (lowest-loss model) matches the analytic phase at {match * 100:.0f}% of the points; "
                 f"majority of the kept models matches at {float((majority == theory).double().mean()) * 100:.0f}%; "
                 f"analytic with b=0 antipode differs from refined at "
                 f"{int((theory_b0 != theory).sum())} of {Gi * Gd} points")
    lines.append(f"lowest trained loss / best candidate's loss: median {float(ratio.median()):.3f}, range "
                 f"{float(ratio.min()):.3f}-{float(ratio.max()):.3f} (< 1: training found a better solution than "
                 "the three candidates)")
    res = dict(importance=rel, densities=dens, losses=L, classes=cls, best=best_cls, majority=majority,
               agreement=agree, loss_ratio=ratio, theory=theory, theory_b0=theory_b0, candidates=cand,
               match=match,
               fine_importance=fr, fine_densities=fd, fine_theory=fine, fine_theory_b0=fine_b0,
               fine_margin=fine_margin, fine_margin_b0=fine_margin_b0, W=w, b=b,
               steps=steps, batch_size=B, lr=lr, models_per_point=K, train_s=t_train)
    from . import plots
    res["paths"] = [plots.plot_phase(res, _out(out_dir, "tms_phase.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s, training {t_train:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- 4. correlated features

@_single_threaded
def correlated(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, densities=None,
               restarts=None, batch_size=None, lr=None, verbose=True):
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
    dens = torch.as_tensor(densities if densities is not None else ((0.05,) if quick else (0.1, 0.05, 0.02)),
                           dtype=torch.float64).reshape(-1)
    Rn = restarts or (8 if quick else 16)
    steps = steps if steps is not None else (3000 if quick else 10_000)
    B = batch_size or (256 if quick else 1024)
    lr = lr or (1e-2 if quick else 1e-3)
    P = dens.shape[0]
    groups = [list(range(k * Rn, (k + 1) * Rn)) for k in range(P)]
    res = dict(densities=dens, steps=steps, batch_size=B, lr=lr, restarts=Rn)
    lines = [f"TMS correlated features: n=4, m=2, importance 1, ReLU output; pairs (0,1) and (2,3); {Rn} restarts "
             f"per density, lowest held-out loss kept; {steps} steps, batch {B}, lr {lr:g}",
             f"{'pairs':<15} {'1-S':>6} {'loss':>9} {'norms':<24} {'cos(0,1)':>9} {'cos(2,3)':>9} "
             f"{'cos(0,2)':>9} {'cos(0,3)':>9} {'expected':>8}  geometry"]
    for kind_name, corr, anti in (("correlated", 2, 0), ("anticorrelated", 0, 2)):
        cfg = ToyModelConfig(4, 2, P * Rn, feature_probability=dens.repeat_interleave(Rn), importance=1.0,
                             kind="relu_output", correlated_pairs=corr, anticorrelated_pairs=anti)
        model = _train(cfg, steps, B, lr, seed, progress)
        losses = eval_losses(cfg, model.W, model.b, groups, seed=seed + 999)
        best = _best(losses, groups)
        W = model.W.detach()[best].double()
        within = torch.tensor([[_cos(W[k], 0, 1), _cos(W[k], 2, 3)] for k in range(P)])
        across = torch.tensor([[_cos(W[k], 0, 2), _cos(W[k], 0, 3), _cos(W[k], 1, 2), _cos(W[k], 1, 3)]
                               for k in range(P)])
        # within-pair cosine of every restart (how robust the result is)
        allW = model.W.detach().double()
        all_within = torch.tensor([[_cos(allW[j], 0, 1), _cos(allW[j], 2, 3)] for j in range(P * Rn)])
        ok = ((all_within.abs() < 0.1) if corr else (all_within < -0.95)).all(-1).reshape(P, Rn)
        counts = M.geometry_counts(W)
        norms = M.feature_norms(W)
        for k in range(P):
            ns = " ".join(f"{float(x):.2f}" for x in norms[k])
            lines.append(f"{kind_name:<15} {float(dens[k]):>6.3f} {float(losses[best[k]]):>9.5f} {ns:<24} "
                         f"{float(within[k, 0]):>9.3f} {float(within[k, 1]):>9.3f} {float(across[k, 0]):>9.3f} "
                         f"{float(across[k, 1]):>9.3f} {f'{int(ok[k].sum())}/{Rn}':>8}  {_fmt_counts(counts[k])}")
        res[kind_name] = dict(W=W, b=model.b.detach()[best].double(), loss=losses[best],
                              losses=losses.reshape(P, Rn), cos_within=within, cos_across=across,
                              cos_within_all=all_within.reshape(P, Rn, 2), n_expected=ok.sum(-1), norms=norms,
                              geometry_counts=counts)
    res["train_s"] = time.time() - t0
    from . import plots
    res["paths"] = [plots.plot_correlated(res, _out(out_dir, "tms_correlated.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- 5. dynamics

def train_with_snapshots(cfg: ToyModelConfig, steps, snapshot_steps, batch_size=1024, lr=1e-3, seed=0,
                         progress=True, weight_decay=0.01):
    """The loop of :func:`supcomp.tms.train` (same init, batches and AdamW; fused backend) that also
    keeps copies of ``W`` at ``snapshot_steps`` (the weights *after* that many steps; 0 = the init).
    Returns ``(model, steps_list, W_snapshots [S, I, n, m], loss_history [steps, I])``."""
    from tqdm.auto import tqdm

    from ...tms.data import BatchSampler
    from ...tms.model import ToyModel
    from ...tms.train import FusedAdamW, fused_sampled_adamw_step

    model = ToyModel(cfg, seed=seed)
    sampler = BatchSampler(cfg, batch_size, seed=seed)
    opt = FusedAdamW(model, lr=lr, weight_decay=weight_decay)
    want = sorted({int(s) for s in snapshot_steps if 0 <= int(s) <= steps})
    snaps, taken, hist = [], [], []
    if want and want[0] == 0:
        snaps.append(model.W.detach().clone())
        taken.append(0)
    wi = 1 if taken else 0
    for step in tqdm(range(steps), desc=f"tms dynamics I={cfg.n_instances}", disable=not progress, mininterval=0.5):
        hist.append(fused_sampled_adamw_step(model, sampler, step, opt))
        while wi < len(want) and want[wi] == step + 1:
            snaps.append(model.W.detach().clone())
            taken.append(step + 1)
            wi += 1
    model.loss_history = torch.stack(hist) if hist else torch.zeros(0, cfg.n_instances)
    model.loss_steps = list(range(steps))
    return model, taken, torch.stack(snaps), model.loss_history


_LEVELS = (0.0, 1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)


def level_paths(D, norms, steps_list, tol=0.0125, dwell=None):
    """The sequence of dimensionality levels (:data:`_LEVELS`; 0 = not learned) each feature dwells on.

    ``D, norms [S, n]`` over snapshots. A feature is *on* a level at a snapshot when its D_i is within
    ``tol`` of it (level 0: ``||W_i|| < 0.5``; the default tol is half the gap between 2/5 and 3/8); it
    *dwells* there when it stays on it over consecutive snapshots spanning at least ``dwell`` steps
    (default: 3% of the run, at least 100), so that a feature sweeping past a level does not count.
    Returns ``(paths, jumps)``: ``paths[i]`` the list of ``(level, first_step)``
    dwelt on by feature i, in order (repeats merged); ``jumps`` the ``(feature, from, to, step)`` moves
    between two nonzero levels."""
    S, n = D.shape
    if dwell is None:
        dwell = max(100, int(0.03 * steps_list[-1]))
    paths, jumps = [], []
    for i in range(n):
        lv = []
        for s in range(S):
            if float(norms[s, i]) < LEARNED:
                lv.append(0.0)
                continue
            near = [v for v in _LEVELS[1:] if abs(float(D[s, i]) - v) <= tol]
            lv.append(min(near, key=lambda v: abs(float(D[s, i]) - v)) if near else None)
        path, s = [], 0
        while s < S:
            e = s
            while e + 1 < S and lv[e + 1] == lv[s]:
                e += 1
            if lv[s] is not None and steps_list[e] - steps_list[s] >= dwell and (not path or path[-1][0] != lv[s]):
                path.append((lv[s], steps_list[s]))
            s = e + 1
        paths.append(path)
        for (a, _), (b, st) in zip(path, path[1:]):
            if a > 0 and b > 0:
                jumps.append((i, a, b, st))
    return paths, jumps


def dynamics(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, n_features=None, n_hidden=None,
             density=None, n_snapshots=None, batch_size=None, lr=None, verbose=True):
    """Learning dynamics: the dimensionality D_i of every feature over training (uniform importance, ReLU
    output), snapshotting W during one run (:func:`train_with_snapshots`).

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
    snap = sorted(set(torch.logspace(0, math.log10(max(steps, 1)), S // 2).round().long().tolist())
                  | set(torch.linspace(0, steps, S // 2).round().long().tolist()))
    with _threads(_threads_for(n, m)):
        model, taken, Ws, hist = train_with_snapshots(cfg, steps, snap, B, lr, seed, progress)
    t_train = time.time() - t0
    Ws = Ws[:, 0].double()  # [S, n, m]
    D = M.feature_dimensionality(Ws)  # [S, n]
    norms = M.feature_norms(Ws)
    dpf = M.dimensions_per_feature(Ws)
    loss = hist[:, 0].double()
    # smoothed loss at the snapshots (mean of the 50 steps before)
    sm = torch.tensor([float(loss[max(0, s - 50):max(1, s)].mean()) for s in taken])
    paths, jumps = level_paths(D, norms, taken)
    show = sorted({min(range(len(taken)), key=lambda i: abs(taken[i] - s))
                   for s in [0, 100, 300, 1000, 2000, 3000, 5000, 10_000, 15_000, 20_000, steps] if s <= steps})
    # geometry of the tabulated snapshots only ([S, n, n] cosines for every snapshot would be GBs at n=400)
    counts = dict(zip(show, M.geometry_counts(Ws[show])))
    lines = [f"TMS learning dynamics: n={n}, m={m}, 1-S={p:g}, importance 1, ReLU output; {steps} steps, batch {B}, "
             f"lr {lr:g}; {len(taken)} snapshots of W",
             f"{'step':>7} {'loss':>9} {'learned':>7} {'D*':>6}  {'#D near 1, 3/4, 2/3, 1/2, 2/5, 3/8':<36} geometry"]
    for i in show:
        Di = D[i][norms[i] >= LEARNED]
        near = [int(((Di - v).abs() <= 0.03).sum()) for v in (1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)]
        lines.append(f"{taken[i]:>7d} {float(sm[i]):>9.5f} {int((norms[i] >= LEARNED).sum()):>7d} "
                     f"{float(dpf[i]):>6.3f}  "
                     f"{str(near):<36} {_fmt_counts(counts[i])}")
    ends = {}
    for pth in paths:
        if pth:
            key = " -> ".join(_frac(v) for v, _ in pth)
            ends[key] = ends.get(key, 0) + 1
    lines.append("levels each feature dwelt on (see level_paths: within 0.0125 of 0, 1, 3/4, 2/3, 1/2, 2/5, 3/8 "
                 "for >= 3% of the run), in order: " +
                 ", ".join(f"{k}: {v}" for k, v in sorted(ends.items(), key=lambda kv: -kv[1])))
    lines.append(f"jumps between two nonzero levels: {len(jumps)}" +
                 ("" if not jumps else " (feature: from -> to @ step: " +
                  ", ".join(f"{i}: {_frac(a)} -> {_frac(b)} @ {st}" for i, a, b, st in jumps[:8]) +
                  (" ..." if len(jumps) > 8 else "") + ")"))
    res = dict(steps_list=taken, W=Ws, D=D, norms=norms, dims_per_feature=dpf, loss_history=loss, loss_at=sm,
               jumps=jumps, level_paths=paths, geometry_counts=counts, n_features=n, n_hidden=m, density=p,
               steps=steps,
               batch_size=B, lr=lr, train_s=t_train)
    from . import plots
    res["paths"] = [plots.plot_dynamics(res, _out(out_dir, "tms_dynamics.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s, training {t_train:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- 6. cross-entropy

TOKENS = "ABCD"


def binary_code_losses(k: int) -> dict:
    """Optimal losses of a one-neuron model whose neuron fires with one common magnitude on k of the 4
    equally likely tokens (0 on the others), with the best read-out.

    * cross-entropy: the read-out can only tell "fired" from "silent", so the best prediction is uniform
      over the k tokens (resp. the 4-k others): ``(k/4) ln k + ((4-k)/4) ln(4-k)``: k=1 (monosemantic)
      ``(3/4) ln 3 = 0.824``, k=2 (polysemantic) ``ln 2 = 0.693``, k=0 or 4 ``ln 4``.
    * squared error of linear outputs against the one-hot target (summed over the 4 outputs): the best
      outputs are the conditional means: ``(k/4)(1 - 1/k) + ((4-k)/4)(1 - 1/(4-k)) = 1/2`` for every
      k in 1..3 (3/4 for k = 0, 4): squared error has no preference.
    """
    def ent(j):
        return j * math.log(j) if j > 0 else 0.0

    ce = (ent(k) + ent(4 - k)) / 4
    mse = 0.75 if k in (0, 4) else ((k - 1) + (3 - k)) / 4
    return {"ce": ce, "mse": mse}


@_single_threaded
def cross_entropy(steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False, *, restarts=None, lr=None,
                  weight_decay=0.01, verbose=True):
    """One neuron, four features A-D, each predicting its own token: cross-entropy vs. squared error.

    Setup (plain torch; exact expectation, no sampling): a token t in {A, B, C, D} is drawn uniformly;
    the input is the one-hot x = e_t; one ReLU neuron h = relu(w . x + c) (w in R^4, c in R); the
    outputs are z = u h + beta (u, beta in R^4). Trained (AdamW, ``weight_decay``, full batch of the 4
    tokens, ``restarts`` random inits batched) with

    * cross-entropy ``-log softmax(z)_t``, and
    * squared error ``||z - e_t||^2`` (the TMS loss with a linear read-out of the one-hot target).

    Analytic references (:func:`binary_code_losses`): a neuron with one firing level on k tokens costs
    CE ``(3/4) ln 3 = 0.824`` (monosemantic, k=1) vs. ``ln 2 = 0.693`` (polysemantic, k=2), and
    squared error 1/2 for every k. With free magnitudes the neuron can also fire at *different* levels
    on different tokens (a magnitude code): the read-out's 4 lines in h can then put a different token
    on top at each level, so CE -> 0 as the weights grow (weight decay stops this), while squared error
    stays at exactly 1/2 for any non-constant neuron (a scalar explains 1/4 of the targets' variance 3/4
    whatever it codes, the target covariance being isotropic on the contrasts). So cross-entropy pushes
    the neuron to fire on several tokens (polysemantic), squared error is indifferent.

    The neuron's code is read from its activations a_t = relu(w_t + c): it "fires" on t if
    a_t > 0.01 max a; the code is named by the tokens and their relative levels.

    Defaults: 64 restarts (quick 16), lr 0.02, 4,000 steps (quick 1,500).
    """
    t0 = time.time()
    R = restarts or (16 if quick else 64)
    steps = steps if steps is not None else (1500 if quick else 4000)
    lr = lr or 0.02
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(4)
    X = torch.eye(4, dtype=torch.float64)
    res = dict(steps=steps, restarts=R, lr=lr, weight_decay=weight_decay)
    analytic = {k: binary_code_losses(k) for k in range(5)}
    res["analytic"] = analytic
    init = [torch.randn(R, 4, generator=g, dtype=torch.float64) * 0.5,
            torch.randn(R, generator=g, dtype=torch.float64) * 0.1 + 0.5,  # c > 0: few dead neurons
            torch.randn(R, 4, generator=g, dtype=torch.float64) * 0.5,
            torch.zeros(R, 4, dtype=torch.float64)]
    lines = [f"TMS cross-entropy vs. squared error: one ReLU neuron, 4 one-hot tokens; {R} restarts, {steps} steps, "
             f"AdamW lr {lr:g}, wd {weight_decay:g}",
             "analytic, neuron firing at one level on k tokens: "
             + ", ".join(f"k={k}: CE {analytic[k]['ce']:.4f} MSE {analytic[k]['mse']:.3f}" for k in range(5)),
             f"  monosemantic (k=1): CE (3/4) ln 3 = {0.75 * math.log(3):.4f}; polysemantic (k=2): CE ln 2 = "
             f"{math.log(2):.4f}; MSE 1/2 for both",
             f"{'loss':<5} {'best':>8} {'median':>8} {'worst':>8}  {'codes of the restarts (fires on)':<40} "
             "best restart: activations A..D"]
    for loss_name in ("ce", "mse"):
        w, c, u, beta = (t.clone().requires_grad_(True) for t in init)
        opt = torch.optim.AdamW([w, c, u, beta], lr=lr, weight_decay=weight_decay)

        def losses_fn():
            h = torch.relu(torch.einsum("tf,rf->rt", X, w) + c[:, None])  # [R, 4 tokens]
            z = h[:, :, None] * u[:, None, :] + beta[:, None, :]  # [R, t, 4 outputs]
            if loss_name == "ce":
                return torch.nn.functional.cross_entropy(z.reshape(-1, 4), targets.repeat(R),
                                                         reduction="none").reshape(R, 4).mean(-1), h
            return ((z - X[None]) ** 2).sum(-1).mean(-1), h

        for _ in range(steps):
            opt.zero_grad()
            L, _ = losses_fn()
            L.sum().backward()
            opt.step()
        with torch.no_grad():
            L, h = losses_fn()
        fires = h > 0.01 * h.max(-1, keepdim=True).values.clamp_min(1e-12)
        k = fires.sum(-1)
        codes = []
        for r in range(R):
            on = [TOKENS[t] for t in range(4) if fires[r, t]]
            lv = h[r][fires[r]]
            distinct = len(on) > 1 and float(lv.max() / lv.min()) > 1.1
            codes.append("".join(on) + ("*" if distinct else ""))
        best = int(L.argmin())
        tally = {}
        for cd in codes:
            tally[cd] = tally.get(cd, 0) + 1
        tally_s = " ".join(f"{cd or '-'}:{v}" for cd, v in sorted(tally.items(), key=lambda kv: -kv[1]))
        acts = " ".join(f"{float(a):.2f}" for a in h[best])
        lines.append(f"{loss_name:<5} {float(L.min()):>8.4f} {float(L.median()):>8.4f} {float(L.max()):>8.4f}  "
                     f"{tally_s:<40} {acts} ({codes[best]})")
        res[loss_name] = dict(losses=L, activations=h, n_fires=k, codes=codes, best=best,
                              w=w.detach(), c=c.detach(), u=u.detach(), beta=beta.detach())
    lines.append("codes: the tokens the neuron fires on; * = at clearly different levels (a magnitude code); "
                 "- = dead neuron")
    # Binary neurons: the neuron fixed to fire at level 1 on a subset S of the tokens, only the read-out
    # trained; checks the analytic values and ranks the codes under each loss.
    subsets = [[t for t in range(4) if (mask >> t) & 1] for mask in range(16)]
    H = torch.tensor([[1.0 if t in S else 0.0 for t in range(4)] for S in subsets], dtype=torch.float64)
    sizes = torch.tensor([len(S) for S in subsets])
    binary = {}
    for loss_name in ("ce", "mse"):
        u = torch.zeros(16, 4, dtype=torch.float64, requires_grad=True)
        beta = torch.zeros(16, 4, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([u, beta], lr=0.05)

        def bl():
            z = H[:, :, None] * u[:, None, :] + beta[:, None, :]
            if loss_name == "ce":
                return torch.nn.functional.cross_entropy(z.reshape(-1, 4), targets.repeat(16),
                                                         reduction="none").reshape(16, 4).mean(-1)
            return ((z - X[None]) ** 2).sum(-1).mean(-1)

        for _ in range(steps):
            opt.zero_grad()
            bl().sum().backward()
            opt.step()
        with torch.no_grad():
            Lb = bl()
        binary[loss_name] = torch.tensor([float(Lb[sizes == k].mean()) for k in range(5)])
    res["binary"] = binary
    lines.append("binary neuron (fires at one level on k tokens; read-out trained):")
    lines.append(f"{'k':>3} {'CE analytic':>12} {'CE trained':>11} {'MSE analytic':>13} {'MSE trained':>12}")
    for k in range(5):
        lines.append(f"{k:>3} {analytic[k]['ce']:>12.4f} {float(binary['ce'][k]):>11.4f} {analytic[k]['mse']:>13.4f} "
                     f"{float(binary['mse'][k]):>12.4f}")
    res["train_s"] = time.time() - t0
    from . import plots
    res["paths"] = [plots.plot_cross_entropy(res, _out(out_dir, "tms_cross_entropy.png"))]
    res["time_s"] = time.time() - t0
    lines.append(f"plots: {', '.join(res['paths'])}   ({res['time_s']:.1f} s)")
    res["table"] = "\n".join(lines)
    _emit(res["table"], verbose)
    return res


# ----------------------------------------------------------------------------- registry and demo

EXPERIMENTS = {"intro": intro, "dimensionality": dimensionality, "phase": phase, "correlated": correlated,
               "dynamics": dynamics, "cross_entropy": cross_entropy}


def run(name: str, steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False) -> dict:
    """Run one reproduction by name (``"cross-entropy"`` is accepted for ``cross_entropy``), or ``"all"``
    (returns ``{name: result}``)."""
    key = name.replace("-", "_")
    if key == "all":
        out = {k: fn(steps=steps, seed=seed, out_dir=out_dir, progress=progress, quick=quick)
               for k, fn in EXPERIMENTS.items()}
        print("\nTMS reproductions: " + ", ".join(f"{k} {r['time_s']:.0f} s" for k, r in out.items()) +
              f"; total {sum(r['time_s'] for r in out.values()):.0f} s", flush=True)
        return out
    if key not in EXPERIMENTS:
        raise ValueError(f"name: expected one of {', '.join(EXPERIMENTS)} or all, got {name!r}")
    return EXPERIMENTS[key](steps=steps, seed=seed, out_dir=out_dir, progress=progress, quick=quick)


def demo_section(out_dir=DEFAULT_OUT, progress=True, verbose=False, results: dict | None = None) -> str:
    """A short TMS tour for ``supcomp demo`` (well under a minute): the intro experiment at quick size
    and the dimensionality sweep at a small size (n=100, m=10). Returns the text (tables and plot
    paths); prints it too when ``verbose``. ``results``, if given, receives the two result dicts
    (keys ``"intro"``, ``"dimensionality"``)."""
    t0 = time.time()
    parts = ["== Toy Models of Superposition (Elhage et al. 2022) =="]
    r1 = intro(quick=True, steps=2000, out_dir=out_dir, progress=progress, verbose=False)
    parts.append(r1["table"])
    r2 = dimensionality(quick=True, n_features=100, n_hidden=10, n_densities=10, steps=1500, out_dir=out_dir,
                        progress=progress, verbose=False)
    parts.append(r2["table"])
    parts.append(f"(TMS section: {time.time() - t0:.1f} s; full-size runs: `supcomp tms all`)")
    if results is not None:
        results.update(intro=r1, dimensionality=r2)
    text = "\n\n".join(parts)
    _emit(text, verbose)
    return text
