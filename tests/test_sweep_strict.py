"""Sweeps that cannot silently lie: unknown and misspelled keys, typed and ranged values, safe names, the
version in a point's key, strict JSON, weights per point, and one-line CLI errors (exit status 2)."""

import json
import os

import pytest
import torch
from sweep_utils import restore_registry, small_grid

import supcomp
from supcomp.cli import main as cli
from supcomp.sweep import (
    Grid,
    ParamError,
    VersionMixError,
    load_grid,
    load_weights,
    plan,
    point_key,
    read_results,
    register,
    run_sweep,
)
from supcomp.sweep.run import default_out
from supcomp.sweep.table import journal_path

TMS_TYPO = """experiment = "tms"
[fixed]
n_features = 3
n_hidden = 2
steps = 20
[axes]
densty = [1.0, 0.5]
"""


@pytest.fixture(autouse=True)
def _registry():
    with restore_registry():
        yield


def _strict_loads(text):
    def refuse(tok):
        raise ValueError(f"non-standard JSON token {tok}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- names and values


def test_misspelled_key_names_the_right_one(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text(TMS_TYPO)
    with pytest.raises(ParamError, match="unknown parameter 'densty' for tms.*did you mean 'density'"):
        plan(load_grid(str(p)))
    with pytest.raises(ParamError, match="did you mean 'density'"):  # nothing ran, no table was made
        run_sweep(str(p), out=str(tmp_path / "r.jsonl"), progress=False)
    assert not os.path.exists(tmp_path / "r.jsonl")
    # a misspelled required key: the error names the unknown key and the required one it stands for
    with pytest.raises(ParamError, match="'n_hiden'.*did you mean 'n_hidden'.*required and missing"):
        plan(Grid("tms", fixed=dict(n_features=3, n_hiden=2)))
    with pytest.raises(ParamError, match="missing required parameter.*'n_hidden'"):
        plan(Grid("tms", fixed=dict(n_features=3)))
    # top-level keys and the other adapters too
    with pytest.raises(ValueError, match="did you mean 'axes'"):
        Grid.from_dict({"experiment": "tms", "axis": {}})
    for exp, fixed, wrong, right in (
        ("uand", dict(m=10, d=20, p=0.1), "sed", "seed"),
        ("circuits", dict(T=4, M=8), "asignment", "assignment"),
        ("cc", {}, "d_mpl", "d_mlp"),
    ):
        with pytest.raises(ParamError, match=f"did you mean '{right}'"):
            plan(Grid(exp, fixed=dict(fixed, **{wrong: 1})))


@pytest.mark.parametrize(
    "name, value, why",
    [
        ("n_features", 2.5, "integer"),
        ("n_features", 2.0, "integer"),
        ("n_features", True, "integer"),
        ("n_features", -3, ">= 1"),
        ("n_hidden", 0, ">= 1"),
        ("steps", "100", "integer"),
        ("density", 1.5, r"\(0, 1\]"),
        ("density", 0.0, r"\(0, 1\]"),
        ("lr", float("nan"), "finite"),
        ("lr", float("inf"), "finite"),
        ("lr", 0, "> 0"),
        ("seed", -1, r"\[0, 9223372036854775807\]"),
        ("kind", "relu", "one of"),
        ("importance", None, "got none"),
    ],
)
def test_values_checked_by_type_and_range(name, value, why):
    fixed = dict(n_features=3, n_hidden=2)
    fixed[name] = value
    with pytest.raises(ParamError, match=f"'{name}'.*{why}"):
        plan(Grid("tms", fixed=fixed))
    ax = {k: v for k, v in fixed.items() if k != name}  # the same check on an axis value
    with pytest.raises(ParamError, match=f"axes.{name}"):
        plan(Grid("tms", fixed=ax, axes={name: [fixed[name]]}))


def test_values_normalised_so_spelling_does_not_change_the_key():
    import numpy as np

    a = plan(Grid("tms", fixed=dict(n_features=3, n_hidden=2, lr=1)))[0][0]
    b = plan(Grid("tms", fixed=dict(n_features=np.int64(3), n_hidden=2, lr=1.0)))[0][0]
    assert a["key"] == b["key"] and isinstance(a["params"]["lr"], float)
    assert type(b["params"]["n_features"]) is int


def test_names_are_safe_and_output_stays_in_the_sweep_folder(tmp_path):
    for bad in ("../../x", "a/b", ".hidden", "", "x" * 101, "a b", 3):
        with pytest.raises(ValueError, match="name"):
            Grid("tms", name=bad)
    p = tmp_path / "g.toml"
    p.write_text('experiment = "tms"\nname = "../../escape"\n[fixed]\nn_features = 3\nn_hidden = 2\n')
    with pytest.raises(ValueError, match="safe file name"):
        load_grid(str(p))
    odd = tmp_path / "my grid (v2).toml"  # a file stem becomes a safe default name
    odd.write_text('experiment = "tms"\n[fixed]\nn_features = 3\nn_hidden = 2\n')
    g = load_grid(str(odd))
    assert g.name == "my_grid__v2_"
    root = tmp_path / "root"
    out = default_out(g, root=str(root))
    assert os.path.dirname(os.path.dirname(os.path.abspath(out))) == str(root)
    assert os.path.basename(os.path.dirname(out)) == g.name  # its own folder, named from the grid


# ----------------------------------------------------------------------------- versions, JSON, weights


def test_version_is_part_of_the_key_and_mixing_is_refused(tmp_path, monkeypatch):
    g = small_grid(density=[1.0, 0.5], importance=[1.0], seed=[0])
    params = plan(g)[0][0]["params"]
    assert point_key("tms", params, "0.0.1") != point_key("tms", params, "0.0.2")
    assert point_key("tms", params) == point_key("tms", params, supcomp.__version__)
    out = str(tmp_path / "r.jsonl")
    monkeypatch.setattr(supcomp, "__version__", "0.0.old")
    assert run_sweep(g, out=out, progress=False).n_run == 2
    monkeypatch.undo()
    with pytest.raises(VersionMixError, match="0.0.old"):
        run_sweep(g, out=out, progress=False)
    assert len(read_results(out)) == 2  # nothing was added
    s = run_sweep(g, out=out, progress=False, allow_version_mix=True)
    assert (s.n_skipped, s.n_run) == (0, 2)  # the old rows never stand in for this version's points
    rows = read_results(out)
    assert sorted(r["supcomp_version"] for r in rows) == sorted(["0.0.old"] * 2 + [supcomp.__version__] * 2)
    names = sorted(os.path.basename(p) for p in supcomp.sweep.plot_results(out))  # one figure per version
    assert names == sorted(f"t-v{v}-tms_dimensionality.png" for v in ("0.0.old", supcomp.__version__))
    # the CLI: one line, exit status 2, and the flag
    grid = tmp_path / "g.toml"
    grid.write_text('experiment = "tms"\n[fixed]\nn_features = 3\nn_hidden = 2\nsteps = 20\n[axes]\ndensity = [1.0]\n')
    out2 = str(tmp_path / "r2.jsonl")
    with open(out2, "w") as f:
        f.write(json.dumps({"key": "0", "status": "ok", "supcomp_version": "0.0.old"}) + "\n")
    assert cli(["sweep", "run", str(grid), "--out", out2, "--no-progress"]) == 2
    assert cli(["sweep", "run", str(grid), "--out", out2, "--no-progress", "--allow-version-mix"]) == 0


def _nonfinite_run(points):
    return [{"a": float("nan"), "b": float("inf"), "c": [1.0, -float("inf")], "d": p["x"] / 2} for p in points]


def test_results_are_strict_json(tmp_path):
    from supcomp.sweep import Experiment

    register("nonfinite_test", Experiment("nonfinite_test", _nonfinite_run, required=("x",)))
    for out in (str(tmp_path / "r.jsonl"), str(tmp_path / "r.parquet")):
        run_sweep(Grid("nonfinite_test", axes={"x": [1, 2]}), out=out, progress=False)
        with open(journal_path(out)) as f:
            rows = [_strict_loads(line) for line in f]  # no NaN / Infinity tokens
        assert len(rows) == 2
        for r in rows:
            assert (r["a"], r["b"], r["c"], r["d"]) == (None, None, [1.0, None], r["x"] / 2)
            assert r["nonfinite"] == {"a": "nan", "b": "inf", "c[1]": "-inf"}
        assert read_results(out)[0]["a"] is None


def test_weights_saved_per_point_on_request(tmp_path):
    from supcomp.tms import ToyModelConfig, train

    g = small_grid(density=[1.0, 0.3], importance=[1.0], seed=[0, 1])
    out = str(tmp_path / "r.jsonl")
    run_sweep(g, out=out, progress=False)
    assert all(r.get("weights") is None for r in read_results(out))  # off by default
    with pytest.raises(ValueError, match="no saved weights"):
        load_weights(out, read_results(out)[0])
    s = run_sweep(g, out=out, progress=False, save_weights=True)  # points lacking weights run again
    assert s.n_run == 4
    rows = read_results(out)
    files = sorted(os.listdir(tmp_path / "r.weights"))
    assert files == sorted(r["key"] + ".safetensors" for r in rows)  # one file per point, no temporaries
    r = next(r for r in rows if r["density"] == 0.3 and r["seed"] == 1)
    w = load_weights(out, r)
    alone = train(
        ToyModelConfig(3, 2, 1, feature_probability=0.3), steps=40, batch_size=32, lr=1e-2, seed=1, progress=False
    )
    assert torch.equal(w["W"], alone.W[0].detach()) and torch.equal(w["b"], alone.b[0].detach())
    from safetensors import safe_open

    with safe_open(str(tmp_path / r["weights"]), "pt") as f:
        meta = json.loads(f.metadata()["point"])
    assert meta["key"] == r["key"] and meta["supcomp_version"] == supcomp.__version__
    assert run_sweep(g, out=out, progress=False, save_weights=True).n_run == 0
    # the grid file's switch
    grid = tmp_path / "w.toml"
    grid.write_text(
        'experiment = "tms"\nsave_weights = true\n[fixed]\nn_features = 3\nn_hidden = 2\nsteps = 20\n'
        "[axes]\ndensity = [1.0]\n"
    )
    assert load_grid(str(grid)).save_weights is True
    with pytest.raises(ValueError, match="save_weights"):
        Grid("tms", save_weights="yes")


# ----------------------------------------------------------------------------- the CLI


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_user_mistakes_are_one_line_exit_2(tmp_path, capsys):
    good = 'experiment = "tms"\n[fixed]\nn_features = 3\nn_hidden = 2\nsteps = 20\n[axes]\ndensity = [1.0]\n'
    cases = {
        "missing.toml": (None, "No such file"),
        "typo.toml": (TMS_TYPO, "did you mean 'density'"),
        "value.toml": (good.replace("n_features = 3", "n_features = 2.5"), "'n_features'"),
        "name.toml": ('name = "../../x"\n' + good, "safe file name"),
        "syntax.toml": ("experiment = \n", "not valid TOML"),
        "nope.txt": (good, ".toml"),
        "exp.toml": (good.replace('"tms"', '"tmz"'), "unknown 'tmz'"),
    }
    for fname, (text, why) in cases.items():
        if text is not None:
            (tmp_path / fname).write_text(text)
        out = str(tmp_path / "o" / f"{fname}.jsonl")
        assert cli(["sweep", "run", str(tmp_path / fname), "--out", out]) == 2, fname
        err = _one_line(capsys)
        assert err.startswith("supcomp sweep: error:") and why in err, (fname, err)
    (tmp_path / "g.toml").write_text(good)
    for args in (["--workers", "0"], ["--workers", "two"], ["--retries", "-1"], ["--out", "x.csv"]):
        try:
            rc = cli(["sweep", "run", str(tmp_path / "g.toml"), *args])
        except SystemExit as e:  # argparse's own errors exit from inside parse_args
            rc = e.code
        assert rc == 2, args
        _one_line(capsys)
    assert cli(["sweep", "plot", str(tmp_path / "none.parquet")]) == 2
    assert "no table" in _one_line(capsys)


def test_init_writes_a_shipped_example(tmp_path, capsys):
    import importlib.resources as res

    shipped = sorted(p.name for p in res.files("supcomp").joinpath("examples").iterdir() if p.name.endswith(".toml"))
    assert shipped == ["sae_small.toml", "tms_dimensionality.toml", "tms_phase.toml"]  # sweep grids + `supcomp sae`
    target = tmp_path / "mine.toml"
    assert cli(["sweep", "init", str(target)]) == 0
    g = load_grid(str(target))
    assert (g.experiment, g.name, len(plan(g)[0])) == ("tms", "tms_phase", 200)
    assert cli(["sweep", "init", str(target)]) == 2  # no silent overwrite
    assert "already exists" in _one_line(capsys)
    assert cli(["sweep", "init", str(tmp_path), "--example", "tms_dimensionality"]) == 0
    assert load_grid(str(tmp_path / "tms_dimensionality.toml")).name == "tms_dimensionality"
    assert cli(["sweep", "init", str(tmp_path / "x.toml"), "--example", "nope"]) == 2
    _one_line(capsys)


def test_plot_functions_return_figures_and_take_ax(tmp_path):
    from matplotlib.figure import Figure

    from supcomp.sweep.plots_tms import plot_dimensionality, plot_phase
    from supcomp.utils.figures import new_figure

    g = Grid(
        "tms",
        fixed=dict(n_features=2, n_hidden=1, steps=20, batch_size=32, lr=1e-2),
        axes=dict(importance=[0.3, 3.0], density=[1.0, 0.05], seed=[0]),
        name="ph",
    )
    out = str(tmp_path / "ph" / "results.jsonl")
    run_sweep(g, out=out, progress=False)
    rows = read_results(out)
    fig, axes = new_figure(1, 3, figsize=(12, 4))
    assert plot_phase(rows, ax=axes[0]) is fig and plot_dimensionality(rows, ax=axes[2]) is fig
    assert axes[0].get_title() and axes[2].get_title()
    assert isinstance(plot_phase(rows), Figure)
    # files per grid: a second sweep plotted into the same folder does not overwrite the first
    g2 = Grid(g.experiment, fixed=g.fixed, axes=dict(g.axes, seed=[1]), name="ph2")
    run_sweep(g2, out=out, progress=False)
    paths = supcomp.sweep.plot_results(out, formats=("png", "svg"))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(
        f"{n}-tms_{k}.{e}" for n in ("ph", "ph2") for k in ("phase", "dimensionality") for e in ("png", "svg")
    )
