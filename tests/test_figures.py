"""Every public plot function renders on an Agg canvas, composes into the caller's figure, and draws no two
text labels on top of each other.

The plot functions are found, not listed: every public function named ``plot`` or ``plot_*`` defined in
a module of the studies and model packages. Each needs small synthetic data in ``DATA`` (a test fails
for one that has none), so a new plot cannot escape these checks. Text placement is measured on what
is actually drawn: ``Text.draw`` is wrapped while the canvas draws, and the window extents of all
visible, non-empty texts (titles, axis and tick labels, legend entries, annotations) must be pairwise
disjoint (touching edges allowed) and inside the figure.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import pkgutil
from contextlib import contextmanager

import numpy as np
import pytest
import torch

PACKAGES = ("supcomp.studies", "supcomp.tms", "supcomp.uand", "supcomp.circuits", "supcomp.cc")


def _plot_functions() -> dict:
    """``{"module:name": function}`` of every public plot function defined in ``PACKAGES``."""
    found = {}
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names = [pkg_name] + [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg_name + ".")]
        for mod_name in names:
            mod = importlib.import_module(mod_name)
            for name, obj in vars(mod).items():
                if (name == "plot" or name.startswith("plot_")) and inspect.isfunction(obj):
                    if obj.__module__ == mod_name:
                        found[f"{mod_name}:{name}"] = obj
    return found


PLOTS = _plot_functions()


# ----------------------------------------------------------------------------- synthetic data per plot
def _rng(seed=0):
    return np.random.default_rng(seed)


def _polygon(n, r=1.0, phase=0.0):
    a = phase + 2 * math.pi * np.arange(n) / n
    return r * np.stack([np.cos(a), np.sin(a)], -1)


def _tms_intro():
    P, n = 10, 5
    dens = 20.0 ** -np.linspace(0, 1, P)
    W = np.zeros((P, n, 2))
    for k in range(P):
        if k < 3:  # dense: two orthogonal features, the rest not learned
            W[k, 0], W[k, 1] = (1.0, 0.0), (0.0, 1.0)
        elif k < 5:  # two features on one point (their labels merge), one antipodal
            W[k, :3] = [(0.9, 0.3), (0.9, 0.31), (-0.9, -0.3)]
        else:
            W[k] = _polygon(n, 1.05, 0.3 * k)
    rng = _rng()
    return dict(
        W=torch.tensor(W),
        b=torch.tensor(rng.normal(0, 0.2, (P, n))),
        densities=torch.tensor(dens),
        importance=torch.tensor(0.9 ** np.arange(n)),
        D=torch.tensor(rng.uniform(0, 1, (P, n))),
        loss=torch.tensor(rng.uniform(0.01, 0.1, P)),
        restarts=8,
        steps=10_000,
    )


def _tms_dimensionality():
    P, n, m = 12, 200, 20
    rng = _rng()
    levels = np.array([1.0, 0.75, 2 / 3, 0.5, 0.4, 0.375, 0.0])
    return dict(
        densities=torch.logspace(0, -3, P, dtype=torch.float64),
        dims_per_feature=torch.tensor(np.linspace(1.0, 0.1, P)),
        D=torch.tensor(rng.choice(levels, (P, n)) + rng.normal(0, 0.01, (P, n))),
        norms=torch.tensor(rng.uniform(0, 1.1, (P, n))),
        n_features=n,
        n_hidden=m,
        steps=10_000,
        batch_size=1024,
        lr=1e-3,
    )


def _tms_phase():
    Gi, Gd, F = 7, 7, 21
    rng = _rng()
    fr = np.logspace(-1, 1, F)
    fd = np.logspace(0, -2, F)
    margin = np.log10(fr)[:, None] + 0.5 * np.log10(fd)[None, :] + 0.3
    return dict(
        importance=torch.logspace(-1, 1, Gi, dtype=torch.float64),
        densities=torch.logspace(0, -2, Gd, dtype=torch.float64),
        best=torch.tensor(rng.integers(0, 4, (Gi, Gd))),
        majority=torch.tensor(rng.integers(0, 4, (Gi, Gd))),
        fine_importance=torch.tensor(fr),
        fine_densities=torch.tensor(fd),
        fine_theory=torch.tensor(np.where(margin > 0, 2, np.where(np.log10(fr)[:, None] > 0, 1, 0))),
        fine_margin=torch.tensor(margin),
        fine_margin_b0=torch.tensor(margin - 0.2),
        match=0.87,
        models_per_point=4,
        steps=4000,
    )


def _tms_correlated():
    P = 3
    rng = _rng()
    out = dict(densities=torch.tensor([0.1, 0.05, 0.02], dtype=torch.float64))
    for name, Wk in (
        ("correlated", _polygon(4, 1.0)[[0, 1, 2, 3]]),
        ("anticorrelated", _polygon(4, 1.0)[[0, 2, 1, 3]]),
    ):
        out[name] = dict(
            W=torch.tensor(np.stack([Wk] * P)),
            cos_within=torch.tensor(rng.uniform(-1, 1, (P, 2))),
        )
    return out


def _tms_dynamics():
    T, n, steps = 60, 40, 6000
    rng = _rng()
    return dict(
        steps_list=np.linspace(0, steps, T).astype(int),
        D=torch.tensor(np.clip(rng.normal(0.5, 0.2, (T, n)), 0, 1)),
        norms=torch.tensor(rng.uniform(0, 1.2, (T, n))),
        loss_history=torch.tensor(np.exp(-np.linspace(0, 3, steps)) + rng.uniform(0, 0.01, steps)),
        n_features=n,
        n_hidden=8,
        density=0.05,
        batch_size=256,
        lr=1e-2,
    )


def _tms_cross_entropy():
    from supcomp.tms.analysis import binary_code_losses

    rng = _rng()
    R = 16
    out = dict(
        analytic={k: binary_code_losses(k) for k in range(5)},
        binary={"ce": torch.tensor([1.39, 0.82, 0.69, 0.82, 1.39]), "mse": torch.tensor([0.75, 0.5, 0.5, 0.5, 0.75])},
    )
    for j, name in enumerate(("ce", "mse")):
        out[name] = dict(
            losses=torch.tensor(rng.uniform(0.69, 0.85, R) if name == "ce" else rng.uniform(0.5, 0.52, R)),
            activations=torch.tensor(rng.uniform(0, 1, (R, 4))),
            codes=["AB", "C", "ABD*", ""] * (R // 4),
            best=j,
        )
    return out


def _circuit_rows(var, xs):
    rng = _rng()
    rows = []
    for x in xs:
        r = {var: x}
        for key in ("total", "alone", "read_in", "read_out"):
            v = float(rng.uniform(1e-4, 1e-2))
            r[key], r[key + "_pred"] = v, v * 1.1
        r["read_in"] = 0.0  # exact zeros are left out on the log axis
        rows.append(r)
    return rows


def _circuits_sweeps():
    return {v: _circuit_rows(v, xs) for v, xs in dict(z=(1, 2, 3, 4, 6), T=(250, 500, 1000, 2000, 3000)).items()} | {
        "M": _circuit_rows("M", (300, 375, 500, 750, 1000)),
        "S": _circuit_rows("S", (2, 3, 4, 5, 6, 7)),
        "L": _circuit_rows("L", (1, 2, 4, 6, 8)),
    }


def _cc_res():
    ps = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    labels = ("residual (APD)", "mlp, M = W_E W_Eᵀ - I", "mlp, symmetric M σ=0.033", "mlp, asymmetric M σ=0.025")
    rng = _rng()
    return dict(
        rows=[dict(label=lab, lp={p: float(rng.uniform(0.06, 0.1)) for p in ps}) for lab in labels + ("mlp, M = 0",)],
        naive=1 / 12,
        train_p=0.01,
        sweeps={k: ([0.0, 0.02, 0.05, 0.1], list(rng.uniform(0.06, 0.09, 4))) for k in ("symmetric", "asymmetric")},
        embedding_std=0.031,
        embedding_lp=0.071,
    )


def _uand_errors():
    rows = []
    for m, d, p in ((1000, 2000, 0.1), (2000, 8000, 0.05)):
        for s in range(2, 11):
            r = dict(m=m, d=d, p=p, s=s)
            for k, name in enumerate(("both", "one", "none")):
                base = 0.0 if (s == 2 and name == "both") else 0.01 * s / (k + 1)
                r.update({name + "_mean": base, name + "_theory": base * 1.05, name + "_max": 10 * base + 0.05})
            rows.append(r)
    return rows


def _uand_capacity():
    return [
        dict(m=m, superposed=emb, d_min=int(100 * m ** (2 / 3 if emb else 0.1)), p=0.2, s=3, eps=0.5, quantile=0.99)
        for emb in (False, True)
        for m in (125, 250, 500, 1000, 2000)
    ]


def _demo_rows():
    rows = []
    for p in (0.002, 0.01, 0.05):
        for d in (32, 64, 128, 256):
            th = 1024 * p / (3 * d)
            rows.append(dict(n=1024, d=d, p=p, mse_best=th / 10, mse_nobias=th / 3, interference=th * 1.02, theory=th))
    return rows


DATA = {
    "supcomp.studies.tms.plots:plot_intro": _tms_intro,
    "supcomp.studies.tms.plots:plot_dimensionality": _tms_dimensionality,
    "supcomp.studies.tms.plots:plot_phase": _tms_phase,
    "supcomp.studies.tms.plots:plot_correlated": _tms_correlated,
    "supcomp.studies.tms.plots:plot_dynamics": _tms_dynamics,
    "supcomp.studies.tms.plots:plot_cross_entropy": _tms_cross_entropy,
    "supcomp.studies.circuits_plots:plot_sweeps": _circuits_sweeps,
    "supcomp.studies.circuits_plots:plot_capacity": lambda: [
        dict(M=M, T_max=T, err=0.05, z=2, L=2) for M, T in ((100, 300), (200, 1000), (400, 3500), (800, 12000))
    ],
    "supcomp.studies.circuits_plots:plot_throughput": lambda: [
        dict(z=z, superposed_ms=2.0 * z, one_by_one_ms=5.0 * z, dense_torch_ms=30.0, T=1000, D=2000, batch=256)
        for z in (1, 2, 3, 4, 6)
    ],
    "supcomp.studies.cc_plots:plot_loss_vs_p": _cc_res,
    "supcomp.studies.cc_plots:plot_loss_vs_sigma": _cc_res,
    "supcomp.studies.uand_plots:plot_errors": _uand_errors,
    "supcomp.studies.uand_plots:plot_capacity": _uand_capacity,
    "supcomp.studies.demo:plot_superposition": _demo_rows,
    "supcomp.studies.sae:plot_k_width": lambda: [
        dict(n=n, k=k, l0=k * 0.95, recovered_fraction=min(1.0, 0.2 * k / (n / 256)), fvu=0.5 / k)
        for n in (256, 512)
        for k in (2, 4, 8)
    ],
}


# ----------------------------------------------------------------------------- text overlap measurement
@contextmanager
def _drawn_texts():
    """Collect ``(text, window extent)`` of every visible, non-empty Text drawn inside the block."""
    from matplotlib.text import Text

    drawn = []
    original = Text.draw

    def draw(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append((self, self.get_window_extent(renderer)))

    Text.draw = draw
    try:
        yield drawn
    finally:
        Text.draw = original


def _text_problems(fig) -> list[str]:
    """Pairs of drawn texts whose extents overlap (positive area), and texts reaching outside the figure."""
    with _drawn_texts() as drawn:
        fig.canvas.draw()
    assert drawn, "nothing was drawn"
    problems = []
    fb = fig.bbox
    for t, b in drawn:
        if b.x0 < fb.x0 or b.y0 < fb.y0 or b.x1 > fb.x1 or b.y1 > fb.y1:
            problems.append(f"outside the figure: {t.get_text()!r} at {b.bounds}, figure {fb.bounds}")
    for (t1, b1), (t2, b2) in itertools.combinations(drawn, 2):
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if w > 0 and h > 0:
            problems.append(f"overlap {w:.1f} x {h:.1f} px: {t1.get_text()!r} and {t2.get_text()!r}")
    return problems


def _user_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _own_axes(ax):
    """The caller's own content next to a supcomp plot."""
    ax.plot([0, 1], [1, 0], label="caller's line")
    ax.set_title("caller's panel")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return ax


# ----------------------------------------------------------------------------- tests
def test_every_plot_function_has_data():
    assert len(PLOTS) >= 14, sorted(PLOTS)
    assert sorted(PLOTS) == sorted(DATA), "add synthetic data for every plot function to DATA (and only for those)"


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_signature_and_docstring(name):
    fn = PLOTS[name]
    params = inspect.signature(fn).parameters
    target = [p for p in ("ax", "fig") if p in params]
    assert len(target) == 1, f"{name}: expected one of ax= / fig=, got {list(params)}"
    assert params[target[0]].kind is inspect.Parameter.KEYWORD_ONLY and params[target[0]].default is None
    doc = inspect.getdoc(fn) or ""
    for word in ("Args:", "Returns:", "Raises:"):
        assert word in doc, f"{name}: docstring lacks {word!r}"
    mod = importlib.import_module(fn.__module__)
    assert fn.__name__ in getattr(mod, "__all__", [fn.__name__]), f"{name}: not in its module's __all__"


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_renders_without_overlapping_text(name):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    backend = matplotlib.get_backend()
    fig = PLOTS[name](DATA[name]())
    assert isinstance(fig, Figure), type(fig)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert matplotlib.get_backend() == backend
    assert fig.axes
    problems = _text_problems(fig)
    assert not problems, "\n".join(problems)
    assert matplotlib.get_backend() == backend


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_draws_into_the_callers_figure(name):
    """``ax=``: into one Axes of the caller's figure; ``fig=``: into a SubFigure next to the caller's Axes."""
    fn = PLOTS[name]
    w, h = fn(DATA[name]()).get_size_inches()  # the plot's own size, to give it as much room here
    user = _user_figure((w + 3.5, h))
    if "ax" in inspect.signature(fn).parameters:
        left, right = user.subplots(1, 2, width_ratios=(3.5, w))
        out = fn(DATA[name](), ax=right)
        assert right.lines or right.collections or right.patches or right.images
        target_axes = {right}
    else:
        sf_left, sf_right = user.subfigures(1, 2, width_ratios=(3.5, w))
        left = sf_left.subplots()
        out = fn(DATA[name](), fig=sf_right)
        assert sf_right.axes
        target_axes = set(sf_right.axes)
    _own_axes(left)
    assert out is user
    # nothing else was added to the caller's figure, but for twins of the target (a second y axis)
    extra = set(user.axes) - target_axes - {left}
    assert all(any(a.get_shared_x_axes().joined(a, t) for t in target_axes) for a in extra), extra
    assert left in user.axes
    assert len(left.lines) == 1 and left.get_title() == "caller's panel"  # the caller's panel is untouched
    problems = _text_problems(user)
    assert not problems, "\n".join(problems)


def test_plot_rejects_bad_targets():
    fn_ax = PLOTS["supcomp.studies.circuits_plots:plot_capacity"]
    fn_fig = PLOTS["supcomp.studies.uand_plots:plot_errors"]
    with pytest.raises(TypeError, match="ax"):
        fn_ax(DATA["supcomp.studies.circuits_plots:plot_capacity"](), ax="left")
    user = _user_figure((6, 4))
    user.subplots()
    with pytest.raises(ValueError, match="fig"):
        fn_fig(_uand_errors(), fig=user)
    with pytest.raises(ValueError, match="rows"):
        fn_fig([])
    with pytest.raises(KeyError, match="res"):
        PLOTS["supcomp.studies.tms.plots:plot_intro"]({"W": torch.zeros(1, 5, 2)})


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_save_figure_writes_each_format(tmp_path, suffix):
    from supcomp.utils.figures import save_figure

    fig = PLOTS["supcomp.studies.demo:plot_superposition"](_demo_rows())
    path = save_figure(fig, str(tmp_path / f"f.{suffix}"))
    head = open(path, "rb").read(64)
    assert {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}[suffix] in head
