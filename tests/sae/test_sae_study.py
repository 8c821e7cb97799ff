"""The k x width study on a ground-truth world: the study function, its plot, and the same points through
the sweep engine (adapter ``sae``), with parameters checked before anything runs."""

import pytest
import torch

from supcomp.studies.sae import WORLD_DEFAULTS, k_width_sweep, plot_k_width, train_and_grade
from supcomp.sweep import Grid, ParamError, plot_results, read_results, run_sweep
from supcomp.sweep.registry import get


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_sweep_engine_runs_the_study_points(tmp_path, one_thread):
    grid = Grid("sae", fixed={"n": 64, "steps": 150}, axes={"k": [1, 4]}, name="sae_t", save_weights=True)
    summary = run_sweep(grid, out=str(tmp_path / "r.jsonl"), progress=False)
    assert summary.n_failed == 0 and summary.n_run == 2
    rows = sorted(read_results(str(tmp_path / "r.jsonl")), key=lambda r: r["k"])
    assert [r["k"] for r in rows] == [1, 4] and all(r["status"] == "ok" for r in rows)
    # a larger k explains more variance and fires more latents; the small world is recovered by k = 4
    assert rows[1]["fvu"] < rows[0]["fvu"] and rows[0]["l0"] <= 1.0 < rows[1]["l0"] <= 4.0
    assert rows[1]["recovered_fraction"] >= 0.9 and 0 <= rows[0]["recovered_fraction"] <= 1
    # the sweep's row equals the study function on the same point (the adapter adds nothing of its own)
    direct = train_and_grade(_world(), 64, 4, steps=150)
    for key, v in direct.items():
        assert rows[1][key] == pytest.approx(v, rel=1e-6, abs=1e-9), key
    figs = plot_results(str(tmp_path / "r.jsonl"), out_dir=str(tmp_path / "figs"))
    assert [p.rsplit("/", 1)[-1] for p in figs] == ["sae_t-sae_k_width.png"]


def _world():
    from supcomp.sae import WorldConfig

    return WorldConfig(**WORLD_DEFAULTS)


def test_study_function_and_plot(one_thread):
    rows = k_width_sweep(ks=(2, 80), widths=(64,), steps=60, progress=False)
    assert [(r["k"], r["n"]) for r in rows] == [(2, 64)]  # k > n is skipped
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    fig = plot_k_width(rows + [{"n": 64, "l0": 4.0, "recovered_fraction": 0.5, "fvu": 0.1}, {"status": "failed"}])
    assert isinstance(fig, Figure)
    from supcomp.utils.figures import new_figure

    f2, ax = new_figure()
    assert plot_k_width(rows, ax=ax) is f2 and isinstance(ax, Axes)
    with pytest.raises(ValueError, match="rows"):
        plot_k_width([{"n": 1}])
    with pytest.raises(ValueError, match="kind"):
        train_and_grade(_world(), 8, 2, kind="relu")


def test_sweep_parameters_are_checked():
    exp = get("sae")
    with pytest.raises(ParamError, match="did you mean 'n_features'"):
        exp.complete({"n": 8, "k": 2, "n_feature": 10})
    with pytest.raises(ParamError, match="kind"):
        exp.complete({"n": 8, "k": 2, "kind": "relu"})
    with pytest.raises(ParamError, match="'k'"):
        exp.complete({"n": 8})
