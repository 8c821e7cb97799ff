"""`make dist-check`: the sdist builds a wheel that stands alone.

1. ``setup.py sdist``; the archive must hold every C++ source and header, the Triton kernels, the
   sweep examples and the README.
2. ``pip wheel`` from the unpacked sdist (not from the tree: proves the sdist is complete); the wheel
   must hold ``supcomp/_C*.so``, every ``kernels/*.py`` as ``supcomp/kernels/*.py`` and every
   ``supcomp/examples/*.toml``. The tree's compiled kernel objects (``build/objects/``, one folder per
   CPU variant) are copied next to the unpacked sources when every C++ file of the sdist is
   byte-identical to the tree's, so the wheel build links them instead of compiling every variant
   again (minutes on two cores); ``--clean`` compiles everything from the sdist alone.
3. A fresh venv in a temporary folder, the wheel installed into it (``--no-deps``: torch and the
   other requirements come from the running environment through a ``.pth`` line, so nothing is
   downloaded), then, from a folder outside the tree: ``supcomp --help``, ``supcomp.build_info()``,
   ``tools/op_smoke.py`` (forward and backward of every op), the shipped examples read through
   ``importlib.resources``, and ``supcomp demo --quick`` when the demo has that switch.

    python tools/dist_check.py [--keep] [--clean]   # --keep: leave the temporary folder (printed)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(msg: str) -> None:
    print(f"dist-check: {msg}", flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    step("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def fail(msg: str) -> None:
    sys.exit(f"dist-check: FAILED: {msg}")


def expect(names: set[str], wanted: list[str], where: str) -> None:
    missing = [w for w in wanted if w not in names]
    if missing:
        fail(f"{where} lacks {missing[:8]}")


def check_sdist(tmp: Path) -> Path:
    out = tmp / "sdist"
    run([sys.executable, "setup.py", "-q", "sdist", "-d", out], cwd=ROOT, stdout=subprocess.DEVNULL)
    (archive,) = out.glob("supcomp-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(out)
    wanted = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc").glob("*.[ch]*"))]
    wanted += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "kernels").glob("*.py"))]
    wanted += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "supcomp" / "examples").glob("*.toml"))]
    wanted += ["README.md", "setup.py", "pyproject.toml", "supcomp/__init__.py"]
    expect(names, wanted, archive.name)
    step(f"sdist {archive.name}: {len(names)} files, sources, headers, kernels and examples present")
    return out / archive.name[: -len(".tar.gz")]


def reuse_objects(src: Path) -> None:
    """Copy the tree's variant objects into the unpacked sdist when its C++ sources are the tree's."""
    objects = ROOT / "build" / "objects"
    if not objects.is_dir():
        step("no compiled objects in the tree: the wheel build compiles every variant")
        return
    for f in sorted((src / "csrc").iterdir()):
        if f.read_bytes() != (ROOT / "csrc" / f.name).read_bytes():
            step(f"{f.name} differs from the tree's: the wheel build compiles every variant")
            return
    shutil.copytree(objects, src / "build" / "objects")  # copy2: mtimes kept, so the objects stay fresh
    step("sdist C++ sources identical to the tree's: reusing the tree's compiled variant objects")


def check_wheel(src: Path, tmp: Path, clean: bool = False) -> Path:
    out = tmp / "wheel"
    if not clean:
        reuse_objects(src)
    t0 = time.time()
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, src]
    run(cmd)
    (wheel,) = out.glob("supcomp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    if not any(n.startswith("supcomp/_C") and n.endswith((".so", ".pyd")) for n in names):
        fail(f"{wheel.name} has no compiled supcomp/_C")
    wanted = ["supcomp/kernels/" + p.name for p in sorted((ROOT / "kernels").glob("*.py"))]
    wanted += ["supcomp/examples/" + p.name for p in sorted((ROOT / "supcomp" / "examples").glob("*.toml"))]
    expect(names, wanted, wheel.name)
    step(f"wheel {wheel.name} built in {time.time() - t0:.0f} s: extension, kernels and examples present")
    return wheel


def check_install(wheel: Path, tmp: Path) -> None:
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # The requirements (torch, numpy, ...) from this environment, after the venv's own packages.
    # A plain path line: .pth files there (an editable supcomp) are not processed.
    (site / "zz_supcomp_dist_check_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    work = tmp / "run"  # away from the source tree
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SUPCOMP_CPU_CAPABILITY")}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    where = subprocess.check_output(
        [py, "-c", "import supcomp, sys; print(supcomp.__file__)"], cwd=work, env=env, text=True
    ).strip()
    if not where.startswith(str(venv)):
        fail(f"the venv imports supcomp from {where}, not from the installed wheel")
    run([venv / "bin" / "supcomp", "--help"], cwd=work, env=env, stdout=subprocess.DEVNULL)
    probe = (
        "import importlib.resources as r, supcomp; from supcomp.build_info import format_build_info;"
        "print(format_build_info());"
        "ex = sorted(p.name for p in r.files('supcomp').joinpath('examples').iterdir() if p.name.endswith('.toml'));"
        "assert ex, 'no shipped examples'; print('examples:', ', '.join(ex))"
    )
    run([py, "-c", probe], cwd=work, env=env)
    run([py, ROOT / "tools" / "op_smoke.py"], cwd=work, env=env)
    helptext = subprocess.check_output([venv / "bin" / "supcomp", "demo", "--help"], cwd=work, env=env, text=True)
    if "--quick" in helptext:
        run([venv / "bin" / "supcomp", "demo", "--quick", "--no-progress"], cwd=work, env=env)
    else:
        step("supcomp demo has no --quick switch: op_smoke above is the short run")


def main() -> None:
    keep = "--keep" in sys.argv[1:]
    clean = "--clean" in sys.argv[1:]
    tmp = Path(tempfile.mkdtemp(prefix="supcomp-dist-check-"))
    t0 = time.time()
    try:
        src = check_sdist(tmp)
        wheel = check_wheel(src, tmp, clean)
        check_install(wheel, tmp)
    finally:
        if keep:
            step(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    step(f"passed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
