"""Reproductions of "Toy Models of Superposition" (Elhage et al. 2022) with the supcomp trainer.

One public function per figure of the paper, each in its own module of :mod:`supcomp.studies.tms`;
each trains with :func:`supcomp.tms.train` (restarts and sweep points are instances of one batched
``train`` call), prints a table, writes PNG(s) through :mod:`supcomp.studies.tms.plots` and returns a
dict of results (``"table"``, ``"paths"``, ``"time_s"`` and the numbers behind them). Every function
takes ``steps`` (``None``: the experiment's default), ``seed``, ``out_dir``, ``progress`` and ``quick``
(smaller sizes for tests and the demo). This module dispatches them by name (:func:`run`) and holds
the short tour of ``supcomp demo`` (:func:`demo_section`).

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
re-evaluated on a large held-out sample shared by the restarts of one setting (common random numbers,
:func:`supcomp.tms.analysis.eval_losses`), or exactly (by quadrature) for the n=2, m=1 phase diagram,
because the training-batch losses of different instances come from different batches and are too
noisy to pick a restart. The analysis functions live in :mod:`supcomp.tms.analysis` and are
re-exported here.

Threads: the fused trainer parallelises with OpenMP over ``torch.get_num_threads()`` threads. For the
tiny models here (n*m <= 100) one thread is faster (the parallel regions are too short, and on a shared
machine a busy second core makes them much slower), so those runs use one thread; the large runs keep
the default unless the machine is already loaded (load average >= number of cores - 0.5); see
:func:`supcomp.tms.analysis.threads_for`.

Constants: ``EXPERIMENTS`` maps each name to its function and ``NAMES`` lists the names;
``DEFAULT_OUT`` is the folder plots go to by default. Re-exported from :mod:`supcomp.tms.analysis`:
``D_LINES`` (the dimensionality fractions 3/4, 2/3, 1/2, 2/5, 3/8 drawn as lines), ``LEVELS`` (the
dimensionality levels), ``LEARNED`` (the norm ``||W_i||`` above which a feature counts as represented) and ``PHASES`` (the phase
names of the n=2, m=1 diagram).
"""

from __future__ import annotations

import time

from ...tms.analysis import (
    D_LINES,
    LEARNED,
    LEVELS,
    PHASES,
    best_restarts,
    binary_code_losses,
    classify_phase,
    eval_losses,
    feature_cosine,
    level_paths,
    phase_analytic,
    phase_candidate_losses,
    phase_exact_loss,
    threads_for,
    train_with_snapshots,
)
from ...utils.threads import threads
from .common import DEFAULT_OUT, emit
from .correlated import correlated
from .cross_entropy import cross_entropy
from .dimensionality import dimensionality
from .dynamics import dynamics
from .intro import intro
from .phase import phase

__all__ = [
    "run",
    "demo_section",
    "EXPERIMENTS",
    "NAMES",
    "DEFAULT_OUT",
    "intro",
    "dimensionality",
    "phase",
    "correlated",
    "dynamics",
    "cross_entropy",
    "D_LINES",
    "LEARNED",
    "LEVELS",
    "PHASES",
    "best_restarts",
    "binary_code_losses",
    "classify_phase",
    "eval_losses",
    "feature_cosine",
    "level_paths",
    "phase_analytic",
    "phase_candidate_losses",
    "phase_exact_loss",
    "threads",
    "threads_for",
    "train_with_snapshots",
]

EXPERIMENTS = {
    "intro": intro,
    "dimensionality": dimensionality,
    "phase": phase,
    "correlated": correlated,
    "dynamics": dynamics,
    "cross_entropy": cross_entropy,
}
NAMES = tuple(EXPERIMENTS)


def run(name: str, steps=None, seed=0, out_dir=DEFAULT_OUT, progress=True, quick=False) -> dict:
    """Run one reproduction by name (``"cross-entropy"`` is accepted for ``cross_entropy``), or ``"all"``
    (returns ``{name: result}``).

    Raises:
        ValueError: ``name`` is not one of :data:`NAMES` or ``"all"``.
    """
    key = name.replace("-", "_")
    if key == "all":
        out = {
            k: fn(steps=steps, seed=seed, out_dir=out_dir, progress=progress, quick=quick)
            for k, fn in EXPERIMENTS.items()
        }
        print(
            "\nTMS reproductions: "
            + ", ".join(f"{k} {r['time_s']:.0f} s" for k, r in out.items())
            + f"; total {sum(r['time_s'] for r in out.values()):.0f} s",
            flush=True,
        )
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
    r2 = dimensionality(
        quick=True,
        n_features=100,
        n_hidden=10,
        n_densities=10,
        steps=1500,
        out_dir=out_dir,
        progress=progress,
        verbose=False,
    )
    parts.append(r2["table"])
    parts.append(f"(TMS section: {time.time() - t0:.1f} s; full-size runs: `supcomp tms all`)")
    if results is not None:
        results.update(intro=r1, dimensionality=r2)
    text = "\n\n".join(parts)
    emit(text, verbose)
    return text
