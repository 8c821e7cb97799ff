"""The ``sae`` sweep adapter: an SAE of width ``n`` and sparsity ``k`` trained on a ground-truth world and
graded against its features (:func:`supcomp.studies.sae.train_and_grade`), one point per (world, SAE).

Parameters (``required``: n, k): the SAE (``n`` latents, ``k`` active, ``kind`` topk or batchtopk,
``k_aux``), the run (``steps``, ``batch_size``, ``lr``, ``seed``), the grading (``threshold``,
``grade_batches``, ``grade_batch_size``) and the world (``n_features``, ``d``, ``zipf_exponent``,
``p_max``, ``p_min``, ``target_mean_max_cos`` (0: random directions), ``correlation_rank``, ``roots``
(0: no hierarchy), ``world_seed``); the defaults are the small world of
:data:`supcomp.studies.sae.WORLD_DEFAULTS`. Nothing is packed: each point trains its own SAE.
Metrics: ``recovered_fraction``, ``fvu``, ``l0``, ``dead_fraction``, ``dense_fraction``, both mean max
cosines, ``mean_precision``, ``mean_recall``, ``train_fvu``; the SAE's weights when the sweep stores them.
Plot: :func:`supcomp.studies.sae.plot_k_width` (recovered fraction and FVU against L0, by width).
"""

from __future__ import annotations

from .params import Param
from .registry import WEIGHTS_KEY, Experiment

DEFAULTS = dict(
    kind="topk",
    k_aux=32,
    steps=300,
    batch_size=256,
    lr=3e-3,
    seed=0,
    threshold=0.9,
    grade_batches=2,
    grade_batch_size=2048,
    n_features=64,
    d=24,
    zipf_exponent=0.5,
    p_max=0.15,
    p_min=0.02,
    target_mean_max_cos=0.0,
    correlation_rank=0,
    roots=0,
    world_seed=0,
)
PARAMS = dict(
    n=Param("int", low=1, doc="SAE latents (dictionary width)"),
    k=Param("int", low=1, doc="active latents per sample"),
    kind=Param("str", choices=("topk", "batchtopk"), doc="SAE kind"),
    k_aux=Param("int", low=0, doc="AuxK latents (0: off)"),
    steps=Param("int", low=1, doc="training steps"),
    batch_size=Param("int", low=1, doc="samples per step"),
    lr=Param("float", low=0, low_open=True, doc="Adam learning rate"),
    seed=Param("int", low=0, high=2**63 - 1, doc="seed of the SAE's weights and batches"),
    threshold=Param("float", low=0, high=1, doc="cosine at which a feature counts as recovered"),
    grade_batches=Param("int", low=1, doc="batches graded on"),
    grade_batch_size=Param("int", low=1, doc="samples per graded batch"),
    n_features=Param("int", low=1, doc="true features N"),
    d=Param("int", low=1, doc="activation width D"),
    zipf_exponent=Param("float", low=0, doc="Zipf exponent of the firing probabilities"),
    p_max=Param("float", low=0, high=1, low_open=True, doc="largest firing probability"),
    p_min=Param("float", low=0, high=1, low_open=True, doc="smallest firing probability"),
    target_mean_max_cos=Param("float", low=0, high=1, doc="orthogonalise directions toward it (0: random)"),
    correlation_rank=Param("int", low=0, doc="rank of the correlated firing (0: independent)"),
    roots=Param("int", low=0, doc="hierarchy trees (0: no hierarchy)"),
    world_seed=Param("int", low=0, high=2**63 - 1, doc="seed of the world"),
)
_WORLD_KEYS = ("n_features", "d", "zipf_exponent", "p_max", "p_min", "correlation_rank", "roots")


def run(points: list[dict]) -> list[dict]:
    from ..sae import WorldConfig
    from ..studies.sae import train_and_grade

    out = []
    for p in points:
        mmc = float(p["target_mean_max_cos"])
        world = WorldConfig(
            **{k: p[k] for k in _WORLD_KEYS}, target_mean_max_cos=mmc if mmc > 0 else None, seed=int(p["world_seed"])
        )
        metrics, sae = train_and_grade(
            world,
            p["n"],
            p["k"],
            kind=p["kind"],
            steps=p["steps"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            k_aux=p["k_aux"],
            seed=p["seed"],
            threshold=p["threshold"],
            grade_batches=p["grade_batches"],
            grade_batch_size=p["grade_batch_size"],
            return_sae=True,
        )
        metrics[WEIGHTS_KEY] = {k: v.detach().cpu() for k, v in sae.state_dict().items()}
        out.append(metrics)
    return out


def plot(rows: list[dict]) -> dict:
    """The standard figure: ``{"sae_k_width": Figure}`` (empty without successful rows)."""
    from ..studies.sae import plot_k_width

    if not any(r.get("recovered_fraction") is not None for r in rows):
        return {}
    return {"sae_k_width": plot_k_width(rows)}


EXPERIMENT = Experiment(
    name="sae",
    run=run,
    per_instance=frozenset(),
    defaults=DEFAULTS,
    required=("n", "k"),
    plot=plot,
    doc=__doc__,
    params=PARAMS,
)
