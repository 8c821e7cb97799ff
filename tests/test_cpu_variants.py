"""The CPU kernel variants of ``supcomp._C`` (csrc/isa.h): selection, forcing, per-variant op checks,
the isolation of the variants in the binary, and the portable (non-x86) source path.

Every variant this CPU runs is checked on one machine: ``tools/op_smoke.py`` (forward and backward of
every op against the reference) and the op tests of ``tests/ops`` run in a subprocess with
``SUPCOMP_CPU_CAPABILITY`` forcing the variant. Variants the CPU lacks are covered under qemu
(tests/test_qemu.py).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import supcomp
from supcomp import _C
from supcomp.build_info import format_build_info

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tools" / "op_smoke.py"
X86_VARIANTS = ("baseline", "avx2", "avx512")


def run_python(args, variant=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SUPCOMP_CPU_CAPABILITY", None)
    if variant is not None:
        env["SUPCOMP_CPU_CAPABILITY"] = variant
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_build_info_names_the_selected_variant():
    info = supcomp.build_info()
    assert info["cpu_variant"] == _C.cpu_variant()
    assert info["cpu_variant"] in info["cpu_variants_supported"]
    assert set(info["cpu_variants_supported"]) <= set(info["cpu_variants_compiled"])
    assert info["compiler"].split()[0] in ("GCC", "Clang")
    assert info["openmp_threads"] >= 1 and isinstance(info["triton_usable"], bool)
    assert isinstance(info["cuda_usable"], bool)
    text = format_build_info(info)
    assert "cpu_variant" in text and info["cpu_variant"] in text


def test_default_is_the_best_supported_variant():
    out = run_python(["-c", "from supcomp import _C; print(_C.cpu_variant(), _C.supported_variants()[-1])"])
    assert out.returncode == 0, out.stderr
    chosen, best = out.stdout.split()
    assert chosen == best


@pytest.mark.parametrize("variant", X86_VARIANTS)
def test_forced_variant_runs_every_op(variant):
    if variant not in _C.compiled_variants():
        pytest.skip(f"{variant} is not compiled into this build ({_C.compiled_variants()})")
    if variant not in _C.supported_variants():
        pytest.skip(f"this CPU does not run {variant}; tests/test_qemu.py covers lower CPUs")
    out = run_python([str(SMOKE)], variant=variant)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"variant {variant} " in out.stdout and "all ok" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("variant", X86_VARIANTS)
def test_op_tests_per_variant(variant):
    """tests/ops (C++ cases) under each forced variant but the default (the main run covers that one)."""
    if variant not in _C.supported_variants():
        pytest.skip(f"{variant} is not compiled in or this CPU does not run it")
    if variant == _C.supported_variants()[-1] and not os.environ.get("SUPCOMP_CPU_CAPABILITY"):
        pytest.skip(f"{variant} is the default variant: the main test run covers it")
    args = ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not triton", "tests/ops"]
    out = run_python(args, variant=variant, timeout=1200)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


@pytest.mark.parametrize("value", ["avx9", "sse2"])
def test_unknown_variant_is_a_clear_import_error(value):
    out = run_python(["-c", "import supcomp"], variant=value)
    assert out.returncode == 1  # an exception, not a signal
    assert "ImportError" in out.stderr and f"SUPCOMP_CPU_CAPABILITY={value}" in out.stderr
    assert "compiled:" in out.stderr


def test_forcing_is_case_insensitive_and_auto_means_default():
    out = run_python(["-c", "from supcomp import _C; print(_C.cpu_variant())"], variant="Auto")
    assert out.returncode == 0 and out.stdout.split() == [_C.supported_variants()[-1]]
    low = _C.supported_variants()[0]
    out = run_python(["-c", "from supcomp import _C; print(_C.cpu_variant())"], variant=low.upper())
    assert out.returncode == 0 and out.stdout.split() == [low]


# --- the binary: code compiled for a variant is reached only through that variant -----------------

# AVX-512 code: 512-bit or EVEX-only registers, or EVEX-only instructions.
AVX512_RE = re.compile(
    r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2\d|3[01])\b|\b(vpternlog|vmovdq[au](8|16|32|64)|v?p?compress|v?p?expand|"
    r"vperm[it]2|vpmullq|vpsraq|vpabsq|vpro[lr]|vp(max|min)[su]q|vcvtu?qq|vcvtus|vpconflict|vplzcnt|"
    r"vrcp14|vrsqrt14|vscalef|vgetexp|vgetmant|vrndscale|vpmov[qdw][bwd]?\b|vptestn?m|vfpclass|vpcmpu?[bwdq]\b)"
)
# Anything beyond x86-64 SSE2 (a whole mnemonic): VEX/EVEX instructions (AVX and up), BMI, LZCNT,
# POPCNT, MOVBE, SSE3 to SSE4.2.
ABOVE_BASELINE_RE = re.compile(
    r"^\s*[0-9a-f]+:\s+(v[a-z0-9]+|andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|tzcnt|"
    r"popcnt|movbe|pshufb|ptest|pblend[a-z]*|blendv[a-z]*|pmov[sz]x[a-z]*|pmulld|pmaxs[bd]|pmins[bd]|pmaxu[wd]|"
    r"pminu[wd]|pcmpeqq|pcmpgtq|round[sp][sd]|insertps|extractps|dpp[sd]|phadd[a-z]*|phsub[a-z]*|palignr|"
    r"pabs[bwd]|psign[bwd]|hadd[a-z]*|hsub[a-z]*|addsub[a-z]*|movddup|movs[hl]dup|lddqu|pextr[bdq]|pinsr[bdq]|"
    r"crc32[a-z]*)\s",
    re.M,
)


def shared_functions_of(path: Path):
    """(demangled name, body) of every function in the shared object that can be shared between
    translation units: all but static functions and GCC's ``.constprop`` / ``.isra`` / ``.part`` / ``.cold`` clones, which
    are local to the translation unit that made them and called from it alone. (In the linked object
    every hidden symbol is local, so the binding cannot tell them apart.)"""
    dis = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", "-j", ".text", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    functions = []
    for block in dis.split("\n\n"):
        m = re.match(r"[0-9a-f]+ <(.*)>:\n", block)
        if m and "[clone ." not in m.group(1):
            functions.append((m.group(1), block[m.end() :]))
    # A name defined more than once is a static function of a header, one copy per translation unit
    # (each called from its own); a shared inline function (COMDAT) is kept once.
    copies = collections.Counter(name for name, _ in functions)
    return [(name, body) for name, body in functions if copies[name] == 1]


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_variant_code_stays_in_its_variant():
    """Shared inline code (pybind11, the standard library, common.h) compiled into several variants
    keeps a copy that every caller can run (the link order of csrc/isa.h); kernel code of a variant
    lives in its own namespace."""
    if not set(X86_VARIANTS) <= set(_C.compiled_variants()):
        pytest.skip(f"a multi-variant x86-64 build only (this one: {_C.compiled_variants()})")
    leaks, bodies = [], {}
    for name, body in shared_functions_of(Path(_C.__file__)):
        bodies[name] = body
        if "isa_avx512" in name:
            continue
        if AVX512_RE.search(body):
            leaks.append(("AVX-512", name))
        elif "isa_avx2" not in name and ABOVE_BASELINE_RE.search(body):
            leaks.append(("above baseline", name, ABOVE_BASELINE_RE.search(body).group(0).strip()))
    assert not leaks, f"{len(leaks)} shared functions use instructions above their variant: {leaks[:10]}"
    # the check can fail: it sees the shared pybind11 code, and the variants' own entry points
    assert sum("pybind11::" in n for n in bodies) > 50
    for variant in X86_VARIANTS:
        assert any(f"isa_{variant}::" in n for n in bodies), f"no shared function of the {variant} variant"


# --- the portable source path ----------------------------------------------------------------------

KERNEL_SOURCES = sorted(p for p in (ROOT / "csrc").glob("*.cpp") if p.name not in ("bindings.cpp", "cpu_features.cpp"))


def _includes():
    import pybind11

    return ["-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"], "-I", str(ROOT / "csrc")]


@pytest.mark.parametrize("src", KERNEL_SOURCES, ids=lambda p: p.name)
def test_baseline_sources_reach_no_intrinsic_header(src):
    """The baseline variant (the path non-x86 builds take) includes no x86 intrinsic header: every
    intrinsic sits behind a feature macro (csrc/isa.h). The build compiles this path with
    -march=x86-64; here the preprocessor lists every header it reaches."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cmd = [cxx, "-std=c++17", "-E", "-H", "-march=x86-64", "-fopenmp", "-DSUPCOMP_ISA=baseline", *_includes(), str(src)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    headers = [line.lstrip(". ") for line in out.stderr.splitlines() if line.startswith(".")]
    assert headers, "the -H header list is empty: the check would pass vacuously"
    intrin = [h for h in headers if re.search(r"(imm|xmm|emm|pmm|tmm|smm|nmm|wmm|ammintrin|[a-z0-9]+intrin)\.h$", h)]
    assert not intrin, f"{src.name} reaches intrinsic headers in the baseline variant: {intrin[:5]}"


@pytest.mark.parametrize("src", KERNEL_SOURCES, ids=lambda p: p.name)
def test_sources_compile_for_aarch64(src):
    """Syntax and template check of each kernel file for aarch64 with the cross compiler, when installed
    (Debian: g++-aarch64-linux-gnu)."""
    cxx = shutil.which("aarch64-linux-gnu-g++")
    if cxx is None:
        pytest.skip(
            "aarch64-linux-gnu-g++ is not installed; test_baseline_sources_reach_no_intrinsic_header covers the path"
        )
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-O2", "-fopenmp", "-DSUPCOMP_ISA=baseline", *_includes(), str(src)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
