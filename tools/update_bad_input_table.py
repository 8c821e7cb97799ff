"""Regenerate the README's bad-input table from tests/bad_input_table.py (the rows the tests check).

    .venv/bin/python tools/update_bad_input_table.py
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("TRITON_INTERPRET", "1")

from bad_input_table import render  # noqa: E402
from test_bad_input import END, README, START  # noqa: E402

text = open(README).read()
block = f"{START}\n{render()}\n{END}"
if START in text:
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
else:
    sys.exit(f"README.md has no {START} marker; add the section first")
if new != text:
    tmp = README + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, README)
    print("README.md: bad-input table updated")
else:
    print("README.md: bad-input table already current")
