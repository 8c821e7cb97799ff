"""docs/coming-from-arena.md covers the ARENA exercise steps (tests/test_readme.py runs its code blocks)."""

import pathlib
import re

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
