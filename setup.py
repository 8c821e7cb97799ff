"""Build supcomp and its C++ extension ``supcomp._C``.

The extension is plain pybind11 over raw buffers (numpy arrays, or CPU tensors
viewed as numpy arrays), so building needs no torch.

One binary runs on every CPU of its architecture: the kernel files (csrc/*.cpp
but bindings.cpp and cpu_features.cpp) are compiled once per instruction-set
variant, and the module picks the best variant the running CPU supports when it
loads (csrc/isa.h; ``SUPCOMP_CPU_CAPABILITY`` forces one). On x86-64 the
variants are baseline (x86-64, SSE2), avx2 (x86-64-v3) and avx512 (x86-64-v4);
elsewhere one baseline variant.

Environment switches:
  SUPCOMP_NATIVE=1         one variant built with -march=native (fastest on the build machine, may not run elsewhere)
  SUPCOMP_CPU_VARIANTS=... comma-separated subset of the variants to compile (default: all; baseline is always kept)
  SUPCOMP_PORTABLE=1       the baseline variant only (same as SUPCOMP_CPU_VARIANTS=baseline)
  SUPCOMP_NO_OPENMP=1      build without OpenMP (single-threaded kernels)
  SUPCOMP_DEBUG=1          -O0 -g, assertions on
  SUPCOMP_BUILD_JOBS=N     compile N files at a time (default: the number of CPUs)
"""

import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")

# Compiled once, for the baseline: the module itself and the CPU detection that runs before any variant is chosen.
DISPATCH_SOURCES = ["csrc/bindings.cpp", "csrc/cpu_features.cpp"]
KERNEL_SOURCES = sorted(
    "csrc/" + f for f in os.listdir(CSRC) if f.endswith(".cpp") and "csrc/" + f not in DISPATCH_SOURCES
)
HEADERS = sorted("csrc/" + f for f in os.listdir(CSRC) if f.endswith(".h"))

# x86-64 variants, lowest first (the link order; see csrc/isa.h). The flag sets spell out the
# x86-64-v3 and x86-64-v4 levels, so compilers older than GCC 11 / Clang 12 take them too;
# csrc/cpu_features.cpp checks the same features at run time.
_V3 = ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe", "-mpopcnt", "-msse4.2"]
_V3 += ["-mcx16", "-msahf"]
_V4 = _V3 + ["-mavx512f", "-mavx512cd", "-mavx512bw", "-mavx512dq", "-mavx512vl"]
# avx512: auto-vectorised loops at 256 bits, as GCC's tunings for the Intel AVX-512 cores choose
# (-march=native here: -mprefer-vector-width=256); the explicit 64-byte vectors of csrc/vec.h and the
# intrinsics stay 512-bit. With -mtune=generic alone GCC vectorises at 512 bits, and the TMS step at
# n=20, m=5 measured slower than the -march=native build (benchmarks/RESULTS.md). Tuned for the
# Sunny Cove cores (Ice Lake server), the AVX-512 line most of this variant's users run; tuning
# changes scheduling only, never which instructions run.
X86_VARIANTS = {
    "baseline": ["-march=x86-64", "-mtune=generic"],
    "avx2": ["-march=x86-64", "-mtune=generic", *_V3],
    "avx512": ["-march=x86-64", "-mtune=icelake-server", *_V4, "-mprefer-vector-width=256"],
}


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _is_x86_64():
    return platform.machine().lower() in ("x86_64", "amd64")


def variants():
    """The (name, extra compiler flags) of each kernel variant this build compiles, lowest first."""
    if _flag("SUPCOMP_NATIVE"):
        return [("native", ["-march=native"])]
    if not _is_x86_64():
        return [("baseline", [])]
    wanted = os.environ.get("SUPCOMP_CPU_VARIANTS", "")
    if _flag("SUPCOMP_PORTABLE"):
        wanted = "baseline"
    names = [n.strip() for n in wanted.split(",") if n.strip()] or list(X86_VARIANTS)
    unknown = sorted(set(names) - set(X86_VARIANTS))
    if unknown:
        sys.exit(f"SUPCOMP_CPU_VARIANTS: unknown variant(s) {unknown}; choose from {list(X86_VARIANTS)}")
    return [(n, X86_VARIANTS[n]) for n in X86_VARIANTS if n in names or n == "baseline"]


def _compile_args():
    args = ["-O0", "-g"] if _flag("SUPCOMP_DEBUG") else ["-O3"]
    # sqrt without errno (never read here): lets GCC vectorise it (AdamW inside the TMS step was scalar
    # without this); the results are the same, IEEE sqrt either way.
    args.append("-fno-math-errno")
    if not _flag("SUPCOMP_NO_OPENMP") and sys.platform != "darwin":
        args.append("-fopenmp")
    return args


def _link_args():
    if not _flag("SUPCOMP_NO_OPENMP") and sys.platform != "darwin":
        return ["-fopenmp"]
    return []


class BuildVariants(build_ext):
    """pybind11's build_ext, plus the kernel files compiled once per variant (in parallel) and
    linked after the dispatch objects, lowest variant first. An object is rebuilt when it is older
    than its source or any header, or when its variant's flags changed (a stamp next to it)."""

    def build_extension(self, ext):
        if ext.name != "supcomp._C":
            return super().build_extension(ext)
        jobs, objects = [], []
        newest_header = max(os.path.getmtime(os.path.join(HERE, h)) for h in HEADERS)
        for name, flags in variants():
            # One object folder per variant in the source tree (build/objects/, git-ignored), whatever
            # build_temp the front end picks: editable installs (a fresh temporary build_temp each time),
            # wheels and in-place builds reuse each other's objects instead of compiling every variant again.
            out = os.path.join(HERE, "build", "objects", "isa_" + name)
            macros = [*ext.define_macros, ("SUPCOMP_ISA", name)]
            args = ext.extra_compile_args + flags
            stamp = os.path.join(out, "flags.txt")
            key = repr((macros, args, self.compiler.compiler_so, ext.include_dirs, sys.version))
            same_flags = os.path.exists(stamp) and open(stamp).read() == key
            for src in KERNEL_SOURCES:
                obj = self.compiler.object_filenames([src], output_dir=out)[0]
                objects.append(obj)
                fresh = same_flags and os.path.exists(obj)
                fresh = fresh and os.path.getmtime(obj) >= max(newest_header, os.path.getmtime(src))
                if self.force or not fresh:
                    jobs.append((src, out, macros, args, ext))
            os.makedirs(out, exist_ok=True)
            with open(stamp, "w") as f:
                f.write(key)
        if jobs:
            n = int(os.environ.get("SUPCOMP_BUILD_JOBS", "0")) or os.cpu_count() or 1
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(self._compile_one, jobs))
        ext.extra_objects = objects
        ext.depends = KERNEL_SOURCES + HEADERS + objects  # a rebuilt object relinks the module
        return super().build_extension(ext)

    def _compile_one(self, job):
        src, out, macros, args, ext = job
        return self.compiler.compile(
            [src], output_dir=out, macros=macros, include_dirs=ext.include_dirs, extra_postargs=args, debug=self.debug
        )[0]


_variant_names = [name for name, _ in variants()]
ext = Pybind11Extension(
    "supcomp._C",
    DISPATCH_SOURCES,
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=_compile_args(),
    extra_link_args=_link_args(),
    define_macros=([] if _flag("SUPCOMP_DEBUG") else [("NDEBUG", "1")])
    + [("SUPCOMP_WITH_" + name.upper(), "1") for name in _variant_names],
    depends=KERNEL_SOURCES + HEADERS,
)

setup(
    name="supcomp",
    version="0.1.0",
    description="Compiled kernels for computation in superposition (toy models, U-AND, circuits in superposition)",
    long_description=open(os.path.join(HERE, "README.md")).read()
    if os.path.exists(os.path.join(HERE, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The Triton kernels live in the top-level kernels/ folder of the repository
    # and ship as supcomp.kernels (a top-level "kernels" module would collide
    # with an unrelated PyPI package).
    packages=find_packages(include=["supcomp", "supcomp.*"]) + ["supcomp.kernels"],
    package_dir={"supcomp": "supcomp", "supcomp.kernels": "kernels"},
    # The sweep grids that `supcomp sweep` reads ship inside the package.
    package_data={"supcomp": ["examples/*.toml"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildVariants},
    install_requires=["torch>=2.4", "numpy>=1.24", "tqdm>=4.60", "matplotlib>=3.6", "safetensors>=0.4"],
    extras_require={
        "triton": ["triton>=3.0"],
        "ray": ["ray>=2.9", "pyarrow>=14"],
        "dev": ["pytest>=7", "pytest-benchmark>=4", "triton>=3.0"],
    },
    entry_points={"console_scripts": ["supcomp=supcomp.cli:main"]},
    zip_safe=False,
)
