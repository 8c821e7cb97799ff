"""The command line: `supcomp info` and the demo's science section at small sizes."""

import subprocess
import sys

from supcomp.studies.demo import format_table, plot_superposition, superposition_table
from supcomp.utils.figures import save_figure


def test_info_runs():
    out = subprocess.run([sys.executable, "-m", "supcomp", "info"], capture_output=True, text=True, check=True)
    assert "CPU float32 backend: cpp" in out.stdout


def test_demo_table_and_plot(tmp_path):
    rows = superposition_table(n=200, batch=300, widths=(16, 64), densities=(0.01, 0.05), progress=False)
    assert len(rows) == 4
    for r in rows:
        # measured interference of random unit directions matches n p E[x^2] / d within sampling error
        assert abs(r["interference"] / r["theory"] - 1) < 0.35
        # a negative bias never makes the read-out worse (0 is on the grid)
        assert r["mse_best"] <= r["mse_nobias"] and r["best_bias"] <= 0
    wide = {(r["d"], r["p"]): r["mse_best"] for r in rows}
    assert wide[(64, 0.05)] < wide[(16, 0.05)]  # more neurons, less interference
    assert "top-k recall" in format_table(rows)
    save_figure(plot_superposition(rows), str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 10_000
