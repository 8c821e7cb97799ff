"""The results table: one row per configuration, never losing a finished point.

Durability comes from an append-only journal of JSON lines: each finished point is one line, written
and ``fsync``-ed as its run completes (a crash can at worst tear the last line, which is ignored on
reading). With a ``.parquet`` output (needs pyarrow) the journal sits beside it as
``<stem>.journal.jsonl`` and the Parquet table is rewritten from the journal (temporary file, then
``os.replace``: never half-written) every few seconds during the sweep and at its end, also after
Ctrl-C; with a ``.jsonl`` output the journal is the table.

Rows are strict JSON (RFC 8259): a NaN or infinite value is written as ``null`` and the row's
``nonfinite`` column maps where it was to what it was (``{"loss": "nan", "hist[3]": "inf"}``; paths as
``column``, ``column[i]``, ``column.field``); rows without one have no ``nonfinite`` entry. No ``NaN`` or
``Infinity`` token is ever written, so any JSON reader takes the journal.

Reading keeps the last row of each key, so a point that failed and later succeeded appears once, as a
success. In Parquet, values that are not numbers, strings or bools (lists, dicts) are stored as JSON
text, and a column of ints and floats becomes floats.
"""

from __future__ import annotations

import json
import math
import os
import time


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        return True
    except ImportError:
        return False


def default_suffix() -> str:
    return ".parquet" if have_pyarrow() else ".jsonl"


def journal_path(path: str) -> str:
    if path.endswith(".jsonl"):
        return path
    if path.endswith(".parquet"):
        return path[: -len(".parquet")] + ".journal.jsonl"
    raise ValueError(f"out: expected a .parquet or .jsonl path, got {path!r}")


def _finite(v, path: str, flags: dict):
    if isinstance(v, float) and not math.isfinite(v):
        flags[path] = "nan" if v != v else ("inf" if v > 0 else "-inf")
        return None
    if isinstance(v, dict):
        return {k: _finite(x, f"{path}.{k}", flags) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x, f"{path}[{i}]", flags) for i, x in enumerate(v)]
    return v


def strict_row(row: dict) -> dict:
    """``row`` with every NaN / infinite float replaced by None and recorded in its ``nonfinite`` column
    (see the module docstring); a row without one comes back unchanged."""
    flags: dict = {}
    out = {k: _finite(v, k, flags) for k, v in row.items() if k != "nonfinite"}
    if flags:
        out["nonfinite"] = dict(row.get("nonfinite") or {}, **flags)
    elif row.get("nonfinite"):
        out["nonfinite"] = row["nonfinite"]
    return out


def dumps_row(row: dict) -> str:
    """One strict JSON line (no NaN / Infinity tokens) of ``row``."""
    return json.dumps(strict_row(row), separators=(",", ":"), allow_nan=False, default=str)


def _read_journal(path: str) -> list[dict]:
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, "rb") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:  # a line torn by a crash mid-write
                continue
            if isinstance(row, dict) and "key" in row:
                rows.append(row)
    return rows


def _latest(rows: list[dict]) -> list[dict]:
    by_key = {}
    for r in rows:
        by_key.pop(r["key"], None)  # keep the position of the latest write
        by_key[r["key"]] = r
    return list(by_key.values())


def _columns(rows: list[dict]) -> dict:
    """rows -> {column: values} with types Parquet can store (see the module docstring)."""
    names = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    cols = {}
    for k in names:
        vals = [r.get(k) for r in rows]
        present = [v for v in vals if v is not None]
        if all(isinstance(v, bool) for v in present):
            pass
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            if any(isinstance(v, float) for v in present):
                vals = [None if v is None else float(v) for v in vals]
        elif all(isinstance(v, str) for v in present):
            pass
        else:
            vals = [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in vals]
        cols[k] = vals
    return cols


def write_parquet(rows: list[dict], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(_columns(rows)) if rows else pa.table({})
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_results(path: str) -> list[dict]:
    """The rows of a results table (``.parquet`` or ``.jsonl``), one per configuration (the latest).
    For a Parquet table the journal beside it is read when present (it may hold points finished after
    the last rewrite).

    Raises:
        FileNotFoundError: there is no table (and no journal) at ``path``.
    """
    j = journal_path(path)
    if os.path.exists(j):
        return _latest(_read_journal(j))
    if path.endswith(".parquet") and os.path.exists(path):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise FileNotFoundError(f"results: no table at {path!r}")


class ResultStore:
    """Append-only journal (+ Parquet snapshot) at ``path``; see the module docstring."""

    def __init__(self, path: str, snapshot_every_s: float = 5.0):
        self.path = path
        self.journal = journal_path(path)
        self.parquet = path if path.endswith(".parquet") else None
        if self.parquet and not have_pyarrow():
            raise ImportError(f"out: {path!r} needs pyarrow (pip install pyarrow), or use a .jsonl path")
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.snapshot_every_s = snapshot_every_s
        self._last_snapshot = 0.0
        self._dirty = False
        self.rows = _read_journal(self.journal)
        if not self.rows and self.parquet and os.path.exists(self.parquet):  # a table without its journal
            import pyarrow.parquet as pq

            self.append(pq.read_table(self.parquet).to_pylist())

    def done_keys(self, retry_failed: bool = True, need_weights: bool = False) -> set:
        """Keys already finished (with ``retry_failed``, failed points do not count as finished; with
        ``need_weights``, successful points whose weights file is missing do not either)."""
        folder = os.path.dirname(os.path.abspath(self.path))
        out = set()
        for r in _latest(self.rows):
            if retry_failed and r.get("status") != "ok":
                continue
            if need_weights and r.get("status") == "ok":
                if not r.get("weights") or not os.path.exists(os.path.join(folder, r["weights"])):
                    continue
            out.add(r["key"])
        return out

    def versions(self) -> set:
        """The ``supcomp_version`` values of the rows already in the table."""
        return {r.get("supcomp_version") for r in self.rows}

    def append(self, rows: list[dict]) -> None:
        """Write rows to the journal and fsync before returning: after this, they survive a crash."""
        if not rows:
            return
        rows = [strict_row(r) for r in rows]
        blob = "".join(dumps_row(r) + "\n" for r in rows).encode()
        with open(self.journal, "ab") as f:
            if f.tell() > 0:  # a torn last line from a crash: start on a fresh line
                with open(self.journal, "rb") as g:
                    g.seek(-1, os.SEEK_END)
                    if g.read(1) != b"\n":
                        blob = b"\n" + blob
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(rows)
        self._dirty = True
        if time.monotonic() - self._last_snapshot >= self.snapshot_every_s:
            self.snapshot()

    def snapshot(self) -> None:
        """Rewrite the Parquet table from the journal (atomic replace); no-op for a JSONL table."""
        self._last_snapshot = time.monotonic()
        if self.parquet and (self._dirty or not os.path.exists(self.parquet)):
            write_parquet(_latest(self.rows), self.parquet)
        self._dirty = False

    def table(self) -> list[dict]:
        return _latest(self.rows)
