"""The built extension on CPUs below this one, under qemu user-mode emulation (qemu-x86_64).

``-cpu Haswell`` (AVX2, no AVX-512) must select the avx2 variant, ``-cpu SandyBridge`` (AVX, no
AVX2; numpy needs AVX, so this is the lowest CPU the stack runs on under qemu) the baseline one;
both run ``tools/op_smoke.py --float32-only`` (forward and backward of every op against the
reference), and forcing a variant the emulated CPU lacks is an ImportError, not SIGILL. Skipped,
with the reason, where qemu-x86_64 is not installed (Debian: qemu-user) or the host is not x86-64.
About 30 s of CPU time per run (most of it importing torch under emulation).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supcomp import _C

ROOT = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-x86_64")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="qemu-x86_64 user mode needs an x86-64 host"),
    pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 is not installed (Debian/Ubuntu: apt-get install qemu-user)"),
]


def under_qemu(cpu: str, args: list[str], variant: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("SUPCOMP_CPU_CAPABILITY", None)
    if variant is not None:
        env["SUPCOMP_CPU_CAPABILITY"] = variant
    cmd = [QEMU, "-cpu", cpu, sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.parametrize("cpu,expected", [("Haswell", "avx2"), ("SandyBridge", "baseline")])
def test_ops_run_on_lower_cpus(cpu, expected):
    if expected not in _C.compiled_variants():
        pytest.skip(f"{expected} is not compiled into this build ({_C.compiled_variants()})")
    out = under_qemu(cpu, [str(ROOT / "tools" / "op_smoke.py"), "--float32-only"])  # float64 runs natively
    assert out.returncode == 0, f"qemu -cpu {cpu}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert f"variant {expected} " in out.stdout and "all ok" in out.stdout, out.stdout


def test_forcing_a_missing_variant_is_an_import_error():
    if "avx512" not in _C.compiled_variants():
        pytest.skip("avx512 is not compiled into this build")
    out = under_qemu("Haswell", ["-c", "import supcomp"], variant="avx512")
    assert out.returncode == 1, f"exit {out.returncode} (a signal is negative)\n{out.stderr[-2000:]}"
    assert "ImportError" in out.stderr and "which this CPU lacks" in out.stderr and "avx2" in out.stderr
