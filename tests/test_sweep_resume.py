"""Resumption: a sweep interrupted part-way (Ctrl-C, then a killed process) loses only the points in flight;
rerunning the same command finishes the grid with every point present exactly once."""

import os
import signal
import subprocess
import sys
import time

from supcomp.sweep import load_grid, read_results, run_sweep

GRID = """experiment = "tms"
name = "resume"
max_instances = 1
[fixed]
n_features = 6
n_hidden = 3
steps = 400
batch_size = 64
lr = 1e-2
[axes]
density = [1.0, 0.3, 0.1]
seed = [0, 1, 2, 3]
"""


def _lines(path):
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def _start(grid, out):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "supcomp", "sweep", "run", grid, "--out", out, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )


def _interrupt_after(proc, journal, n, sig, timeout=120):
    t0 = time.time()
    while _lines(journal) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() - t0 < timeout, "sweep made no progress"
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.communicate(timeout=60)


def test_interrupted_sweep_resumes(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    out = str(tmp_path / "res.parquet")
    journal = str(tmp_path / "res.journal.jsonl")
    # Ctrl-C after 2 points: exit status 130, the finished points kept, the Parquet table written
    proc = _start(str(grid), out)
    text, _ = _interrupt_after(proc, journal, 2, signal.SIGINT)
    assert proc.returncode == 130, text
    assert "interrupted" in text and os.path.exists(out)
    n1 = _lines(journal)
    assert 2 <= n1 < 12
    # a rerun killed outright (no clean-up at all) after 2 more points
    proc = _start(str(grid), out)
    _interrupt_after(proc, journal, n1 + 2, signal.SIGKILL)
    n2 = len(read_results(out))
    assert n1 + 2 <= n2 < 12, (n1, n2)
    # the same grid again, to the end: only the missing points run
    s = run_sweep(load_grid(str(grid)), out=out, progress=False)
    assert (s.n_points, s.n_skipped, s.n_run, s.n_failed) == (12, n2, 12 - n2, 0)
    rows = read_results(out)
    keys = [r["key"] for r in rows]
    assert len(keys) == 12 and len(set(keys)) == 12
    with open(journal) as f:  # nothing was run twice
        assert sum(1 for _ in f) == 12
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert sorted(r["key"] for r in table) == sorted(keys)
    assert {(r["density"], r["seed"]) for r in table} == {(d, s) for d in (1.0, 0.3, 0.1) for s in range(4)}
