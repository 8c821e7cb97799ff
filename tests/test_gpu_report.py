"""benchmarks/gpu_report.py (``make bench-gpu``): its dry run lists the whole matrix without a GPU."""

import contextlib
import io
import itertools
import os
import sys

import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _import():
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    import gpu_report
    from common import gpu_matrix

    return gpu_report, gpu_matrix


def test_dry_run_lists_the_issue_matrix():
    gpu_report, gpu_matrix = _import()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert gpu_report.main(["--matrix", "--half", "--dry-run"]) == 0
    lines = out.getvalue().splitlines()
    enc = [ln for ln in lines if ln.startswith("sparse_encode fwd") and " torch." in ln]  # the matrix rows
    want = {
        (mode, k, n, d, str(dt), dist)
        for mode, k, n, d, dt, dist in itertools.product(
            ("fwd", "fwd+bwd"),
            (32, 64, 128),
            (1 << 16, 1 << 20),
            (256, 768),
            (torch.float32, torch.bfloat16, torch.float16),
            ("uniform", "zipf"),
        )
    }
    got = set()
    for ln in enc:
        head = ln.split(":")[0].split()
        mode, size, dt = head[1], dict(kv.split("=") for kv in head[2:6]), head[7]
        got.add((mode, int(size["k"]), int(size["n"]), int(size["d"]), dt, head[6]))
        assert "embedding_bag" in ln and "sparse_csr" in ln and "supcomp" in ln
    assert want <= got
    assert any(ln.startswith("relu_readout_topk fwd") for ln in lines)
    assert any(ln.startswith("superpose fwd+bwd") for ln in lines)
    assert lines[-1].endswith("cases")


def test_gpu_report_without_cuda_says_so():
    gpu_report, _ = _import()
    if torch.cuda.is_available():
        return
    assert gpu_report.main(["--quick"]) == 2


def test_matrix_runner_builds_and_calls_every_provider():
    """The runner on CPU tensors at the quick size (the timing replaced): every provider builds and runs."""
    gpu_report, gpu_matrix = _import()
    calls = []
    rows = gpu_matrix.run_matrix(
        True,
        lambda fns: {k: calls.append(k) or 1.0 for k in fns},
        gpu_report._provider,
        {"B": 1e9},
        log=lambda m: None,
        device="cpu",
    )
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    assert {(r["mode"], r["provider"]) for r in fp32} == {
        (m, p) for m, names in gpu_matrix.PROVIDERS.items() for p in names
    }
    assert all("error" not in r and r["ms"] == 1.0 for r in fp32), [r for r in fp32 if "error" in r]
    assert len(calls) >= 2 * 7
