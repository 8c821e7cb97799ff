"""`supcomp uand` pieces at small sizes: error table vs theory, capacity sweep, plots, argument errors."""

import subprocess
import sys

from supcomp.studies.uand import capacity, error_table, format_capacity, format_error_table
from supcomp.studies.uand_plots import plot_capacity, plot_errors
from supcomp.utils.figures import save_figure


def test_error_table_tracks_theory_and_plots(tmp_path):
    rows = error_table(150, 1500, 0.12, (2, 5), batch=6, seed=0, progress=False, extra_samples=256)
    assert [r["s"] for r in rows] == [2, 5]
    r2, r5 = rows
    assert r2["both_mean"] == 0 and r2["both_max"] == 0  # s = 2, both on: nothing else is active, exact
    for r in rows:
        for name in ("one", "none") + (("both",) if r["s"] > 2 else ()):
            th, sd = r[name + "_theory"], r[name + "_std_theory"]
            # mean of >= 256 estimates: well inside 5 standard errors (or 15% of the prediction)
            assert abs(r[name + "_mean"] - th) < max(0.15 * th, 5 * sd / 16), (r["s"], name, r)
            assert r[name + "_max"] >= r[name + "_mean"]
    assert "none: mean" in format_error_table(rows)
    save_figure(plot_errors(rows), str(tmp_path / "e.png"))
    assert (tmp_path / "e.png").stat().st_size > 10_000


def test_capacity_sweep(tmp_path):
    rows = capacity((30, 60), s=3, batch=4, d_start=1024, d_max=8192, seed=0, progress=False)
    assert len(rows) == 4 and all(r["d_min"] for r in rows)
    for emb in (False, True):
        ds = [r["d_min"] for r in rows if r["superposed"] == emb]
        assert ds == sorted(ds)  # the search never goes below the previous m's d
    assert "superposed" in format_capacity(rows)
    save_figure(plot_capacity(rows), str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_cli_rejects_bad_batch():
    r = subprocess.run([sys.executable, "-m", "supcomp", "uand", "--batch", "0"], capture_output=True, text=True)
    assert r.returncode != 0 and "--batch" in r.stderr
