"""RESULTS.md as Markdown sections: each starts with a "## " heading and runs to the next one.

A section is known by its title, the heading up to `` (`command`)``, so a rerun with other flags (or
from another script path) replaces the section in place instead of adding a second one.
"""

from __future__ import annotations

import os
import re


def heading(title: str, script: str, flags: str = "") -> str:
    """``## <title> (`python benchmarks/<script><flags>`)``; ``title`` without the "## "."""
    return f"## {title} (`python benchmarks/{script}{flags}`)"


def title_of(section: str) -> str:
    """The title of a section (or of its heading line): its first line up to `` (`command`)``."""
    return section.lstrip("\n").split("\n", 1)[0].split(" (`", 1)[0].rstrip()


def split_sections(text: str) -> tuple[str, list[str]]:
    """``(preamble, sections)``: the text before the first "## " heading, and each section's text."""
    parts = re.split(r"(?m)^(?=## )", text)
    preamble = parts.pop(0) if parts and not parts[0].startswith("## ") else ""
    return preamble, parts


def join_sections(preamble: str, sections: list[str]) -> str:
    blocks = [b.strip("\n") for b in [preamble, *sections] if b.strip()]
    return "\n\n".join(blocks) + "\n"


def _read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


def put_section(path: str, text: str) -> None:
    """Put the section ``text`` into ``path``: in place of the section with the same title, else at the end."""
    preamble, sections = split_sections(_read(path))
    t = title_of(text)
    for i, s in enumerate(sections):
        if title_of(s) == t:
            sections[i] = text
            break
    else:
        sections.append(text)
    with open(path, "w") as f:
        f.write(join_sections(preamble, sections))


def write_results(path: str, head: str, order: list[str], new: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    """Write ``path``: ``head`` (the preamble and the sections it owns), then the sections titled
    ``order`` (the text in ``new`` where given, else the file's own section if it has one), then the
    file's other sections as they were, less those titled in ``drop``."""
    head_pre, head_secs = split_sections(head)
    _, old = split_sections(_read(path))
    old_by = {title_of(s): s for s in old}
    owned = {title_of(s) for s in head_secs} | set(order) | set(drop)
    body = [new.get(t) or old_by[t] for t in order if t in new or t in old_by]
    rest = [s for s in old if title_of(s) not in owned]
    with open(path, "w") as f:
        f.write(join_sections(head_pre, head_secs + body + rest))
