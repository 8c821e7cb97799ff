"""Every code block of README.md runs as written, in order, in an empty folder (as a new user would run them).

* ``python`` blocks run in this process, each in a fresh namespace (tracebacks point at README lines);
* a ``toml`` block is a file to save: its first line is a comment naming it (``# tiny.toml: ...``), and it
  is written into the folder for the blocks after it;
* ``bash`` blocks run line by line under ``bash -eu`` with ``supcomp`` as ``python -m supcomp`` of this tree;
* a block may be left out only with a reason on the line before it: ``<!-- not run: REASON -->``.

The python blocks of the docs pages (docs/*.md) must run as written too: each page's blocks run in order
in a folder of their own, as from the repository root (``examples/`` is linked there); their bash and toml
blocks are shown, not run (they include the long commands).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")


@dataclass
class Block:
    path: Path
    line: int  # the first line of the code, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when the block is marked as not run

    def __str__(self):
        return f"{self.path.name}:{self.line}:{self.lang}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file that start at the left margin, with the marker before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        assert j < len(lines), f"{path.name}:{i + 1}: a code block that is never closed"
        before = lines[i - 1].strip() if i > 0 else ""
        marker = NOT_RUN.match(before)
        out.append(Block(path, i + 2, m.group(1), "\n".join(lines[i + 1 : j]), marker.group(1) if marker else None))
        i = j + 1
    return out


def run_python(block: Block, namespace: dict | None = None) -> None:
    # Leading newlines put the code at its README line numbers in tracebacks.
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    exec(code, {"__name__": "__readme__"} if namespace is None else namespace)


def run_toml(block: Block, folder: Path) -> None:
    m = re.match(r"#\s*([\w.-]+\.toml)\b", block.code)
    assert m, f"{block}: a toml block starts with a comment naming its file ('# name.toml: ...')"
    (folder / m.group(1)).write_text(block.code + "\n")


def run_bash(block: Block, folder: Path) -> None:
    script = re.sub(r"^supcomp\b", f'"{sys.executable}" -m supcomp', block.code, flags=re.M)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(["bash", "-eu", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{block} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


README_BLOCKS = code_blocks(README)


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200, "README.md is the front door: at most 200 lines"


def test_readme_has_runnable_blocks():
    langs = {b.lang for b in README_BLOCKS if b.not_run is None}
    assert {"python", "bash", "toml"} <= langs, f"the tour lost its runnable blocks: {langs}"


@pytest.mark.parametrize("block", README_BLOCKS, ids=str)
def test_readme_block_runs(block, readme_folder, monkeypatch):
    if block.not_run is not None:
        return  # marked with its reason: <!-- not run: ... -->
    monkeypatch.chdir(readme_folder)
    if block.lang == "python":
        run_python(block)
    elif block.lang == "toml":
        run_toml(block, readme_folder)
    elif block.lang == "bash":
        run_bash(block, readme_folder)
    else:
        pytest.fail(f"{block}: a '{block.lang}' block can not be run; mark it <!-- not run: REASON -->")


DOC_PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if any(b.lang == "python" for b in code_blocks(p)))


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_python_blocks_run(page, tmp_path, monkeypatch):
    # The pages' examples run from the repository root: its example grid files are where they say.
    if (ROOT / "examples").is_dir():
        (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace = {"__name__": "__docs__"}  # a page is one session: its blocks run in order, in one namespace
    try:
        for block in code_blocks(page):
            if block.lang == "python" and block.not_run is None:
                run_python(block, namespace)
    finally:
        torch.set_num_threads(threads)  # a page may set the thread count for its timings
