"""Test set-up. Without CUDA the Triton kernels run under the interpreter on
CPU tensors, which must be switched on before triton is first imported."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield


# ---- hypothesis profiles (tests/test_fuzz_ops.py and the other property tests) ----------------
# "ci" (the default): derandomized, so every run draws the same examples and CI is deterministic;
# "long": many more random examples, for deeper checks:
#     .venv/bin/python -m pytest tests/test_fuzz_ops.py --hypothesis-profile=long
# (--hypothesis-seed=N reproduces a long run). Neither keeps an example database on disk.
try:
    from hypothesis import HealthCheck, settings

    _quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile(
        "ci",
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=_quiet,
        print_blob=True,
    )
    settings.register_profile(
        "long", max_examples=2000, deadline=None, database=None, suppress_health_check=_quiet, print_blob=True
    )
    settings.register_profile(
        "sanitize",
        max_examples=30,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=_quiet,
        print_blob=True,
    )  # tools/sanitize.py
    settings.load_profile(os.environ.get("SUPCOMP_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a dev requirement; without it the fuzz modules fail at import
    pass


def pytest_terminal_summary(terminalreporter):
    """Print how many examples each fuzz test ran (the numbers quoted in the hardening report)."""
    import sys

    mod = sys.modules.get("test_fuzz_ops")
    counts = getattr(mod, "EXAMPLES", None)
    if counts:
        total = sum(counts.values())
        terminalreporter.write_line(
            "fuzz examples run: "
            + ", ".join(f"{c}/{b}={v}" for (c, b), v in sorted(counts.items()))
            + f"; total {total}"
        )
        skipped = getattr(mod, "GRAD_SKIPPED", {})
        terminalreporter.write_line(
            f"fuzz gradient checks skipped at the ReLU kink: {sum(skipped.values())} "
            f"{dict(sorted(skipped.items())) if skipped else ''}"
        )


def pytest_sessionstart(session):
    """Under ``make sanitize`` (tools/sanitize.py): make sure the sanitized supcomp._C is the one imported."""
    want = os.environ.get("SUPCOMP_SANITIZED_C")
    if want:
        from supcomp import _C

        if os.path.realpath(_C.__file__) != os.path.realpath(want):
            raise RuntimeError(f"sanitize: imported {_C.__file__}, expected the sanitized build {want}")
