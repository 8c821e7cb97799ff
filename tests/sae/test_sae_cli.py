"""``supcomp sae train`` / ``supcomp sae grade``: a tiny config end to end, the shipped example, and every
user mistake as one line on stderr with exit status 2."""

import json
from importlib import resources

import pytest
import torch

from supcomp.cli import main
from supcomp.sae import SAE
from supcomp.sae_cli import load_config

TINY = """
name = "tiny"
[world]
n_features = 32
d = 12
p_max = 0.1
p_min = 0.02
seed = 1
[sae]
n = 32
k = 3
k_aux = 8
[train]
steps = 30
batch_size = 128
log_every = 10
formats = ["saelens", "sparsify"]
[grade]
batches = 1
batch_size = 512
"""


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_train_then_grade(tmp_path, capsys, one_thread):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["--no-progress", "sae", "train", str(cfg), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "recovered_fraction" in out and "wrote" in out
    sae = SAE.load(str(tmp_path / "run"))
    assert (sae.config.d, sae.config.n, sae.config.k) == (12, 32, 3) and [h[0] for h in sae.history] == [0, 10, 20, 29]
    for folder in ("run/saelens", "run/sparsify", "run"):
        assert main(["sae", "grade", str(tmp_path / folder), "--world", str(cfg), "--batches", "1", "--json"]) == 0
        scores = json.loads(capsys.readouterr().out)
        assert 0 <= scores["recovered_fraction"] <= 1 and scores["fvu"] < 1
        assert scores["absorption_rate"] is None  # no hierarchy: NaN becomes null
    plots = tmp_path / "plots"
    assert (
        main(["sae", "grade", str(tmp_path / "run"), "--world", str(cfg), "--batches", "1", "--plots", str(plots)]) == 0
    )
    assert "recovered_fraction" in capsys.readouterr().out
    assert (plots / "recovery_vs_frequency.png").stat().st_size > 0 and (plots / "matched_cosines.png").exists()


def test_shipped_example_is_a_valid_config():
    path = resources.files("supcomp").joinpath("examples", "sae_small.toml")
    cfg = load_config(str(path))
    assert cfg["world"].n_features == 512 and cfg["sae"]["d"] == 64 and cfg["train"]["formats"] == ["saelens"]


def test_preset_with_overrides(tmp_path):
    cfg = tmp_path / "preset.toml"
    cfg.write_text("[world]\npreset = 'synthsaebench_16k'\nn_features = 2000\nd = 64\nroots = 4\n[sae]\nn = 8\nk = 2\n")
    c = load_config(str(cfg))
    assert (c["world"].n_features, c["world"].correlation_rank, c["sae"]["d"]) == (2000, 25, 64)


@pytest.mark.parametrize(
    "text, message",
    [
        (TINY.replace("k = 3", "kk = 3"), "[sae]: unknown key 'kk'; did you mean 'k'?"),
        (TINY.replace("steps = 30", "step = 30"), "[train]: unknown key 'step'; did you mean 'steps'?"),
        (TINY.replace("n_features = 32", "n_feature = 32"), "unknown key 'n_feature'; did you mean 'n_features'?"),
        (TINY.replace("steps = 30", "steps = 1.5"), "[train].steps: expected int"),
        (TINY.replace("k = 3", "k = 99"), "k: expected k <= n"),
        (TINY.replace('["saelens", "sparsify"]', '["onnx"]'), "formats: expected 'saelens' or 'sparsify'"),
        (TINY.replace("[world]", "[wrld]"), "unknown key 'wrld'; did you mean 'world'?"),
        ("x = [", "is not valid TOML"),
        ("[world]\nn_features = 8\nd = 4\n", "[sae]"),
    ],
)
def test_mistakes_are_one_line_exit_2(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main(["sae", "train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("supcomp sae: error:") and err.count("\n") == 1 and message in err, err


def test_grade_mistakes(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["sae", "grade", str(tmp_path / "nothing"), "--world", str(cfg)]) == 2
    assert "checkpoint:" in capsys.readouterr().err
    assert main(["sae", "train", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sae", "grade", str(cfg)])  # --world is required
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1
