"""`supcomp sae train` and `supcomp sae grade` on a tiny world."""

import json

import pytest
import torch

from supcomp.cli import main
from supcomp.sae.cli import load_config

CONFIG = """
[world]
n_features = 64
d = 16
p_max = 0.1
p_min = 0.02
seed = 3
[sae]
n = 64
k = 3
[train]
steps = 30
batch_size = 256
lr = 3e-3
log_every = 10
"""


def test_train_then_grade(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["sae", "train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
        capsys.readouterr()
        assert main(["sae", "grade", str(tmp_path / "run"), "--batches", "1", "--plots"]) == 0
    finally:
        torch.set_num_threads(n)
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["recovered_fraction"] <= 1 and scores["l0"] > 0
    assert (tmp_path / "run" / "recovery_vs_frequency.png").exists()
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["step"] for h in hist] == [0, 10, 20, 29]


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[world]\nn_features = 8\nd = 4\n")
    with pytest.raises(ValueError, match=r"\[sae\]"):
        load_config(str(bad))
    bad.write_text("[world]\nn_features = 8\nd = 4\n[sae]\nn = 8\nk = 2\n[train]\nstepz = 3\n")
    with pytest.raises(ValueError, match="stepz"):
        load_config(str(bad))
    bad.write_text("[world]\npreset = 'synthsaebench_16k'\nn_features = 2000\nd = 64\nroots = 4\n[sae]\nn = 8\nk = 2\n")
    w, s, _ = load_config(str(bad))
    assert (w.n_features, w.correlation_rank, s.d) == (2000, 25, 64)
