"""The ``cc`` sweep adapter: compressed computation (Braun et al. 2025) and its controls, one model per point.

Parameters (none required): ``model`` (``"residual"``), ``mixing`` (``"embedding"``), ``sigma`` (None; for
the symmetric / asymmetric Gaussian mixing), ``n_features`` (100), ``d_embed`` (1000), ``d_mlp`` (50),
``feature_probability`` (training density, 0.01), ``steps`` (10,000), ``batch_size`` (2048), ``lr`` (3e-3),
``seed`` (0), ``eval_p`` (density at which L/p is evaluated; default: the training density),
``n_samples`` (non-empty samples of the evaluation, 100,000).

Nothing is packed (``per_instance`` is empty): in :mod:`supcomp.cc` an instance's random numbers depend on
its position in the batch, so a point always trains as instance 0 of its own run, and a rerun gives the
same row. Metrics: ``loss_per_feature`` (L/p at ``eval_p``), ``naive`` (the naive baseline's L/p, 1/12 at
the defaults) and ``ratio_to_naive``. Weights (with ``save_weights``): the model's tensors.
"""

from __future__ import annotations

from ..cc.config import MIXINGS, MODELS
from ..utils.figures import new_figure
from .params import Param
from .registry import WEIGHTS_KEY, Experiment

__all__ = ["plot_loss_per_feature"]

DEFAULTS = dict(
    model="residual",
    mixing="embedding",
    sigma=None,
    n_features=100,
    d_embed=1000,
    d_mlp=50,
    feature_probability=0.01,
    steps=10_000,
    batch_size=2048,
    lr=3e-3,
    seed=0,
    eval_p=None,
    n_samples=100_000,
)
_POS = dict(low=1)
_PROB = dict(low=0, high=1, low_open=True)
PARAMS = dict(
    model=Param("str", choices=MODELS, doc="the model"),
    mixing=Param("str", choices=MIXINGS, doc="the mixing matrix"),
    sigma=Param("float", low=0, optional=True, doc="std of the Gaussian mixing"),
    n_features=Param("int", **_POS, doc="features"),
    d_embed=Param("int", **_POS, doc="residual width"),
    d_mlp=Param("int", **_POS, doc="MLP neurons"),
    feature_probability=Param("float", **_PROB, doc="training density"),
    steps=Param("int", **_POS, doc="training steps"),
    batch_size=Param("int", **_POS, doc="samples per step"),
    lr=Param("float", low=0, low_open=True, doc="learning rate"),
    seed=Param("int", low=0, high=2**63 - 1, doc="seed"),
    eval_p=Param("float", **_PROB, optional=True, doc="density of the evaluation"),
    n_samples=Param("int", **_POS, doc="non-empty evaluation samples"),
)


def run(points: list[dict]) -> list[dict]:
    from ..cc import CCConfig, loss_per_feature, naive_loss_per_feature, train

    out = []
    for p in points:
        cfg = CCConfig(
            model=p["model"],
            mixing=p["mixing"],
            sigma=p["sigma"],
            n_features=int(p["n_features"]),
            d_embed=int(p["d_embed"]),
            d_mlp=int(p["d_mlp"]),
            feature_probability=float(p["feature_probability"]),
            n_instances=1,
        )
        m = train(
            cfg,
            steps=int(p["steps"]),
            batch_size=int(p["batch_size"]),
            lr=float(p["lr"]),
            seed=int(p["seed"]),
            progress=False,
        )
        ep = float(p["feature_probability"] if p["eval_p"] is None else p["eval_p"])
        lp = float(loss_per_feature(m, ep, n_samples=int(p["n_samples"]))[0])
        naive = float(naive_loss_per_feature(int(p["n_features"]), int(p["d_mlp"])))
        weights = {k: v[0].detach().cpu().clone() for k, v in m.state_dict().items()}
        out.append(dict(loss_per_feature=lp, naive=naive, ratio_to_naive=lp / naive, **{WEIGHTS_KEY: weights}))
    return out


def plot_loss_per_feature(rows: list[dict], ax=None):
    """L/p against the mixing matrix's σ from cc sweep rows, one line per (model, mixing), with the naive
    baseline's L/p. Returns the Figure."""
    ok = [r for r in rows if r.get("loss_per_feature") is not None]
    if ax is None:
        fig, ax = new_figure(figsize=(5.5, 4))
    else:
        fig = ax.figure
    for g in sorted({(r["model"], r["mixing"]) for r in ok}):
        sel = sorted((r for r in ok if (r["model"], r["mixing"]) == g), key=lambda r: r["sigma"] or 0.0)
        ax.plot(
            [r["sigma"] or 0.0 for r in sel], [r["loss_per_feature"] for r in sel], "o-", ms=3, label=f"{g[0]} / {g[1]}"
        )
    if ok:
        ax.axhline(ok[0]["naive"], color="k", ls="--", lw=1, label="naive baseline")
    ax.set_xlabel("σ of the mixing matrix (0: none / embedding)")
    ax.set_ylabel("L / p")
    ax.set_title("compressed computation: L/p by mixing σ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot(rows: list[dict]) -> dict:
    """The standard figure: ``{"cc_loss_per_feature": Figure}`` (empty without successful rows)."""
    if not any(r.get("loss_per_feature") is not None for r in rows):
        return {}
    return {"cc_loss_per_feature": plot_loss_per_feature(rows)}


EXPERIMENT = Experiment(
    name="cc", run=run, per_instance=frozenset(), defaults=DEFAULTS, required=(), plot=plot, doc=__doc__, params=PARAMS
)
