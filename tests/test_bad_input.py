"""Every bad-input row raises as documented on every backend, and the table in docs/guarantees.md is current."""

import os
import re

import pytest
from bad_input_table import ROWS, message, render

from supcomp.ops import use_backend

# The page that holds the generated table, between the START / END markers.
TABLE_DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "guarantees.md")
START, END = "<!-- bad-input-table:start -->", "<!-- bad-input-table:end -->"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.function}:{r.what}")
def test_bad_input_row(row):
    backends = ("reference", "cpp", "triton") if row.ops else (None,)
    seen = set()
    for backend in backends:
        with use_backend(backend), pytest.raises(row.exc) as info:
            row.call()
        text = str(info.value)
        assert row.fragment in text, f"[{backend}] message {text!r} lacks {row.fragment!r}"
        seen.add(text.splitlines()[0])
    # The same message whichever backend would run: the check happened before dispatch (or the
    # C++ check words it exactly like the Python one).
    assert len(seen) == 1, f"messages differ between backends: {seen}"


def test_table_doc_is_current():
    text = open(TABLE_DOC).read()
    m = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    assert m, f"{TABLE_DOC} lacks the {START} ... {END} block"
    assert m.group(1).strip() == render().strip(), (
        f"the bad-input table in {TABLE_DOC} is stale: run `.venv/bin/python tools/update_bad_input_table.py`"
    )


def test_every_public_op_has_rows():
    import supcomp.ops as ops

    covered = {r.function for r in ROWS}
    missing = [
        name for name in ("sparse_encode", "relu_readout", "relu_readout_topk", "superpose") if name not in covered
    ]
    assert not missing and all(hasattr(ops, f) for f in ("sparse_encode", "superpose")), missing
    assert all(message(r) for r in ROWS)
