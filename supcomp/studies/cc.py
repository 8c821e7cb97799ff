"""``supcomp cc``: the compressed-computation model against its controls (Braun et al. 2025; Bhagat et al. 2025).

``run()`` trains, at the training density p = 0.01 (defaults of ``CCConfig``, 10,000 steps):

==========================  ================================================================
residual (APD)              the residual-MLP model, labels x + relu(x), d_resid = 1000
mlp, M = W_E W_Eᵀ - I       plain MLP on relu(x) + M x with the embedding's mixing matrix
mlp, symmetric M σ=0.033    ... a symmetric Gaussian M (the critique's figure)
mlp, asymmetric M σ=0.025   ... an asymmetric Gaussian M
mlp, M = 0                  ... clean labels relu(x)
==========================  ================================================================

then evaluates L/p at p = 0.001 ... 1 (table at 0.001, 0.01, 0.1, 1; the curve at more points) and
sweeps σ for the symmetric and asymmetric mixings (all σ of one kind are instances of one run),
evaluating L/p at the training p. Plots: ``cc_loss_vs_p.png`` and ``cc_loss_vs_sigma.png``.

Choices where the papers are silent or differ: the σ sweep trains and evaluates with independent
features at p = 0.01 (the critique's right panel uses exactly one active feature per sample); the
first table uses the critique's figure σ values (0.033 symmetric, 0.025 asymmetric).
"""

from __future__ import annotations

import os
import time

import torch

from ..cc.config import CCConfig
from ..cc.evaluate import loss_per_feature, naive_loss_per_feature
from ..cc.train import train
from ..utils.figures import save_figure
from ..utils.threads import machine_busy, threads
from .cc_plots import plot_loss_vs_p, plot_loss_vs_sigma

__all__ = ["table_configs", "format_table", "format_sigma_table", "run", "demo_section"]

DEFAULT_OUT = os.path.join("supcomp-report", "cc")
TABLE_P = (0.001, 0.01, 0.1, 1.0)
CURVE_P = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SIGMAS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1)
QUICK_SIGMAS = (0.0, 0.02, 0.035, 0.06, 0.1)
BELOW = 0.99  # a table cell is starred when L/p < BELOW * naive (the L/p estimates have ~0.5% sampling error)


def table_configs(**size) -> list[CCConfig]:
    """The five models of the table (``size``: overrides such as n_features, d_mlp, n_instances)."""
    return [
        CCConfig(**size),
        CCConfig(model="mlp", **size),
        CCConfig(model="mlp", mixing="symmetric", sigma=0.033, **size),
        CCConfig(model="mlp", mixing="asymmetric", sigma=0.025, **size),
        CCConfig(model="mlp", mixing="none", **size),
    ]


def _threads_if_loaded():
    """One thread when the machine is already busy (a stalled second core makes every small parallel
    region wait), else torch's setting."""
    return threads(1 if machine_busy() else None)


def format_table(rows: list, ps=TABLE_P, naive: float = 1 / 12) -> str:
    """The L/p table: one line per model (``row["label"]``), its L/p at each density of ``ps``
    (``row["lp"][p]``), starred where it is more than 1% below ``naive``."""
    head = f"{'model (trained at p=0.01)':<30}" + "".join(f"{'p=' + format(p, 'g'):>10}" for p in ps)
    lines = [
        "L/p (loss per feature / p); naive = " + f"{naive:.4f}; * = more than 1% below naive (beyond the "
        "sampling error)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        cells = "".join(f"{v:>9.4f}{'*' if v < BELOW * naive else ' '}" for v in (r["lp"][p] for p in ps))
        lines.append(f"{r['label']:<30}{cells}")
    return "\n".join(lines)


def format_sigma_table(sweeps: dict, naive: float) -> str:
    """The σ sweeps as a text table: ``sweeps`` maps a column name to ``(sigmas, L/p values)``; one line per
    σ, starred where L/p is more than 1% below ``naive``."""
    lines = ["L/p at p=0.01 against σ (plain MLP on relu(x) + M x)", f"{'σ':>8}" + "".join(f"{k:>14}" for k in sweeps)]
    sig = next(iter(sweeps.values()))[0]
    for j, s in enumerate(sig):
        lines.append(
            f"{s:>8.3f}"
            + "".join(f"{sweeps[k][1][j]:>13.4f}{'*' if sweeps[k][1][j] < BELOW * naive else ' '}" for k in sweeps)
        )
    return "\n".join(lines)


def run(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    n_samples=None,
    sigmas=None,
    verbose=True,
    size=None,
) -> dict:
    """Train the table's models and the σ sweeps, print the tables, write the plots.

    Returns a dict: ``rows`` (label, config, lp {p: L/p}), ``sweeps`` (kind -> (σ list, L/p list)),
    ``naive``, ``train_p``, ``embedding_std`` and ``embedding_lp`` (the embedding model's mixing std and
    L/p), ``table``, ``sigma_table``, ``paths``, ``time_s`` (the plots: :mod:`supcomp.studies.cc_plots`).
    """
    t0 = time.time()
    steps = steps if steps is not None else (2000 if quick else 10_000)
    n_samples = n_samples if n_samples is not None else (30_000 if quick else 300_000)
    sigmas = tuple(sigmas) if sigmas is not None else (QUICK_SIGMAS if quick else SIGMAS)
    size = dict(size or {})
    ps = CURVE_P if not quick else (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    ps = tuple(sorted(set(ps) | set(TABLE_P)))
    cfg0 = CCConfig(**size)
    naive = naive_loss_per_feature(cfg0.n_features, cfg0.d_mlp)
    os.makedirs(out_dir, exist_ok=True)
    rows, embed_std, embed_lp = [], None, None
    with _threads_if_loaded():
        for cfg in table_configs(**size):
            model = train(cfg, steps=steps, seed=seed, progress=progress)
            lp = {p: float(loss_per_feature(model, p, n_samples)[0]) for p in ps}
            rows.append(dict(label=cfg.label(), config=cfg, lp=lp))
            if cfg.model == "mlp" and cfg.mixing == "embedding":
                off = model.M[0][~torch.eye(cfg.n_features, dtype=torch.bool)]
                embed_std, embed_lp = float(off.std()), lp[cfg.feature_probability]
        sweeps = {}
        for kind in ("symmetric", "asymmetric"):
            cfg = CCConfig(model="mlp", mixing=kind, sigma=list(sigmas), n_instances=len(sigmas), **size)
            model = train(cfg, steps=steps, seed=seed, progress=progress)
            lp = loss_per_feature(model, cfg.feature_probability, n_samples)
            sweeps[kind] = (list(sigmas), lp.tolist())
    table = format_table(rows, naive=naive)
    sigma_table = format_sigma_table(sweeps, naive)
    train_p = cfg0.feature_probability
    res = dict(
        rows=rows,
        sweeps=sweeps,
        naive=naive,
        train_p=train_p,
        embedding_std=embed_std,
        embedding_lp=embed_lp,
        table=table,
        sigma_table=sigma_table,
        steps=steps,
        n_samples=n_samples,
    )
    p1 = save_figure(plot_loss_vs_p(res), os.path.join(out_dir, "cc_loss_vs_p.png"), dpi=120)
    p2 = save_figure(plot_loss_vs_sigma(res), os.path.join(out_dir, "cc_loss_vs_sigma.png"), dpi=120)
    res.update(paths=[p1, p2], time_s=time.time() - t0)
    if verbose:
        print(f"== Compressed computation: {steps} steps, batch 2048, L/p from {n_samples} non-empty samples ==")
        print(table)
        print()
        print(sigma_table)
        print(f"plots: {p1}, {p2}  ({res['time_s']:.0f} s)")
    return res


def demo_section(progress=True, steps=500, n_samples=10_000) -> str:
    """A small table for ``supcomp demo`` (~10 s): the five models at reduced size (n = 50 features,
    d_mlp = 25, d_embed = 500, trained at p = 0.02 for ``steps`` steps with lr 1e-2) and L/p at the
    training p and at p = 1, against the naive 1/12."""
    t0 = time.time()
    size = dict(n_features=50, d_mlp=25, d_embed=500, feature_probability=0.02)
    naive = naive_loss_per_feature(50, 25)
    lines = [f"{'model (n=50, m=25, trained at p=0.02)':<40}{'L/p p=0.02':>12}{'L/p p=1':>10}", "-" * 62]
    with _threads_if_loaded():
        for cfg in table_configs(**size):
            model = train(cfg, steps=steps, batch_size=1024, lr=1e-2, progress=progress)
            a = float(loss_per_feature(model, 0.02, n_samples)[0])
            b = float(loss_per_feature(model, 1.0, n_samples // 4)[0])
            lines.append(f"{cfg.label():<40}{a:>11.4f}{'*' if a < BELOW * naive else ' '}{b:>10.4f}")
    lines.append(
        f"naive = {naive:.4f} (* = more than 1% below naive); the gain needs a mixing matrix. "
        f"({time.time() - t0:.1f} s; full size: `supcomp cc`)"
    )
    return "\n".join(lines)
