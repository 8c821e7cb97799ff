"""supcomp.studies.tms.experiments: the Toy Models of Superposition reproductions at quick sizes, checked against
the paper's findings (and the analytic results they rest on)."""

import math
import os
import subprocess
import sys

import pytest
import torch

from supcomp.studies.tms import experiments as E

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _png(path, min_bytes=10_000):
    assert str(path).endswith(".png") and os.path.isfile(path)
    assert os.path.getsize(path) > min_bytes
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- intro


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's TMS section (quick intro + small dimensionality sweep), run once."""
    out = tmp_path_factory.mktemp("demo")
    results = {}
    text = E.demo_section(out_dir=str(out), progress=False, results=results)
    return text, results


@pytest.fixture(scope="module")
def intro_res(demo):
    return demo[1]["intro"]


def test_demo_section(demo):
    text, results = demo
    assert "TMS intro" in text and "TMS dimensionality" in text
    assert results["intro"]["table"] in text and results["dimensionality"]["table"] in text
    for r in results.values():
        _png(r["paths"][0])
    # dimensionality sweep (n=100, m=10, 1-S from 1 to 1/100)
    r = results["dimensionality"]
    dpf = r["dims_per_feature"]
    assert dpf.shape == (10,)
    assert float(dpf[0]) == pytest.approx(1.0, abs=0.1)  # dense: m features, one dimension each
    assert float(dpf[-1]) < 0.45 and float(dpf[-1]) < float(dpf[0])  # sparse: > 2 features per dimension
    assert int(r["n_learned"][-1]) > int(r["n_learned"][0])
    assert r["D"].shape == (10, 100) and bool(((r["D"] >= 0) & (r["D"] <= 1)).all())


def test_intro_dense_two_orthogonal_features(intro_res):
    r = intro_res
    assert float(r["densities"][0]) == 1.0
    # dense: the 2 most important features get orthogonal dimensions, the others are not learned
    assert int(r["n_learned"][0]) == 2
    norms = r["norms"][0]
    assert bool((norms[:2] > 0.9).all()) and bool((norms[2:] < 0.2).all())
    assert r["geometry_counts"][0]["dedicated dimension"] == 2
    assert abs(E.feature_cosine(r["W"][0], 0, 1)) < 0.1


def test_intro_sparse_pentagon(intro_res):
    r = intro_res
    assert float(r["densities"][-1]) == pytest.approx(0.05)
    assert int(r["n_learned"][-1]) == 5
    D = r["D"][-1]
    assert torch.allclose(D, torch.full_like(D, 0.4), atol=0.04), D  # 5 x 2/5 = 2 dimensions
    assert r["geometry_counts"][-1]["pentagon"] == 5
    # sparser -> more features learned, lower loss
    assert list(r["n_learned"]) == sorted(r["n_learned"].tolist())
    assert float(r["loss"][-1]) < float(r["loss"][0])
    assert "penta:5" in r["table"]
    _png(r["paths"][0])


# ----------------------------------------------------------------------------- phase


def test_phase_closed_forms_match_quadrature():
    # the three candidate solutions' closed forms (optimal bias) against the exact quadrature
    for r, p in ((0.3, 0.2), (3.0, 0.7), (1.0, 0.05)):
        w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        b = torch.tensor([[0.0, p / 2], [p / 2, 0.0], [0.0, 0.0]], dtype=torch.float64)
        exact = E.phase_exact_loss(w, b, r, p, nodes=512)
        c = E.phase_candidate_losses(r, p, refine=False)
        got = torch.stack([c["[1,0]"], c["[0,1]"], c["[1,-1] b=0"]])
        assert torch.allclose(exact, got, rtol=1e-4), (exact, got)
    # r(p/3 - p^2/4)/2 and (1+r)p^2/12 by hand
    c = E.phase_candidate_losses(2.0, 0.5, refine=False)
    assert float(c["[1,0]"]) == pytest.approx(2 * (0.5 / 3 - 0.25 / 4) / 2)
    assert float(c["[1,-1] b=0"]) == pytest.approx(3 * 0.25 / 12)
    # the analytic diagram's corners
    th, _ = E.phase_analytic(torch.tensor([0.1, 10.0, 0.1, 10.0]), torch.tensor([1.0, 1.0, 0.01, 0.01]))
    assert th.tolist() == [0, 1, 2, 2]  # not learned, dedicated, superposition, superposition


def test_phase_diagram(tmp_path):
    r = E.phase(
        quick=True,
        n_importance=4,
        n_density=4,
        models_per_point=4,
        steps=1500,
        progress=False,
        out_dir=str(tmp_path),
        verbose=False,
    )
    rel, dens = r["importance"], r["densities"]
    assert float(rel[0]) == pytest.approx(0.1) and float(rel[-1]) == pytest.approx(10)
    assert float(dens[0]) == pytest.approx(1) and float(dens[-1]) == pytest.approx(0.01)
    S, N, D = E.PHASES.index("superposition"), E.PHASES.index("not learned"), E.PHASES.index("dedicated")
    # high importance + low density: the extra feature in (antipodal) superposition
    assert int(r["best"][-1, -1]) == S
    w = r["W"].reshape(4, 4, 4, 2)[-1, -1]
    assert any(float(x[0] * x[1]) < -0.5 for x in w)
    # low importance + high density: not learned; high importance + high density: dedicated dimension
    assert int(r["best"][0, 0]) == N
    assert int(r["best"][-1, 0]) == D
    # and the trained diagram agrees with the analytic one almost everywhere
    assert r["match"] >= 0.8
    _png(r["paths"][0])


# ----------------------------------------------------------------------------- correlated


def test_correlated_orthogonal_anticorrelated_antipodal(tmp_path):
    r = E.correlated(quick=True, steps=2000, progress=False, out_dir=str(tmp_path), verbose=False)
    cw = r["correlated"]["cos_within"][0]
    aw = r["anticorrelated"]["cos_within"][0]
    assert bool((cw.abs() < 0.15).all()), cw  # correlated members orthogonal
    assert bool((aw < -0.95).all()), aw  # anticorrelated members antipodal
    assert bool((r["correlated"]["norms"] > 0.8).all()) and bool((r["anticorrelated"]["norms"] > 0.8).all())
    # correlated: the two pairs are then antipodal to each other (a0 opposite b0 or b1)
    assert float(r["correlated"]["cos_across"][0, :2].min()) < -0.9
    _png(r["paths"][0])


# ----------------------------------------------------------------------------- cross-entropy


def test_binary_code_constants():
    assert E.binary_code_losses(1)["ce"] == pytest.approx(0.75 * math.log(3))
    assert E.binary_code_losses(1)["ce"] == pytest.approx(0.8240, abs=1e-4)
    assert E.binary_code_losses(2)["ce"] == pytest.approx(math.log(2))
    assert E.binary_code_losses(3)["ce"] == pytest.approx(0.75 * math.log(3))
    assert E.binary_code_losses(0)["ce"] == pytest.approx(math.log(4))
    assert [E.binary_code_losses(k)["mse"] for k in range(5)] == [0.75, 0.5, 0.5, 0.5, 0.75]


def test_cross_entropy_prefers_polysemantic(tmp_path):
    r = E.cross_entropy(quick=True, progress=False, out_dir=str(tmp_path), verbose=False)
    # binary neuron, read-out trained: reaches the analytic values; CE ranks k=2 first, MSE is flat
    ce, mse = r["binary"]["ce"], r["binary"]["mse"]
    for k in range(5):
        assert float(ce[k]) == pytest.approx(r["analytic"][k]["ce"], abs=3e-3)
        assert float(mse[k]) == pytest.approx(r["analytic"][k]["mse"], abs=3e-3)
    assert int(ce.argmin()) == 2 and float(ce[1] - ce[2]) > 0.1
    assert float(mse[1:4].max() - mse[1:4].min()) < 3e-3
    # free neuron: every live CE restart fires on >= 2 tokens and beats the polysemantic binary code
    live = r["ce"]["n_fires"] > 0
    assert int(live.sum()) >= 12
    assert bool((r["ce"]["n_fires"][live] >= 2).all())
    assert float(r["ce"]["losses"][live].max()) < math.log(2)
    # squared error: every live restart sits at 1/2 whatever it codes (monosemantic codes included)
    live = r["mse"]["n_fires"] > 0
    assert torch.allclose(r["mse"]["losses"][live], torch.full((int(live.sum()),), 0.5, dtype=torch.float64), atol=2e-3)
    _png(r["paths"][0])


# ----------------------------------------------------------------------------- dynamics


def test_level_paths_finds_jumps():
    steps = list(range(0, 1001, 10))  # 101 snapshots
    S = len(steps)
    D = torch.zeros(S, 3, dtype=torch.float64)
    norms = torch.ones(S, 3, dtype=torch.float64)
    D[:, 0] = torch.where(torch.tensor(steps) < 500, 0.5, 0.4)  # a jump 1/2 -> 2/5 at step 500
    D[:, 1] = torch.linspace(0.2, 0.6, S)  # a sweep past the levels: no dwelling, no jump
    norms[: 300 // 10, 2] = 0.0  # learned at step 300 ...
    D[:, 2] = 3 / 8  # ... onto 3/8
    paths, jumps = E.level_paths(D, norms, steps)
    assert paths[0] == [(0.5, 0), (0.4, 500)]
    assert paths[1] == []
    assert paths[2] == [(0.0, 0), (3 / 8, 300)]
    assert jumps == [(0, 0.5, 0.4, 500)]


def test_dynamics_snapshots(tmp_path):
    r = E.dynamics(
        quick=True,
        n_features=20,
        n_hidden=4,
        steps=600,
        n_snapshots=40,
        progress=False,
        out_dir=str(tmp_path),
        verbose=False,
    )
    st = r["steps_list"]
    assert st[0] == 0 and st[-1] == 600 and st == sorted(set(st))
    assert r["D"].shape == (len(st), 20)
    assert r["loss_history"].shape == (600,)
    # the snapshot loop reproduces train() exactly (same init, batches and optimizer)
    from supcomp.tms import ToyModelConfig, train

    cfg = ToyModelConfig(20, 4, 1, feature_probability=r["density"], importance=1.0)
    with E.threads(1):
        m = train(cfg, steps=600, batch_size=r["batch_size"], lr=r["lr"], seed=0, progress=False)
    assert torch.allclose(m.W.detach()[0].double(), r["W"][-1], atol=1e-5)
    _png(r["paths"][0])


# ----------------------------------------------------------------------------- CLI


def test_cli_tms(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "supcomp",
            "tms",
            "cross-entropy",
            "--quick",
            "--steps",
            "300",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cross-entropy vs. squared error" in out.stdout
    assert "tms_cross_entropy.png" in out.stdout
    _png(tmp_path / "tms_cross_entropy.png")
    bad = subprocess.run([sys.executable, "-m", "supcomp", "tms", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
