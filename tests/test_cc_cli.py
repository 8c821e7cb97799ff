"""`supcomp cc`: the experiment at a tiny size (tables, plots) and the CLI's argument checks."""

import pytest
import torch

from supcomp.cli import main
from supcomp.studies.cc import run


def test_cc_experiment_tiny(tmp_path):
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny sizes are faster on one thread
    try:
        res = _run(tmp_path)
    finally:
        torch.set_num_threads(old)
    _check(res, tmp_path)


def _run(tmp_path):
    return run(
        steps=40,
        quick=True,
        out_dir=str(tmp_path),
        progress=False,
        n_samples=400,
        sigmas=(0.0, 0.1),
        verbose=False,
        size=dict(n_features=12, d_mlp=5, d_embed=40),
    )


def _check(res, tmp_path):
    assert [r["label"] for r in res["rows"]] == [
        "residual (APD)",
        "mlp, M = W_E W_Eᵀ - I",
        "mlp, symmetric M σ=0.033",
        "mlp, asymmetric M σ=0.025",
        "mlp, M = 0",
    ]
    for r in res["rows"]:
        assert {0.001, 0.01, 0.1, 1.0} <= set(r["lp"]) and all(v > 0 for v in r["lp"].values())
    assert res["naive"] == pytest.approx(7 / 72)  # (12 - 5) / (6 * 12)
    assert set(res["sweeps"]) == {"symmetric", "asymmetric"} and res["sweeps"]["symmetric"][0] == [0.0, 0.1]
    assert "p=0.001" in res["table"] and "asymmetric" in res["sigma_table"]
    for p in res["paths"]:
        assert p.endswith(".png") and (tmp_path / p.split("/")[-1]).stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--steps", "0"], "--steps"),
        (["--samples", "-1"], "--samples"),
        (["--seed", "-2"], "--seed"),
        (["--sigmas", "a,b"], "--sigmas"),
        (["--sigmas", "-0.1"], "--sigmas"),
    ],
)
def test_cc_cli_rejects(args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(["cc", *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err
