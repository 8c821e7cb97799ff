"""Analysis of trained toy models of superposition ("Toy Models of Superposition", Elhage et al. 2022).

What the reproductions in :mod:`supcomp.studies.tms` and the ``tms`` sweep adapter measure, usable on
any :class:`~supcomp.tms.ToyModel`:

* held-out losses of batched instances (:func:`eval_losses`) and the best restart of each setting
  (:func:`best_restarts`);
* the n=2, m=1 phase diagram: the exact expected loss by quadrature (:func:`phase_exact_loss`), the
  three candidate solutions' losses (:func:`phase_candidate_losses`), the analytic phase
  (:func:`phase_analytic`) and the phase of trained embeddings (:func:`classify_phase`);
* learning dynamics: training with snapshots of W (:func:`train_with_snapshots`) and the
  dimensionality levels each feature dwells on (:func:`level_paths`);
* the one-neuron cross-entropy vs. squared-error comparison (:func:`binary_code_losses`).

Losses follow the library's convention: the importance-weighted squared error **meaned** over
features (the TMS notebook's), so an n=2 loss is half the paper's sum over features.
"""

from __future__ import annotations

import math

import torch

from ..utils.progress import progress_bar
from ..utils.threads import machine_busy
from .config import ToyModelConfig
from .data import BatchSampler, sample_batch
from .model import ToyModel
from .train import FusedAdamW, fused_sampled_adamw_step

#: The feature-dimensionality lines of the paper's geometry figure: (value, label).
D_LINES = (
    (3 / 4, "3/4 tetrahedron"),
    (2 / 3, "2/3 triangle"),
    (1 / 2, "1/2 antipodal pair"),
    (2 / 5, "2/5 pentagon"),
    (3 / 8, "3/8 square antiprism"),
)
#: A feature counts as represented when its norm ``||W_i||`` is at least this.
LEARNED = 0.5
#: The phases of the n=2, m=1 diagram, in the order of :func:`classify_phase`'s indices.
PHASES = ("not learned", "dedicated", "superposition", "other")
#: The dimensionality levels of :func:`level_paths` (0: not learned).
LEVELS = (0.0, 1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8)


def threads_for(n: int, m: int) -> int | None:
    """Torch threads for training an n-feature, m-hidden toy model: 1 for tiny models (``n * m <= 100``:
    the fused trainer's parallel regions are too short to pay off) or on a busy machine, else None
    (leave the default)."""
    if n * m <= 100 or machine_busy():
        return 1
    return None


# ----------------------------------------------------------------------------- held-out losses


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
    member's probabilities), so the restarts of a setting are compared with common random numbers
    (their training-batch losses come from different batches and are too noisy to pick a restart).
    Tied kinds only. The loss is the library's (importance-weighted squared error meaned over features).
    """
    W = W.detach().double()
    b = b.detach().double()
    probs, imps = cfg.probabilities(), cfg.importances()
    out = torch.full((cfg.n_instances,), float("nan"), dtype=torch.float64)
    for gi, group in enumerate(groups):
        g = torch.as_tensor(group)
        one = ToyModelConfig(
            cfg.n_features,
            cfg.n_hidden,
            1,
            feature_probability=probs[g[0]][None],
            importance=1.0,
            kind=cfg.kind,
            correlated_pairs=cfg.correlated_pairs,
            anticorrelated_pairs=cfg.anticorrelated_pairs,
        )
        x = sample_batch(one, n_samples, seed=seed + gi, dtype=torch.float64).to_dense()[0]
        tot = torch.zeros(len(group), dtype=torch.float64)
        for s in range(0, n_samples, chunk):
            xs = x[s : s + chunk]
            y = _forward(xs, W[g], b[g], cfg.kind)
            tot += (imps[g][:, None] * (y - xs) ** 2).sum((1, 2))
        out[g] = tot / (n_samples * cfg.n_features)
    return out


def best_restarts(losses, groups) -> list[int]:
    """The instance index with the lowest loss in each group of ``groups`` (lists of instance indices)."""
    return [group[int(torch.argmin(losses[torch.as_tensor(group)]))] for group in groups]


def feature_cosine(W, i: int, j: int) -> float:
    """Cosine between the directions of features i and j of one model's ``W [n, m]`` (any float dtype)."""
    return float(torch.nn.functional.cosine_similarity(W[i], W[j], dim=0))


# ----------------------------------------------------------------------------- n=2, m=1 phase diagram


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
        return torch.cat(
            [
                phase_exact_loss(w[s : s + step], b[s : s + step], r[s : s + step], p[s : s + step], nodes)
                for s in range(0, w.shape[0], step)
            ]
        )
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
    L = (1 - p) ** 2 * L0 + p * (1 - p) * (L1[0] + L1[1]) + p**2 * L2
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
    v = p / 3 - p**2 / 4
    out = {"[1,0]": r * v / 2, "[0,1]": v / 2, "[1,-1] b=0": (1 + r) * p**2 / 12}
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
    the lowest expected loss (:func:`phase_candidate_losses`). Returns ``(phase, candidate losses)``."""
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


# ----------------------------------------------------------------------------- learning dynamics


def train_with_snapshots(
    cfg: ToyModelConfig, steps, snapshot_steps, batch_size=1024, lr=1e-3, seed=0, progress=True, weight_decay=0.01
):
    """The loop of :func:`supcomp.tms.train` (same init, batches and AdamW; fused backend) that also
    keeps copies of ``W`` at ``snapshot_steps`` (the weights *after* that many steps; 0 = the init).
    Returns ``(model, steps_list, W_snapshots [S, I, n, m], loss_history [steps, I])``."""
    model = ToyModel(cfg, seed=seed)
    sampler = BatchSampler(cfg, batch_size, seed=seed)
    opt = FusedAdamW(model, lr=lr, weight_decay=weight_decay)
    want = sorted({int(s) for s in snapshot_steps if 0 <= int(s) <= steps})
    snaps, taken, hist = [], [], []
    if want and want[0] == 0:
        snaps.append(model.W.detach().clone())
        taken.append(0)
    wi = 1 if taken else 0
    for step in progress_bar(range(steps), desc=f"tms dynamics I={cfg.n_instances}", enabled=progress):
        hist.append(fused_sampled_adamw_step(model, sampler, step, opt))
        while wi < len(want) and want[wi] == step + 1:
            snaps.append(model.W.detach().clone())
            taken.append(step + 1)
            wi += 1
    model.loss_history = torch.stack(hist) if hist else torch.zeros(0, cfg.n_instances)
    model.loss_steps = list(range(steps))
    return model, taken, torch.stack(snaps), model.loss_history


def level_paths(D, norms, steps_list, tol=0.0125, dwell=None):
    """The sequence of dimensionality levels (:data:`LEVELS`; 0 = not learned) each feature dwells on.

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
            near = [v for v in LEVELS[1:] if abs(float(D[s, i]) - v) <= tol]
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


# ----------------------------------------------------------------------------- cross-entropy vs. squared error


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
