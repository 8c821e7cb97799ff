"""Grading an SAE against the world it was trained on: the true features are known.

:func:`grade` returns a :class:`Grade`: fraction of variance unexplained, L0, dead and dense latent
fractions, mean max cosine decoder -> true and true -> decoder, the fraction of true features recovered
above a cosine threshold, and, after a one-to-one Hungarian matching of latents to features on their
cosines, per-feature precision and recall of firing (a latent fires when its value is > 0, a feature
when it is active in the sample). On hierarchical worlds it counts absorption (a child active, its
parent active too, but the parent's latent silent) and splitting (a feature with two or more latents
above ``split_threshold``). Plots: :func:`plot_recovery_vs_frequency`, :func:`plot_matched_cosines`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .models import SAE
from .world import World

__all__ = ["Grade", "grade", "cosine_matrix", "hungarian", "plot_recovery_vs_frequency", "plot_matched_cosines"]


@dataclass
class Grade:
    """Scores of one SAE on one world (floats, and ``[N]`` per-feature tensors)."""

    fvu: float
    l0: float
    dead_fraction: float
    dense_fraction: float
    mmcs_decoder_to_true: float
    mmcs_true_to_decoder: float
    recovered_fraction: float
    threshold: float
    mean_precision: float
    mean_recall: float
    best_cosine: torch.Tensor = field(repr=False)
    matched_latent: torch.Tensor = field(repr=False)
    matched_cosine: torch.Tensor = field(repr=False)
    precision: torch.Tensor = field(repr=False)
    recall: torch.Tensor = field(repr=False)
    frequency: torch.Tensor = field(repr=False)
    absorbed: int = 0
    absorption_rate: float = float("nan")
    split: int = 0

    def summary(self) -> dict:
        """The scalar scores as a dict."""
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, torch.Tensor)}


def cosine_matrix(W_dec: torch.Tensor, W_true: torch.Tensor) -> torch.Tensor:
    """Cosines ``[n, N]`` between decoder rows ``[n, d]`` and true directions ``[N, d]`` (float32, CPU)."""
    a = W_dec.detach().float().cpu()
    b = W_true.detach().float().cpu()
    return (a / a.norm(dim=1, keepdim=True).clamp(min=1e-12)) @ (b / b.norm(dim=1, keepdim=True).clamp(min=1e-12)).T


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular ``cost [r, c]``: ``(rows, cols)`` of the ``min(r, c)`` pairs.

    Uses ``scipy.optimize.linear_sum_assignment`` when scipy is installed, else the same
    shortest-augmenting-path algorithm (Jonker-Volgenant style, ``O(r^2 c)``) in numpy.
    """
    cost = np.asarray(cost, dtype=np.float64)
    try:
        from scipy.optimize import linear_sum_assignment

        return linear_sum_assignment(cost)
    except ImportError:
        pass
    transposed = cost.shape[0] > cost.shape[1]
    C = cost.T if transposed else cost  # rows <= cols
    r, c = C.shape
    u, v = np.zeros(r + 1), np.zeros(c + 1)
    p = np.zeros(c + 1, dtype=np.int64)  # p[j]: row (1-based) assigned to column j; column 0 is the virtual start
    way = np.zeros(c + 1, dtype=np.int64)
    for i in range(1, r + 1):
        p[0] = i
        j0 = 0
        minv = np.full(c + 1, np.inf)
        used = np.zeros(c + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = C[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    cols = np.nonzero(p[1:])[0]
    rows = p[1:][cols] - 1
    order = np.argsort(rows)
    rows, cols = rows[order], cols[order]
    return (cols, rows) if transposed else (rows, cols)


def _latent_keys(sae: SAE, x: torch.Tensor, n: int):
    code = sae.encode(x)
    if isinstance(code, tuple):
        idx, val = code
        m = (idx >= 0) & (val > 0)
        b = torch.arange(idx.shape[0], device=idx.device)[:, None].expand_as(idx)
        return b[m] * n + idx[m], sae.decode(code)
    b, j = (code > 0).nonzero(as_tuple=True)
    return b * n + j, sae.decode(code)


@torch.no_grad()
def grade(
    sae: SAE,
    world: World,
    batches: int = 4,
    batch_size: int = 4096,
    threshold: float = 0.9,
    dense_threshold: float = 0.1,
    split_threshold: float = 0.5,
    first_step: int = 10**7,
) -> Grade:
    """Score ``sae`` on fresh batches of ``world`` (steps ``first_step, first_step + 1, ...``).

    Raises:
        ValueError: the SAE's width ``d`` is not the world's.
    """
    if sae.config.d != world.config.d:
        raise ValueError(f"sae: input width {sae.config.d} does not match the world's d={world.config.d}")
    sae.eval()
    n, N = sae.config.n, world.n_features
    C = cosine_matrix(sae.W_dec, world.W)
    best_cos, _ = C.max(0)
    rows, cols = hungarian(-C.numpy())
    match = torch.full((N,), -1, dtype=torch.int64)
    match[torch.as_tensor(cols)] = torch.as_tensor(rows, dtype=torch.int64)
    matched_cos = torch.where(match >= 0, C[match.clamp(min=0), torch.arange(N)], torch.zeros(N))
    fired_latent = torch.zeros(n, dtype=torch.float64)
    true_count = torch.zeros(N, dtype=torch.float64)
    both = torch.zeros(N, dtype=torch.float64)
    err2, var, l0_sum, tokens = 0.0, 0.0, 0.0, 0
    h = world.hierarchy
    absorb_num = torch.zeros(N, dtype=torch.float64)
    absorb_den = torch.zeros(N, dtype=torch.float64)
    for s in range(batches):
        x, code = world.sample_activations(batch_size, first_step + s)
        x = x.to(sae.W_dec.device)
        lk, recon = _latent_keys(sae, x, n)
        lk = lk.cpu()
        err2 += float((x - recon).pow(2).sum())
        var += float((x - x.mean(0)).pow(2).sum())
        l0_sum += lk.numel()
        tokens += x.shape[0]
        fired_latent += torch.bincount(lk % n, minlength=n).double()
        lk = torch.unique(lk)
        tm = code.indices >= 0
        tb = torch.arange(batch_size, device=code.indices.device)[:, None].expand_as(code.indices)[tm].cpu()
        tf = code.indices[tm].cpu()
        true_count += torch.bincount(tf, minlength=N).double()
        mj = match[tf]
        mk = tb * n + mj.clamp(min=0)
        hit = _isin_sorted(lk, mk) & (mj >= 0)
        both += torch.bincount(tf[hit], minlength=N).double()
        if h is not None:
            par = h.parent.cpu()[tf]
            child = par >= 0
            pm = match[par.clamp(min=0)]
            pk = tb * n + pm.clamp(min=0)
            silent = ~_isin_sorted(lk, pk) & (pm >= 0) & child
            absorb_num += torch.bincount(tf[silent], minlength=N).double()
            absorb_den += torch.bincount(tf[child & (pm >= 0)], minlength=N).double()
    freq_latent = fired_latent / tokens
    lat_m = torch.where(match >= 0, fired_latent[match.clamp(min=0)], torch.zeros(N, dtype=torch.float64))
    precision = torch.where(lat_m > 0, both / lat_m.clamp(min=1), torch.zeros_like(both))
    recall = torch.where(true_count > 0, both / true_count.clamp(min=1), torch.zeros_like(both))
    seen = true_count > 0
    g = Grade(
        fvu=err2 / max(var, 1e-30),
        l0=l0_sum / tokens,
        dead_fraction=float((freq_latent == 0).double().mean()),
        dense_fraction=float((freq_latent > dense_threshold).double().mean()),
        mmcs_decoder_to_true=float(C.max(1).values.mean()),
        mmcs_true_to_decoder=float(best_cos.mean()),
        recovered_fraction=float((best_cos >= threshold).float().mean()),
        threshold=threshold,
        mean_precision=float(precision[seen].mean()) if bool(seen.any()) else float("nan"),
        mean_recall=float(recall[seen].mean()) if bool(seen.any()) else float("nan"),
        best_cosine=best_cos,
        matched_latent=match,
        matched_cosine=matched_cos,
        precision=precision.float(),
        recall=recall.float(),
        frequency=(true_count / tokens).float(),
        split=int(((C >= split_threshold).sum(0) >= 2).sum()),
    )
    if h is not None and bool((absorb_den > 0).any()):
        rate = absorb_num / absorb_den.clamp(min=1)
        g.absorbed = int(((rate > 0.5) & (absorb_den > 0)).sum())
        g.absorption_rate = float(absorb_num.sum() / absorb_den.sum())
    return g


def _isin_sorted(keys_sorted: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    if keys_sorted.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(keys_sorted, query).clamp(max=keys_sorted.numel() - 1)
    return keys_sorted[pos] == query


def plot_recovery_vs_frequency(g: Grade, ax=None, bins: int = 12):
    """Fraction of true features recovered (best cosine >= the grade's threshold) per log-frequency bin.

    Returns the matplotlib Figure (``ax``'s figure when given).
    """
    from ..utils.figures import new_figure

    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    f = g.frequency.double()
    ok = f > 0
    lf = f[ok].log10()
    edges = torch.linspace(float(lf.min()), float(lf.max()) + 1e-9, bins + 1, dtype=torch.float64)
    which = torch.bucketize(lf, edges, right=True).clamp(1, bins) - 1
    rec = (g.best_cosine[ok] >= g.threshold).double()
    centers, fracs = [], []
    for b in range(bins):
        m = which == b
        if bool(m.any()):
            centers.append(float(10 ** ((edges[b] + edges[b + 1]) / 2)))
            fracs.append(float(rec[m].mean()))
    ax.plot(centers, fracs, marker="o")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("true feature firing frequency")
    ax.set_ylabel(f"fraction recovered (cos >= {g.threshold:g})")
    return fig


def plot_matched_cosines(sae: SAE, world: World, g: Grade, ax=None, max_pairs: int = 64):
    """Cosine matrix between the matched latents' decoder rows and their true features (most frequent first).

    Returns the matplotlib Figure.
    """
    from ..utils.figures import new_figure

    fig, ax = new_figure(figsize=(5.0, 4.5)) if ax is None else (ax.figure, ax)
    feats = torch.argsort(g.frequency, descending=True)
    feats = feats[g.matched_latent[feats] >= 0][:max_pairs]
    lat = g.matched_latent[feats]
    C = cosine_matrix(sae.W_dec[lat], world.W[feats])
    im = ax.imshow(C.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("true feature (by frequency)")
    ax.set_ylabel("matched latent")
    return fig
