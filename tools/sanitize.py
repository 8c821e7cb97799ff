"""Build supcomp._C with AddressSanitizer + UndefinedBehaviorSanitizer and run the C++-touching tests under it.

    python tools/sanitize.py            # build (if sources changed) and run the default test selection
    python tools/sanitize.py -- -k cpp  # extra pytest arguments after --

The sanitized build never touches the normal one: it goes to
``build/sanitize/`` together with a copy of the Python package (``supcomp/``,
``kernels/`` as ``supcomp/kernels``) and of ``tests/``; pytest runs from there,
so ``import supcomp`` picks the copy (the current directory comes first on
sys.path) and the script checks that it did. The Python interpreter is not
instrumented, so libasan is preloaded; leak detection is off (CPython and torch
keep allocations alive until exit by design) and UBSan halts on the first
error, so any finding fails the run.

Used by ``make sanitize`` (and so by ``make test``). Add a test module to
``TESTS`` when it exercises new C++ code.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "sanitize")

# The tests that call into supcomp._C, with a selection that keeps the run short (the sanitized
# build is a few times slower). Extend this list when a module gains C++ code.
TESTS = [
    # supcomp._C called directly: every entry point with hostile arguments (SUPCOMP_FUZZ_EXAMPLES per
    # entry point, 40 by default; e.g. SUPCOMP_FUZZ_EXAMPLES=500 for a longer run)
    "tests/test_fuzz_c.py",
    "tests/ops/test_sparse_encode.py",
    "tests/ops/test_relu_readout.py",
    "tests/ops/test_relu_readout_topk.py",
    "tests/ops/test_relu_readout_topk_screen.py",
    "tests/ops/test_superpose.py",
    "tests/ops/test_tms_sample.py",
    "tests/ops/test_tms_step.py",
    "tests/test_tms_training.py",
    "tests/test_validation.py",
    "tests/test_bad_input.py",
    "tests/test_fuzz_ops.py::test_fuzz[sparse_encode-cpp]",
    "tests/test_fuzz_ops.py::test_fuzz[relu_readout-cpp]",
    "tests/test_fuzz_ops.py::test_fuzz[relu_readout_topk-cpp]",
    "tests/test_fuzz_ops.py::test_fuzz[superpose-cpp]",
    "tests/test_fuzz_modules.py::test_tms_sampler_valid_csr_and_fused_step_finite",
    # U-AND (csrc/uand.cpp): kernels against the reference, exact cases, bad gates
    "tests/ops/test_uand.py",
    "tests/test_uand_construction.py",
    # the constructions that run on the sparse_encode / readout kernels
    "tests/test_circuits.py",
    "tests/test_cc.py",
    # determinism and concurrent threads (the subprocess memory / SIGINT tests add nothing here)
    "tests/test_robustness.py::test_same_seed_bitwise_identical_and_threads_agree",
    "tests/test_robustness.py::test_concurrent_threads_match_serial",
]
DESELECT = ["-m", "not triton", "-k", "not triton"]  # the Triton interpreter never reaches C++

FLAGS = [
    "-O1",
    "-g1",  # line tables only: reports still name file and line, and the build takes a third less time than -g
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fopenmp",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-DNDEBUG",
]


def _gcc_lib(name: str) -> str:
    path = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        sys.exit(f"sanitize: {name} not found (gcc -print-file-name gave {path!r}); install gcc's libasan/libubsan")
    return path


def _sync_python():
    """Refresh the copy of the Python package and the tests (cheap; the extension is kept apart)."""
    pkg = os.path.join(OUT, "supcomp")
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.rmtree(os.path.join(OUT, "tests"), ignore_errors=True)
    for folder in ("csrc", "docs"):  # read by tests (the GIL-release check, the bad-input table)
        shutil.rmtree(os.path.join(OUT, folder), ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, folder), os.path.join(OUT, folder))
    ignore = shutil.ignore_patterns("_C*.so", "__pycache__")
    shutil.copytree(os.path.join(ROOT, "supcomp"), pkg, ignore=ignore)
    shutil.rmtree(os.path.join(pkg, "kernels"), ignore_errors=True)  # a checkout's supcomp/kernels symlink, followed
    shutil.copytree(os.path.join(ROOT, "kernels"), os.path.join(pkg, "kernels"), ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "tests"), os.path.join(OUT, "tests"), ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, f), OUT)
    return pkg


def build() -> str:
    """Compile the sanitized extension (one object per source, rebuilt only when older than its
    inputs, two at a time), link it in build/sanitize/ext/ and copy it into the package copy."""
    import pybind11

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    ext_dir = os.path.join(OUT, "ext")
    os.makedirs(ext_dir, exist_ok=True)
    built = os.path.join(ext_dir, "_C" + suffix)
    sources = sorted(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")))
    headers = glob.glob(os.path.join(ROOT, "csrc", "*.h"))
    # Rebuild everything when the flags change (recorded next to the objects), else per source.
    stamp = os.path.join(ext_dir, "flags.txt")
    if not os.path.exists(stamp) or open(stamp).read() != " ".join(FLAGS):
        for o in glob.glob(os.path.join(ext_dir, "*.o")):
            os.remove(o)
        with open(stamp, "w") as f:
            f.write(" ".join(FLAGS))
    dep_time = max(os.path.getmtime(p) for p in headers + [stamp])
    inc = [
        "-march=native",
        f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{os.path.join(ROOT, 'csrc')}",
    ]
    t0 = time.time()
    jobs, objs = [], []
    for src in sources:
        obj = os.path.join(ext_dir, os.path.basename(src)[:-4] + ".o")
        objs.append(obj)
        if os.path.exists(obj) and os.path.getmtime(obj) >= max(dep_time, os.path.getmtime(src)):
            continue
        print("sanitize: compiling", os.path.relpath(src, ROOT), flush=True)
        jobs.append(subprocess.Popen(["g++", *FLAGS, *inc, "-c", src, "-o", obj + ".tmp"]))
        if len(jobs) >= 2:
            _wait(jobs.pop(0))
    for j in jobs:
        _wait(j)
    for obj in objs:  # rename the finished objects (an interrupted compile leaves only a .tmp)
        if os.path.exists(obj + ".tmp"):
            os.replace(obj + ".tmp", obj)
    if not os.path.exists(built) or os.path.getmtime(built) < max(os.path.getmtime(o) for o in objs):
        subprocess.run(["g++", *FLAGS, *objs, "-o", built + ".tmp"], check=True)
        os.replace(built + ".tmp", built)
        print(f"sanitize: built {os.path.relpath(built, ROOT)} in {time.time() - t0:.0f} s", flush=True)
    pkg = _sync_python()
    target = os.path.join(pkg, "_C" + suffix)
    shutil.copy2(built, target)
    return target


def _wait(proc):
    if proc.wait() != 0:
        sys.exit(f"sanitize: compiler failed ({proc.args[-3]})")


def run(extra: list[str]) -> int:
    target = build()
    env = dict(os.environ)
    # libasan first (Python is not instrumented), then libstdc++: ASan's __cxa_throw interceptor
    # needs the real symbol resolvable at start-up, or the first C++ exception aborts in ASan.
    env["LD_PRELOAD"] = " ".join(
        p for p in (_gcc_lib("libasan.so"), _gcc_lib("libstdc++.so"), env.get("LD_PRELOAD", "")) if p
    )
    # Reports go to files as well as stderr: pytest captures fd 2, and a halting sanitizer ends the
    # process before pytest could show what it captured.
    logs = os.path.join(OUT, "logs")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    env["ASAN_OPTIONS"] = f"detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:log_path={logs}/asan"
    env["UBSAN_OPTIONS"] = f"halt_on_error=1:print_stacktrace=1:log_path={logs}/ubsan"
    env["SUPCOMP_SANITIZED_C"] = target
    env.setdefault(
        "SUPCOMP_HYPOTHESIS_PROFILE", "sanitize"
    )  # fewer fuzz examples: instrumented code is slower  # tests/conftest.py checks that this is the _C it imported
    tests = [t for t in TESTS if os.path.exists(os.path.join(OUT, t.split("::")[0]))]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DESELECT, *tests, *extra]
    print("sanitize:", " ".join(cmd[1:]), flush=True)
    rc = subprocess.run(cmd, cwd=OUT, env=env).returncode
    reports = sorted(glob.glob(os.path.join(logs, "*")))
    for r in reports:
        print(f"sanitize: report {os.path.relpath(r, ROOT)}:\n" + open(r, errors="replace").read(), flush=True)
    if reports and rc == 0:
        rc = 1
    print("sanitize:", "clean" if rc == 0 else f"FAILED (exit status {rc})", flush=True)
    return rc


if __name__ == "__main__":
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    sys.exit(run(extra))
