"""The ``tms`` sweep adapter: toy models of superposition, one instance per grid point.

Parameters (``required``: n_features, n_hidden):

* per instance (may differ inside one packed run): ``density`` (feature probability 1 - S of every
  feature, default 1), ``importance`` (relative importance of the last, "extra", feature: the phase
  diagram's axis; default 1), ``importance_decay`` (feature i's importance is ``decay**i`` before the
  last feature's factor; default 1, i.e. uniform), ``seed`` (initial weights and batches; default 0);
* shared by a packed run: ``n_features``, ``n_hidden``, ``kind`` (default ``"relu_output"``), ``steps``,
  ``batch_size``, ``lr``, ``optimizer`` (``"adamw"`` or ``"adam"``), ``weight_decay`` (defaults:
  :func:`supcomp.tms.train`'s: 10,000, 1024, 1e-3, ``"adamw"``, and 0.01 for AdamW / 0 for Adam), ``backend`` (``"fused"``; ``"reference"`` for the plain einsum trainer), ``device`` (``"cpu"``),
  ``correlated_pairs`` / ``anticorrelated_pairs`` (0), ``quadrature_nodes`` (64: nodes per axis of the
  exact n=2 loss; its error is O(nodes^-2), about 2e-4 relative at 64, plenty to rank seeds, at a
  sixteenth of the cost of ``supcomp tms phase``'s 256, which would otherwise dominate a packed run).

So feature i's importance is ``importance_decay**i``, times ``importance`` for i = n - 1. A point's
result equals ``supcomp.tms.train`` of that point alone (``n_instances=1``, ``seed=seed``): packed runs
pass ``instance_seeds``.

Weights (with ``save_weights``): the instance's ``W``, ``b`` and ``importance``.

Metrics: ``loss`` (mean of the last 100 training losses: the library's loss, meaned over features),
``frobenius_sq`` (‖W‖_F²), ``dims_per_feature`` (m / ‖W‖_F²), ``n_learned`` (features with ‖W_i‖ >= 0.5),
and for n=2, m=1, ReLU output (the phase diagram): ``w1, w2, b1, b2``, ``exact_loss`` (by quadrature,
:func:`supcomp.tms.analysis.phase_exact_loss`) and ``phase`` (:data:`~supcomp.tms.analysis.PHASES`
name, :func:`~supcomp.tms.analysis.classify_phase`).
"""

from __future__ import annotations

import math

import torch

from ..tms.config import KINDS
from .params import Param
from .registry import WEIGHTS_KEY, Experiment

PER_INSTANCE = frozenset({"density", "importance", "importance_decay", "seed"})
DEFAULTS = dict(
    density=1.0,
    importance=1.0,
    importance_decay=1.0,
    seed=0,
    kind="relu_output",
    steps=10_000,
    batch_size=1024,
    lr=1e-3,
    optimizer="adamw",
    weight_decay=None,
    backend="fused",
    device="cpu",
    correlated_pairs=0,
    anticorrelated_pairs=0,
    quadrature_nodes=64,
)
_SEED_MAX = 2**63 - 1
PARAMS = dict(
    n_features=Param("int", low=1, doc="n, input features"),
    n_hidden=Param("int", low=1, doc="m, hidden width"),
    density=Param("float", low=0, high=1, low_open=True, doc="feature probability 1 - S"),
    importance=Param("float", low=0, doc="relative importance of the last feature"),
    importance_decay=Param("float", low=0, doc="feature i's importance is decay**i"),
    seed=Param("int", low=0, high=_SEED_MAX, doc="initial weights and batches"),
    kind=Param("str", choices=KINDS, doc="the model"),
    steps=Param("int", low=1, doc="training steps"),
    batch_size=Param("int", low=1, doc="samples per step"),
    lr=Param("float", low=0, low_open=True, doc="learning rate"),
    optimizer=Param("str", choices=("adamw", "adam"), doc="AdamW (the TMS notebook's) or Adam (ARENA's)"),
    weight_decay=Param("float", low=0, optional=True, doc="weight decay (None: 0.01 for AdamW, 0 for Adam)"),
    backend=Param("str", choices=("fused", "reference"), doc="the trainer"),
    device=Param("str", doc="torch device"),
    correlated_pairs=Param("int", low=0, doc="correlated feature pairs"),
    anticorrelated_pairs=Param("int", low=0, doc="anticorrelated feature pairs"),
    quadrature_nodes=Param("int", low=2, doc="nodes per axis of the exact n=2 loss"),
)
_SHARED = (
    "n_features",
    "n_hidden",
    "kind",
    "steps",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "backend",
    "device",
    "correlated_pairs",
    "anticorrelated_pairs",
    "quadrature_nodes",
)


def importances(n: int, importance, decay) -> torch.Tensor:
    """Feature importances ``[n]``: ``decay**i``, the last one times ``importance``."""
    imp = torch.tensor([float(decay) ** i for i in range(n)], dtype=torch.float64)
    imp[-1] *= float(importance)
    return imp


def run(points: list[dict]) -> list[dict]:
    """Train every point as one instance of one batched ``supcomp.tms.train`` call; one metrics dict each."""
    from .. import metrics as M
    from ..tms import ToyModelConfig, train
    from ..tms.analysis import LEARNED, PHASES, classify_phase, phase_exact_loss, threads_for
    from ..utils.threads import threads

    p0 = points[0]
    for p in points[1:]:
        diff = [k for k in _SHARED if p[k] != p0[k]]
        if diff:
            raise ValueError(f"tms: points packed together differ in shared parameters {diff}")
    n, m = int(p0["n_features"]), int(p0["n_hidden"])
    I = len(points)
    imp = torch.stack([importances(n, p["importance"], p["importance_decay"]) for p in points])
    dens = torch.tensor([float(p["density"]) for p in points], dtype=torch.float64)
    seeds = [p["seed"] for p in points]
    cfg = ToyModelConfig(
        n,
        m,
        I,
        feature_probability=dens[:, None],  # one density per instance
        importance=imp,
        kind=p0["kind"],
        correlated_pairs=int(p0["correlated_pairs"]),
        anticorrelated_pairs=int(p0["anticorrelated_pairs"]),
    )
    # the TMS thread rule: one thread for tiny models or a loaded machine (only ever lowers the
    # executor's share)
    with threads(threads_for(n, m)):
        model = train(
            cfg,
            steps=int(p0["steps"]),
            batch_size=int(p0["batch_size"]),
            lr=float(p0["lr"]),
            optimizer=p0["optimizer"],
            weight_decay=None if p0["weight_decay"] is None else float(p0["weight_decay"]),
            backend=p0["backend"],
            device=p0["device"],
            progress=False,
            instance_seeds=seeds,
        )
    W = model.W.detach().double().cpu()
    b = model.b.detach().double().cpu()
    # mean of the last 100 logged losses, summed exactly (fsum): a batched reduction over [steps, I] would
    # round differently for different I, and a point must not depend on its packmates
    hist = model.loss_history[-100:].double()
    loss = [math.fsum(hist[:, i].tolist()) / hist.shape[0] for i in range(I)]
    fro = W.square().sum((-2, -1))
    n_learned = (M.feature_norms(W) >= LEARNED).sum(-1)
    rows = [
        dict(loss=loss[i], frobenius_sq=float(fro[i]), dims_per_feature=float(m / fro[i]), n_learned=int(n_learned[i]))
        for i in range(I)
    ]
    for i, row in enumerate(rows):  # the sweep keeps them only with save_weights
        row[WEIGHTS_KEY] = {k: v[i].detach().cpu().clone() for k, v in model.state_dict().items()}
    if n == 2 and m == 1 and p0["kind"] == "relu_output":
        w = W[..., 0]
        cls = classify_phase(w)
        with torch.no_grad():
            r = imp[:, 1] / imp[:, 0]
            exact = imp[:, 0] * phase_exact_loss(w, b, r, dens, nodes=int(p0["quadrature_nodes"]))
        for i, row in enumerate(rows):
            row.update(
                w1=float(w[i, 0]),
                w2=float(w[i, 1]),
                b1=float(b[i, 0]),
                b2=float(b[i, 1]),
                exact_loss=float(exact[i]),
                phase=PHASES[int(cls[i])],
            )
    return rows


def plot(rows: list[dict]) -> dict:
    from .plots_tms import tms_figures

    return tms_figures(rows)


EXPERIMENT = Experiment(
    name="tms",
    run=run,
    per_instance=PER_INSTANCE,
    defaults=DEFAULTS,
    required=("n_features", "n_hidden"),
    plot=plot,
    doc=__doc__,
    params=PARAMS,
)
