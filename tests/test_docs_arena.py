"""Every python code block of docs/coming-from-arena.md runs as written, in order, in one namespace."""

import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "coming-from-arena.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the page's fenced python code blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_page_has_the_exercise_steps():
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 6
    text = "\n".join(blocks)
    for needed in ('init="arena"', 'optimizer="adam"', 'layout="BIn"', "to_arena", "feature_dimensionality"):
        assert needed in text, needed


def test_page_code_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import torch

    monkeypatch.chdir(tmp_path)  # the page writes its figures to the working directory
    threads = torch.get_num_threads()
    namespace = {"__name__": "coming_from_arena"}
    try:
        for i, block in enumerate(python_blocks(PAGE.read_text())):
            exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)  # the page sets one thread for its timings
    for png in ("arena_2d.png", "supcomp_2d.png", "dimensionality.png"):
        assert (tmp_path / png).stat().st_size > 0
