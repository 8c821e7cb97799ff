"""Regenerate the bad-input table of docs/guarantees.md from tests/bad_input_table.py (the rows the tests check).

.venv/bin/python tools/update_bad_input_table.py
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("TRITON_INTERPRET", "1")

from bad_input_table import render  # noqa: E402
from test_bad_input import END, START, TABLE_DOC  # noqa: E402

NAME = os.path.relpath(TABLE_DOC, ROOT)
text = open(TABLE_DOC).read()
block = f"{START}\n{render()}\n{END}"
if START in text:
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
else:
    sys.exit(f"{NAME} has no {START} marker; add the section first")
if new != text:
    tmp = TABLE_DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, TABLE_DOC)
    print(f"{NAME}: bad-input table updated")
else:
    print(f"{NAME}: bad-input table already current")
