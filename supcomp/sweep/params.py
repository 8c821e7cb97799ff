"""Declared sweep parameters: each adapter's parameters with their type and range, checked before anything runs.

An adapter lists its parameters as ``{name: Param(...)}``. :func:`check_params` then rejects

* a name the adapter does not know, naming the closest known one (``difflib``): ``unknown parameter
  'densty' for tms; did you mean 'density'?``;
* a missing required parameter, naming the given unknown name it was probably typed as;
* a value of the wrong type or outside its range, naming the parameter: an ``int`` is an integer and
  never a bool (``2.5``, ``2.0`` and ``True`` are rejected), a ``float`` is a finite real number
  (ints are taken and stored as floats, so ``lr = 1`` and ``lr = 1.0`` are one point), a
  probability lies in its interval, a ``str`` is one of its ``choices`` when they are given.

The values come back normalised (numpy / integral numbers as ``int``, reals as ``float``), so a point's
key does not depend on how a number was spelled.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers

__all__ = ["Param", "ParamError", "check_params", "check_value", "suggest"]

_KINDS = ("int", "float", "str", "bool", "any")


class ParamError(ValueError):
    """A sweep parameter that is unknown, missing, of the wrong type or out of range (a ValueError)."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared parameter.

    Args:
        kind: ``"int"``, ``"float"``, ``"str"``, ``"bool"`` or ``"any"`` (not checked).
        low, high: the inclusive range of an ``int`` / ``float`` (None: unbounded).
        low_open, high_open: make that end of the range exclusive (``low=0, low_open=True``: positive).
        choices: the allowed values of a ``str``.
        optional: None is also accepted.
        doc: one line on what it is (shown by ``supcomp sweep init`` and the docs).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False
    doc: str = ""

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {self.kind!r}")

    def describe(self) -> str:
        """The expected value in words: ``an integer >= 1``, ``a number in (0, 1]``, ``one of 'a', 'b'``."""
        if self.kind == "str" and self.choices:
            s = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            s = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false"}.get(
                self.kind, "any value"
            )
            lo, hi = _fmt(self.low), _fmt(self.high)
            if self.low is not None and self.high is not None:
                s += f" in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
            elif self.low is not None:
                s += f" {'>' if self.low_open else '>='} {lo}"
            elif self.high is not None:
                s += f" {'<' if self.high_open else '<='} {hi}"
        return s + (" or none" if self.optional else "")


def _fmt(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}" if v is not None else ""


def suggest(name: str, known) -> str | None:
    """The known name closest to ``name`` (``difflib``, cutoff 0.6), or None."""
    m = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return m[0] if m else None


def _in_range(p: Param, v) -> bool:
    if p.low is not None and (v < p.low or (p.low_open and v == p.low)):
        return False
    if p.high is not None and (v > p.high or (p.high_open and v == p.high)):
        return False
    return True


def check_value(where: str, name: str, p: Param, v):
    """``v`` checked against ``p`` and normalised; raises :class:`ParamError` naming ``where`` and ``name``."""
    if v is None:
        if p.optional or p.kind == "any":
            return None
        raise ParamError(f"{where}: parameter {name!r}: expected {p.describe()}, got none")
    if p.kind == "any":
        return v
    bad = ParamError(f"{where}: parameter {name!r}: expected {p.describe()}, got {v!r}")
    if p.kind == "bool":
        if not isinstance(v, bool):
            raise bad
        return v
    if p.kind == "str":
        if not isinstance(v, str) or (p.choices and v not in p.choices):
            raise bad
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise bad
    if p.kind == "int":
        if not isinstance(v, numbers.Integral):
            raise bad
        v = int(v)
    else:
        v = float(v)
        if not math.isfinite(v):
            raise bad
    if not _in_range(p, v):
        raise bad
    return v


def check_params(where: str, params: dict, declared: dict, required=(), absent=()) -> dict:
    """Check a point's (or a grid's) parameters against ``declared``; returns them normalised.

    Args:
        where: what the error messages name first (the experiment, ``fixed``, ``axes.density``...).
        params: name -> value.
        declared: name -> :class:`Param`.
        required: names that must be present.
        absent: required names known to be missing elsewhere (an unknown name close to one says so).

    Raises:
        ParamError: an unknown name (with the closest declared one), a missing required one (with the
            unknown name given instead, when there is one), or a bad value (naming the parameter).
    """
    unknown = [k for k in params if k not in declared]
    missing = [k for k in required if k not in params]
    if unknown:
        k = unknown[0]
        hint = suggest(k, declared)
        more = f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""
        also = f" ({hint!r} is required and missing)" if hint in missing or hint in absent else ""
        raise ParamError(
            f"unknown parameter {k!r} for {where}"
            + (f"; did you mean {hint!r}?{also}" if hint else f"; known: {', '.join(sorted(declared))}")
            + more
        )
    if missing:
        raise ParamError(f"missing required parameter(s) {', '.join(repr(k) for k in missing)} for {where}")
    return {k: check_value(where, k, declared[k], v) for k, v in params.items()}
