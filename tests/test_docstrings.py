"""Every public name has a docstring that says what it is, its shapes and dtypes, and what it raises.

The public modules and the modules still being documented on other branches (``PENDING``) are listed in
tests/public_api.py. For each public module: it has a module docstring and ``__all__``; every name in
``__all__`` exists; and

* a function or class has a docstring whose summary is a sentence (at least three words);
* a class's public methods and properties defined in it have docstrings (an override of a documented base
  method may inherit its docstring, except ``forward``, whose docstring gives the shapes);
* a callable that takes tensors (a parameter annotated ``Tensor``, or one of the conventional tensor names
  ``W``, ``h``, ``x``, ``indices``, ``values``, ...) mentions a shape (``[B, d]`` or the word "shape") and
  a dtype;
* a callable whose own code raises mentions it ("Raises:" or the word "raise");
* the names documented under "Args:" are parameters of the signature;
* a constant (neither callable nor module) is named in the module docstring.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from tests.public_api import INTERNAL, PENDING, PUBLIC, all_modules, matches

TENSOR_NAMES = {"W", "W1", "W2", "h", "x", "y", "b", "indices", "values", "idx", "active", "a", "acts", "weights"}
SHAPE = re.compile(r"\[[^\]]*\]|\bshape")
DTYPE = re.compile(r"float|int64|int32|bool|dtype|bfloat16|integer")
ARGS_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_][\w]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w]*)*)\s*(?:\([^)]*\))?\s*:")


def _doc(obj) -> str:
    return inspect.cleandoc(getattr(obj, "__doc__", None) or "")


def _own_source(obj) -> str:
    try:
        return inspect.getsource(inspect.unwrap(obj))
    except (OSError, TypeError):
        return ""


def _raises_in(source: str) -> bool:
    """Whether the code raises itself (nested functions and docstrings count; comments do not)."""
    return any(re.match(r"\s*raise\s+\w", line) for line in source.splitlines())


def _signature(obj):
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _takes_tensors(sig) -> bool:
    if sig is None:
        return False
    for p in sig.parameters.values():
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))
        if "Tensor" in str(ann) or p.name in TENSOR_NAMES:
            return True
    return False


def _args_names(doc: str) -> list[str]:
    """The parameter names listed in the docstring's "Args:" section."""
    names, in_args, indent = [], False, None
    for line in doc.splitlines():
        if re.match(r"^(Args|Arguments|Parameters):\s*$", line.strip()) and not line.startswith(" "):
            in_args, indent = True, None
            continue
        if not in_args:
            continue
        if line.strip() and not line.startswith(" "):
            break  # the next section (or prose) at the left margin
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        if width == indent:
            m = ARGS_ITEM.match(line.strip())
            if m:
                names += [n.strip().lstrip("*") for n in m.group(1).split(",")]
    return names


def _check_callable(label: str, obj, doc: str, problems: list[str], extra_doc: str = "") -> None:
    """Shapes/dtypes, raises and documented parameter names of one function, method or class."""
    sig = _signature(obj)
    text = doc + "\n" + extra_doc
    if _takes_tensors(sig):
        if not SHAPE.search(text):
            problems.append(f"{label}: takes tensors but the docstring gives no shape ([B, d] or 'shape')")
        if not DTYPE.search(text):
            problems.append(f"{label}: takes tensors but the docstring names no dtype")
    if _raises_in(_own_source(obj)) and "raise" not in text.lower():
        problems.append(f"{label}: raises, but the docstring does not say what (a 'Raises:' section)")
    if sig is not None:
        params = {p.lstrip("*") for p in sig.parameters}
        for name in _args_names(doc):
            if name not in params:
                problems.append(f"{label}: documents parameter {name!r}, which is not in the signature {sig}")


def _check_class(label: str, cls, problems: list[str]) -> None:
    cdoc = _doc(cls)
    init = cls.__dict__.get("__init__")
    if init is not None:
        _check_callable(f"{label}.__init__", init, _doc(init), problems, extra_doc=cdoc)
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if not (inspect.isfunction(func) or isinstance(member, property)):
            continue
        own = _doc(member) if isinstance(member, property) else _doc(func)
        inherited = any(getattr(getattr(base, name, None), "__doc__", None) for base in cls.__mro__[1:])
        if len(own) < 10 and (name == "forward" or not inherited):
            problems.append(f"{label}.{name}: no docstring")
            continue
        _check_callable(f"{label}.{name}", func, own, problems, extra_doc=cdoc if name == "forward" else "")


def _problems(modname: str) -> tuple[list[str], list[str]]:
    """(problems, pending problems) of one public module."""
    problems: list[str] = []
    pending: list[str] = []
    mod = importlib.import_module(modname)
    target = pending if matches(modname, PENDING) else problems
    if len(_doc(mod)) < 40:
        target.append(f"{modname}: no module docstring")
    names = getattr(mod, "__all__", None)
    if names is None:
        target.append(f"{modname}: no __all__")
        return problems, pending
    for name in names:
        label = f"{modname}.{name}"
        if not hasattr(mod, name):
            problems.append(f"{label}: listed in __all__ but not defined")
            continue
        obj = getattr(mod, name)
        home = getattr(obj, "__module__", None) or modname
        out = pending if (matches(label, PENDING) or matches(home, PENDING) or target is pending) else problems
        if inspect.ismodule(obj):
            if len(_doc(obj)) < 40:
                out.append(f"{label}: no module docstring")
            continue
        if not (inspect.isclass(obj) or callable(obj)):
            if not re.search(rf"\b{re.escape(name)}\b", _doc(mod)):
                out.append(f"{label}: a constant that the module docstring does not name")
            continue
        doc = _doc(obj)
        summary = doc.split("\n\n")[0]
        if len(summary.split()) < 3:
            out.append(f"{label}: no docstring (or a summary under three words)")
            continue
        if inspect.isclass(obj):
            _check_class(label, obj, out)
        else:
            _check_callable(label, obj, doc, out)
    return problems, pending


def test_every_module_is_classified():
    """A module under supcomp/ is public, internal or pending, so that a new one gets a decision."""
    unclassified = [m for m in all_modules() if not (m in PUBLIC or matches(m, INTERNAL) or matches(m, PENDING))]
    assert not unclassified, f"classify these modules in tests/public_api.py (PUBLIC or INTERNAL): {unclassified}"


@pytest.mark.parametrize("modname", PUBLIC)
def test_public_names_are_documented(modname):
    problems, pending = _problems(modname)
    assert not problems, "\n".join(problems)
    if pending:
        pytest.xfail(f"PENDING in tests/public_api.py ({len(pending)} problems): " + "; ".join(pending[:5]))


def test_checker_finds_problems():
    """The checks fail on an undocumented function, a missing shape, a missing 'raises' and a stale parameter."""

    def bare(W):
        return W

    def no_shape(W):
        """Return the weights unchanged, as float32.

        Raises:
            ValueError: never.
        """
        if W is None:
            raise ValueError("W: missing")
        return W

    def stale(x, *, k):
        """Return ``x [B, d]`` (float32) and more words.

        Args:
            x: the input.
            n: a parameter that is not there.
        """
        if k < 0:
            raise ValueError("k: negative")
        return x

    found: list[str] = []
    _check_callable("bare", bare, _doc(bare), found)
    _check_callable("no_shape", no_shape, _doc(no_shape), found)
    _check_callable("stale", stale, _doc(stale), found)
    text = "\n".join(found)
    assert "bare: takes tensors but the docstring gives no shape" in text
    assert "no_shape: takes tensors but the docstring gives no shape" in text
    assert "stale: raises" in text
    assert "stale: documents parameter 'n'" in text
    assert "no_shape: raises" not in text
