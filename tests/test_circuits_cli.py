"""`supcomp circuits` at tiny sizes: the tables, the capacity bisection, throughput rows and the PNGs."""

from __future__ import annotations

import pytest

from supcomp import cli
from supcomp.studies import circuits as E

TINY = dict(
    base=dict(T=40, M=40, S=3, L=2, z=2),
    n=40,
    z=(1, 2),
    T=(20, 40),
    M=(40,),
    S=(3,),
    L=(1, 2),
    cap_M=(30, 60),
    cap_err=0.05,
    cap_L=1,
    cap_z=2,
    cap_n=40,
)


def test_cli_parses_circuits(monkeypatch):
    seen = {}
    monkeypatch.setattr(E, "run", lambda **kw: seen.update(kw))
    assert (
        cli.main(
            [
                "circuits",
                "--quick",
                "--no-progress",
                "--assignment",
                "random",
                "--circuits",
                "random",
                "--seed",
                "3",
                "--no-bench",
                "--out",
                "x",
            ]
        )
        == 0
    )
    assert seen == dict(
        out_dir="x", quick=True, progress=False, kind="random", assignment="random", seed=3, bench=False
    )
    with pytest.raises(SystemExit):
        cli.main(["circuits", "--assignment", "overlap2"])


def test_run_tables_capacity_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(E, "QUICK", TINY)
    monkeypatch.setattr(
        E,
        "throughput",
        lambda progress, **kw: E._throughput(T=60, M=40, S=3, L=2, zs=(1, 3), batch=8, repeats=1, progress=False),
    )
    res = E.run(out_dir=str(tmp_path), quick=True, progress=False)
    out = capsys.readouterr().out
    assert "read_in" in out and "T_max" in out and "x one-by-one" in out
    for name in ("circuits_sweeps.png", "circuits_capacity.png", "circuits_throughput.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    z = {r["z"]: r for r in res["sweeps"]["z"]}
    assert z[1]["read_out"] < 1e-10 and z[2]["read_out"] > 0  # interference needs another active circuit
    assert z[2]["total"] > z[1]["total"]
    cap = res["capacity"]
    assert cap[1]["T_max"] > cap[0]["T_max"] >= 2  # wider networks hold more circuits
    assert [r["z"] for r in res["throughput"]] == [1, 3]
    for r in res["throughput"]:
        assert r["superposed_ms"] > 0 and r["vs_dense"] > 0 and r["vs_one_by_one"] > 0


def test_demo_section_table():
    text = E.demo_section(progress=False)
    rows = [line.split() for line in text.splitlines()[3:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    total = [float(r[1]) for r in rows]
    assert total[0] < total[1] < total[2]  # more active circuits, more error
    assert float(rows[0][3]) == 0.0 and float(rows[1][3]) > 0  # read-in interference needs z > 1
