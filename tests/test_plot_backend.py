"""Plotting leaves the user's matplotlib alone: ``import supcomp`` imports no matplotlib, and plot
functions neither switch the global backend nor leave pyplot figures open."""

import subprocess
import sys

import pytest


def test_import_supcomp_imports_no_matplotlib_or_triton():
    code = "import supcomp, sys; bad = [m for m in ('matplotlib', 'triton') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Each snippet runs in a fresh process whose backend is set to "svg" first: a plot function that
# called matplotlib.use or created its figure through pyplot would change or open it.
SNIPPETS = {
    "demo": "from supcomp.studies.demo import plot_superposition, superposition_table\n"
    "from supcomp.utils.figures import save_figure\n"
    "rows = superposition_table(n=64, batch=64, widths=(8,), densities=(0.1,), progress=False)\n"
    "save_figure(plot_superposition(rows), OUT + '.png')",
    "uand": "from supcomp.studies.uand import error_table, plot_errors\n"
    "from supcomp.utils.figures import save_figure\n"
    "rows = error_table(40, 200, 0.3, s_values=[2, 3], batch=4, progress=False, extra_samples=0)\n"
    "save_figure(plot_errors(rows), OUT + '.pdf')",
    "figures": "from supcomp.utils.figures import new_figure, save_figure\n"
    "fig, ax = new_figure()\nax.plot([0, 1])\nsave_figure(fig, OUT + '.svg')",
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_plot_keeps_backend(name, tmp_path):
    code = (
        "import matplotlib\nmatplotlib.use('svg')\nimport matplotlib.pyplot as plt\nimport os\n"
        f"OUT = {str(tmp_path / name)!r}\n" + SNIPPETS[name] + "\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert plt.get_fignums() == [], plt.get_fignums()\n"
        "print(sorted(os.listdir(os.path.dirname(OUT))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert name in out.stdout  # the file was written


def test_save_figure_rejects_unknown_suffix(tmp_path):
    from supcomp.utils.figures import new_figure, save_figure

    fig, _ = new_figure()
    with pytest.raises(ValueError, match="path"):
        save_figure(fig, str(tmp_path / "x.jpg"))
