"""The reference machine: its ceilings, a description of the machine a run is on, and the context
line every RESULTS.md section starts with."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time

import torch

from supcomp.utils.timing import time_interleaved

from .load import CpuMeter

# Ceilings of the reference machine (2 cores of an AVX-512 AMD EPYC, 2 threads): "% of ceiling" is against these.
FLOP_CEILING = 190e9  # fp32 GEMM, FLOP/s
MEM_CEILING = 50e9  # memory bandwidth, bytes/s (46-56 GB/s measured)

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(BENCH_DIR)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = line.split(":", 1)[1].split()
                    return ", ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in fl)
    except OSError:
        pass
    return ""


def git() -> str:
    """Short commit of the working tree, marked when it has uncommitted changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "n/a"
    except Exception:
        return "n/a"


def probe_ceilings() -> dict:
    """This run's GEMM and copy throughput under the current load: torch.mm 2048³ and a 256 MiB copy."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    src = torch.randn(64 << 20)
    dst = torch.empty_like(src)
    t = time_interleaved({"gemm": lambda: torch.mm(a, b), "copy": lambda: dst.copy_(src)}, reps=5, warmup=1)
    return dict(
        gemm_gflops=2 * 2048**3 / t["gemm"].median / 1e9, copy_gbs=2 * src.numel() * 4 / t["copy"].median / 1e9
    )  # read + write


def machine_info(threads: int) -> dict:
    import supcomp

    return dict(
        cpu=cpu_model(),
        flags=cpu_flags(),
        cores=os.cpu_count(),
        torch=torch.__version__,
        threads=threads,
        python=platform.python_version(),
        supcomp=getattr(supcomp, "__version__", "?"),
        git=git(),
        load_start=loadavg(),
        date=utc_now(),
    )


class RunContext:
    """Started when a benchmark starts; :meth:`line` describes the run for its section."""

    def __init__(self):
        self.t0, self.load0, self.meter = time.time(), loadavg(), CpuMeter()

    def foreign(self) -> float | None:
        return self.meter.foreign()

    def line(self) -> str:
        f = self.meter.foreign()
        return (
            f"{utc_now()}, torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
            f"{self.load0} at start, {loadavg()} at end"
            + (f", other processes used {100 * f:.0f}% of the CPUs" if f is not None else "")
            + f", git {git()}, {time.time() - self.t0:.0f} s."
        )
