"""supcomp.sweep: grids, packing (and its invariance), the results table, failures, worker pool, plots."""

import json

import pytest
import torch
from sweep_utils import by_key, restore_registry, small_grid

from supcomp.sweep import Experiment, Grid, load_grid, plan, read_results, register, run_sweep
from supcomp.sweep.grid import expand_axis
from supcomp.sweep.packing import pack
from supcomp.tms import ToyModelConfig, train

# ----------------------------------------------------------------------------- grids


@pytest.fixture(autouse=True)
def _registry():
    with restore_registry():
        yield


def test_axis_specs():
    assert expand_axis("a", [3, 1]) == [3, 1]
    assert expand_axis("a", {"logspace": [0, -2, 3]}) == [1.0, 0.1, 0.01]
    assert expand_axis("a", {"linspace": [0, 1, 5]}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert expand_axis("a", {"range": [2, 8, 3]}) == [2, 5]
    for bad in ([], {"logspace": [0, 1]}, {"range": [3, 3]}, {"geomspace": [1, 2, 3]}, 5):
        with pytest.raises(ValueError, match="axes.a"):
            expand_axis("a", bad)


def test_grid_checks_and_toml(tmp_path):
    with pytest.raises(ValueError, match="fixed"):
        Grid("tms", fixed={"seed": 0}, axes={"seed": [1]})
    with pytest.raises(ValueError, match="status"):
        Grid("tms", axes={"status": [1]})
    with pytest.raises(ValueError, match="max_instances"):
        Grid("tms", max_instances=0)
    p = tmp_path / "g.toml"
    p.write_text(
        'experiment = "tms"\nmax_instances = 7\n[fixed]\nn_features = 4\nn_hidden = 2\n'
        "[axes]\ndensity = {logspace = [0, -1, 4]}\nseed = [0, 1, 2]\n"
    )
    g = load_grid(str(p))
    assert (g.name, g.max_instances, len(g)) == ("g", 7, 12)
    pts = g.points()
    assert len(pts) == 12 and pts[1] == dict(n_features=4, n_hidden=2, density=1.0, seed=1)
    with pytest.raises(ValueError, match="unknown"):
        Grid.from_dict({"experiment": "tms", "axis": {}})
    with pytest.raises(ValueError, match="experiment"):
        plan(Grid("nope", axes={"seed": [0]}))
    with pytest.raises(ValueError, match="n_hidden"):
        plan(Grid("tms", fixed={"n_features": 3}, axes={"seed": [0]}))


# ----------------------------------------------------------------------------- packing


def test_packing_counts():
    # 3 densities x 2 importances x 2 seeds are per-instance; 2 widths are not: 2 groups of 12 points
    g = small_grid(
        max_instances=5, n_hidden=[1, 2], density={"logspace": [0, -1, 3]}, importance=[1.0, 3.0], seed=[0, 1]
    )
    points, packs = plan(g)
    assert len(points) == 24 and len({p["key"] for p in points}) == 24
    assert [len(p) for p in packs] == [4, 4, 4, 4, 4, 4]  # ceil(12 / 5) = 3 near-equal runs per group
    assert all(len({pt["params"]["n_hidden"] for pt in p}) == 1 for p in packs)
    assert sorted(pt["key"] for p in packs for pt in p) == sorted(p["key"] for p in points)
    g.max_instances = 256
    assert [len(p) for p in plan(g)[1]] == [12, 12]
    assert len(plan(g, min_packs=5)[1]) == 5  # split further so that 5 workers all get work
    done = {p["key"] for p in points[:20]}
    assert sum(len(p) for p in plan(g, done)[1]) == 4
    # a 10 x 10 phase diagram with 10 seeds per point: 1000 points, 4 runs of 250
    pts = [
        {"key": str(i), "params": {"n_hidden": 1, "density": i % 10, "importance": i // 10 % 10, "seed": i // 100}}
        for i in range(1000)
    ]
    assert [len(p) for p in pack(pts, {"density", "importance", "seed"}, 256)] == [250] * 4


def test_instance_seeds_equal_lone_runs():
    """The TMS side of packing: instance i with instance_seeds[i] = s trains exactly as a lone run with
    seed s (fused: bitwise; reference: to float rounding, its einsum batches differently)."""
    torch.set_num_threads(1)  # tiny models: a second thread on a loaded 2-core machine only slows them down
    dens, seeds = [1.0, 0.1, 0.3], [3, 7, 3]
    imp = torch.tensor([[1, 0.9, 0.8, 2.0], [1, 0.9, 0.8, 0.5], [1, 0.9, 0.8, 1.0]])
    for kind, backend in (("relu_output", "fused"), ("abs", "fused"), ("relu_hidden", "reference")):
        cfg = ToyModelConfig(4, 2, 3, feature_probability=torch.tensor(dens)[:, None], importance=imp, kind=kind)
        packed = train(cfg, steps=60, batch_size=16, lr=1e-2, progress=False, backend=backend, instance_seeds=seeds)
        for i in range(3):
            alone = train(
                ToyModelConfig(4, 2, 1, feature_probability=dens[i], importance=imp[i : i + 1], kind=kind),
                steps=60,
                batch_size=16,
                lr=1e-2,
                progress=False,
                seed=seeds[i],
                backend=backend,
            )
            for a, b in (
                (packed.W[i], alone.W[0]),
                (packed.b[i], alone.b[0]),
                (packed.loss_history[:, i], alone.loss_history[:, 0]),
            ):
                if backend == "fused":
                    assert torch.equal(a, b), (kind, i)
                else:
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(packed.W[0], packed.W[2])  # same seed, different data probabilities
    with pytest.raises(ValueError, match="instance_seeds"):
        train(ToyModelConfig(4, 2, 3), steps=1, progress=False, instance_seeds=[1, 2])
    with pytest.raises(ValueError, match="instance_seeds"):
        train(ToyModelConfig(4, 2, 2), steps=1, progress=False, instance_seeds=[1, -2])
    import numpy as np

    from supcomp import _C

    p, off = np.full((2, 3), 0.5), np.empty(2 * 4 + 1, dtype=np.int64)
    for bad in (np.array([1, 2], dtype=np.int64), np.array([1], dtype=np.uint64)):  # C++ checks too
        with pytest.raises(ValueError, match="instance_seeds"):
            _C.tms_sample_count(0, 0, p, 4, 0, 0, off, 1, instance_seeds=bad)


def test_unpacked_rows_equal_points_run_alone(tmp_path):
    g = small_grid()
    s = run_sweep(g, out=str(tmp_path / "packed.jsonl"), progress=False)
    assert (s.n_points, s.n_run, s.n_packs, s.n_failed) == (12, 12, 1, 0)
    g.max_instances = 1
    s1 = run_sweep(g, out=str(tmp_path / "alone.jsonl"), progress=False)
    assert (s1.n_run, s1.n_packs) == (12, 12)
    packed, alone = by_key(read_results(s.out)), by_key(read_results(s1.out))
    assert packed == alone
    rows = list(packed.values())
    assert len({r["loss"] for r in rows}) == 12  # every point trained differently
    r = rows[0]
    assert r["status"] == "ok" and r["n_features"] == 3 and r["steps"] == 40 and "dims_per_feature" in r


def test_optimizer_axis_trains_each_point_with_its_optimizer(tmp_path):
    """``optimizer`` is a shared parameter: Adam and AdamW points train apart, each as train() would alone."""
    g = Grid(
        "tms",
        fixed={"n_features": 3, "n_hidden": 2, "steps": 30, "batch_size": 32},
        axes={"optimizer": ["adamw", "adam"]},
    )
    s = run_sweep(g, out=str(tmp_path / "opt.jsonl"), progress=False)
    assert (s.n_run, s.n_packs, s.n_failed) == (2, 2, 0)
    rows = {r["optimizer"]: r for r in read_results(s.out)}
    for name in ("adamw", "adam"):
        model = train(ToyModelConfig(3, 2, n_instances=1), steps=30, batch_size=32, progress=False, optimizer=name)
        W = model.W.detach().double()
        assert rows[name]["frobenius_sq"] == pytest.approx(float(W.square().sum()), rel=1e-6), name
    assert rows["adam"]["frobenius_sq"] != rows["adamw"]["frobenius_sq"]


# ----------------------------------------------------------------------------- table, failures, resumption


def test_failing_point_recorded_and_retried(tmp_path):
    register("failing", "sweep_utils:FAILING")
    g = Grid("failing", axes={"x": [1, -1, 2, -2, 3, 4]}, max_instances=256)  # x < 0 fails
    out = str(tmp_path / "r.parquet")
    s = run_sweep(g, out=out, progress=False)
    assert (s.n_points, s.n_run, s.n_failed, s.n_packs) == (6, 6, 2, 1)  # one pack, rerun point by point
    rows = read_results(out)
    bad = [r for r in rows if r["status"] == "error"]
    assert len(rows) == 6 and {r["x"] for r in bad} == {-1, -2}
    assert all("negative" in r["error"] and r.get("y") is None for r in bad)
    assert sorted(r["y"] for r in rows if r["status"] == "ok") == [2, 4, 6, 8]
    import pyarrow.parquet as pq

    t = pq.read_table(out).to_pylist()
    assert len(t) == 6 and sorted(r["status"] for r in t) == ["error"] * 2 + ["ok"] * 4
    # a rerun retries only the failed points (they fail again); --skip-failed skips them
    s2 = run_sweep(g, out=out, progress=False)
    assert (s2.n_skipped, s2.n_run, s2.n_failed) == (4, 2, 2)
    assert run_sweep(g, out=out, progress=False, retry_failed=False).n_run == 0
    assert len(read_results(out)) == 6


def test_torn_journal_line_ignored(tmp_path):
    g = small_grid(density=[0.5], importance=[1.0], seed=[0, 1, 2])
    out = str(tmp_path / "r.jsonl")
    run_sweep(g, out=out, progress=False)
    lines = open(out).read().splitlines()
    with open(out, "w") as f:  # the last point's line torn by a crash mid-write
        f.write("\n".join(lines[:2]) + "\n" + lines[2][:25])
    s = run_sweep(g, out=out, progress=False)
    assert (s.n_skipped, s.n_run) == (2, 1)
    rows = read_results(out)
    assert len(rows) == 3 and len({r["key"] for r in rows}) == 3
    for line in open(out).read().splitlines()[-1:]:
        assert json.loads(line)["status"] == "ok"


def test_pool_workers_same_table(tmp_path):
    g = small_grid(density=[1.0, 0.2], importance=[1.0], seed=[0, 1, 2])
    serial = run_sweep(g, out=str(tmp_path / "a.jsonl"), progress=False)
    pooled = run_sweep(g, out=str(tmp_path / "b.jsonl"), workers=2, progress=False)
    assert pooled.n_packs == 2 and pooled.n_run == 6 and pooled.n_failed == 0
    a, b = read_results(serial.out), read_results(pooled.out)
    assert by_key(a) == by_key(b)
    assert {r["executor"] for r in b} == {"local[2]"}


def test_plot_from_table(tmp_path):
    g = Grid(
        "tms",
        fixed=dict(n_features=2, n_hidden=1, steps=30, batch_size=32, lr=1e-2),
        axes=dict(importance=[0.3, 3.0], density=[1.0, 0.05], seed=[0]),
        name="ph",
    )
    out = str(tmp_path / "ph.parquet")
    run_sweep(g, out=out, progress=False)
    rows = read_results(out)
    assert all(r["phase"] in ("not learned", "dedicated", "superposition", "other") for r in rows)
    from supcomp.cli import main

    assert main(["sweep", "plot", out, "--out", str(tmp_path / "png")]) == 0
    paths = [str(tmp_path / "png" / n) for n in ("ph-tms_phase.png", "ph-tms_dimensionality.png")]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_custom_experiment_registered_in_process(tmp_path):
    """The adapter interface: an Experiment object registered here runs on the serial executor (and is
    refused for worker processes, which could not import it); its rows unpack per point."""
    calls = []

    def run(points):
        calls.append(len(points))
        return [{"y": p["x"] * 10 + p["seed"]} for p in points]

    register(
        "toy_test", Experiment("toy_test", run, per_instance=frozenset({"seed"}), defaults={"seed": 0}, required=("x",))
    )
    g = Grid("toy_test", axes={"x": [1, 2], "seed": [0, 1, 2]}, max_instances=2)
    s = run_sweep(g, out=str(tmp_path / "t.jsonl"), progress=False)
    assert (s.n_run, s.n_packs, calls) == (6, 4, [2, 1, 2, 1])
    assert sorted(r["y"] for r in read_results(s.out)) == [10, 11, 12, 20, 21, 22]
    with pytest.raises(ValueError, match="module:attr"):
        run_sweep(g, out=str(tmp_path / "u.jsonl"), workers=2, progress=False)


def test_pool_worker_death_retried_then_recorded(tmp_path):
    """A pool worker that dies mid-pack: the pool is rebuilt and the pack rerun (bounded); past the bound
    the points are recorded as failed and the sweep still ends."""
    register("dying", "sweep_utils:DYING")
    g = Grid("dying", fixed={"marker": str(tmp_path / "m"), "always": False}, axes={"x": [1, 2, 3]})
    s = run_sweep(g, out=str(tmp_path / "a.jsonl"), workers=2, retries=1, progress=False)
    assert (s.n_run, s.n_failed) == (3, 0)
    rows = read_results(s.out)
    assert sorted(r["y"] for r in rows) == [2, 4, 6] and max(r["attempt"] for r in rows) == 2
    g = Grid("dying", fixed={"marker": str(tmp_path / "m2"), "always": True}, axes={"x": [1, 2]})
    s = run_sweep(g, out=str(tmp_path / "b.jsonl"), workers=2, retries=0, progress=False)
    assert (s.n_run, s.n_failed) == (2, 2)
    assert all("died 1 times" in r["error"] for r in read_results(s.out))


def _saves_png(figs, tmp_path):
    """An adapter's standard figures: one or more matplotlib Figures that save as PNG."""
    from matplotlib.figure import Figure

    from supcomp.utils.figures import save_figure

    assert figs and all(isinstance(f, Figure) for f in figs.values())
    for name, fig in figs.items():
        with open(save_figure(fig, str(tmp_path / "png" / f"{name}.png")), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_circuits_adapter_matches_error_row_and_plots(tmp_path):
    """The circuits adapter: one row per configuration, equal to error_row called directly."""
    from supcomp.studies.circuits import error_row
    from supcomp.sweep.registry import get

    g = Grid("circuits", fixed=dict(T=12, M=30, L=2, n_samples=16), axes=dict(z=[1, 3]), name="circ")
    out = str(tmp_path / "circ.jsonl")
    s = run_sweep(g, out=out, progress=False)
    assert (s.n_points, s.n_failed) == (2, 0)
    rows = sorted(read_results(out), key=lambda r: r["z"])
    direct = error_row("rotations", 12, 30, 5, 2, 3, 16, seed=0)
    assert rows[1]["total"] == pytest.approx(direct["total"], rel=1e-6)
    assert rows[0]["read_in"] == 0.0 and rows[1]["read_in"] > 0
    _saves_png(get("circuits").plot(rows), tmp_path)


def test_cc_adapter_rows_and_plot(tmp_path):
    """The cc adapter on a tiny config: one row per sigma, L/p finite and compared with the naive baseline."""
    from supcomp.sweep.registry import get

    g = Grid(
        "cc",
        fixed=dict(
            model="mlp",
            mixing="symmetric",
            n_features=12,
            d_mlp=4,
            d_embed=30,
            feature_probability=0.1,
            steps=20,
            batch_size=64,
            n_samples=2000,
        ),
        axes=dict(sigma=[0.0, 0.05]),
        name="cc",
    )
    out = str(tmp_path / "cc.jsonl")
    s = run_sweep(g, out=out, progress=False)
    assert (s.n_points, s.n_failed) == (2, 0), read_results(out)
    rows = read_results(out)
    for r in rows:
        assert r["loss_per_feature"] > 0 and r["naive"] == pytest.approx((12 - 4) / (6 * 12))
        assert r["ratio_to_naive"] == pytest.approx(r["loss_per_feature"] / r["naive"])
    again = run_sweep(g, out=str(tmp_path / "cc2.jsonl"), progress=False)
    assert sorted(r["loss_per_feature"] for r in read_results(again.out)) == sorted(r["loss_per_feature"] for r in rows)
    _saves_png(get("cc").plot(rows), tmp_path)


def test_uand_adapter_matches_error_table_and_plots(tmp_path):
    """The uand adapter: one row per s, equal to error_table called directly, mean errors near theory."""
    from supcomp.studies.uand import error_table
    from supcomp.sweep.registry import get

    g = Grid("uand", fixed=dict(m=60, d=300, p=0.2, batch=8, extra_samples=64), axes=dict(s=[2, 4]), name="u")
    out = str(tmp_path / "u.jsonl")
    s = run_sweep(g, out=out, progress=False)
    assert (s.n_points, s.n_failed) == (2, 0), read_results(out)
    rows = sorted(read_results(out), key=lambda r: r["s"])
    direct = error_table(60, 300, 0.2, s_values=[4], batch=8, seed=0, progress=False, extra_samples=64)[0]
    assert rows[1]["one_mean"] == pytest.approx(direct["one_mean"], rel=1e-9)
    assert rows[0]["both_mean"] == pytest.approx(0.0, abs=1e-6)  # s = 2, both on: exact
    _saves_png(get("uand").plot(rows), tmp_path)
