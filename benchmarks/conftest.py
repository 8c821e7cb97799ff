"""pytest-benchmark set-up for the ``bench_*.py`` suites.

    .venv/bin/python -m pytest benchmarks/ --benchmark-only
    SUPCOMP_BENCH_QUICK=1 .venv/bin/python -m pytest benchmarks/ --benchmark-only     # small sizes
    .venv/bin/python -m pytest benchmarks/bench_relu_readout_topk.py --benchmark-only --benchmark-min-rounds=3

Each test is one (op, provider, mode) at one size; tests of one case share a
benchmark group, so ``--benchmark-compare``, ``--benchmark-json``,
``--benchmark-histogram`` etc. work as usual. Environment:

* ``SUPCOMP_BENCH_QUICK=1``: the quick sizes of ``cases.SIZES`` (and no
  torch.compile / COO-backward peers);
* ``SUPCOMP_BENCH_THREADS`` (default 2): torch threads (supcomp follows torch).

The bench files are collected by the hook below (pytest's default file pattern
is ``test_*.py``); ``pytest tests`` never sees them.
"""
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _support import THREADS  # noqa: E402


def pytest_collect_file(file_path, parent):
    # Files named on the command line are collected by pytest itself.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    torch.set_num_threads(THREADS)
    # torch.compile's imports warn about torch.jit internals; not ours.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
