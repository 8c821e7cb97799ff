"""Build supcomp and its C++ extension ``supcomp._C``.

The extension is plain pybind11 over raw buffers (numpy arrays, or CPU tensors
viewed as numpy arrays), so building needs no torch.

Environment switches:
  SUPCOMP_PORTABLE=1   build without -march=native (a wheel that runs on any x86-64 / aarch64)
  SUPCOMP_NO_OPENMP=1  build without OpenMP (single-threaded kernels)
  SUPCOMP_DEBUG=1      -O0 -g, assertions on
"""

import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _compile_args():
    args = ["-O0", "-g"] if _flag("SUPCOMP_DEBUG") else ["-O3"]
    # sqrt without errno (never read here): lets GCC vectorise it (AdamW inside the TMS step was scalar
    # without this); the results are the same, IEEE sqrt either way.
    args.append("-fno-math-errno")
    if not _flag("SUPCOMP_PORTABLE"):
        args.append("-march=native")
    if not _flag("SUPCOMP_NO_OPENMP") and sys.platform != "darwin":
        args.append("-fopenmp")
    return args


def _link_args():
    if not _flag("SUPCOMP_NO_OPENMP") and sys.platform != "darwin":
        return ["-fopenmp"]
    return []


sources = sorted(os.path.join("csrc", f) for f in os.listdir(os.path.join(HERE, "csrc")) if f.endswith(".cpp"))

ext = Pybind11Extension(
    "supcomp._C",
    sources,
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=_compile_args(),
    extra_link_args=_link_args(),
    define_macros=[] if _flag("SUPCOMP_DEBUG") else [("NDEBUG", "1")],
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
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    install_requires=["torch>=2.4", "numpy>=1.24", "tqdm>=4.60", "matplotlib>=3.6", "safetensors>=0.4"],
    extras_require={
        "triton": ["triton>=3.0"],
        "ray": ["ray>=2.9", "pyarrow>=14"],
        "dev": ["pytest>=7", "pytest-benchmark>=4", "triton>=3.0"],
    },
    entry_points={"console_scripts": ["supcomp=supcomp.cli:main"]},
    zip_safe=False,
)
