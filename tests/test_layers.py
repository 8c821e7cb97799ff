"""The package's import rules, checked on the source (every module parsed with ``ast``, none imported).

Layers, lowest first (CONTRIBUTING.md): a module may import from its own layer and the ones below.

    base     supcomp.utils.*, supcomp._C, supcomp.kernels.* (kernels/), supcomp.__version__
    ops      supcomp.ops.*, supcomp.sparse, supcomp.build_info
    nn       supcomp.nn, supcomp (the package face, supcomp/__init__.py: it imports nn, ops, sparse)
    models   supcomp.tms.*, supcomp.uand.*, supcomp.circuits.*, supcomp.cc.*, supcomp.metrics
    studies  supcomp.studies.*, supcomp.sweep.* (but supcomp.sweep.cli)
    cli      supcomp.cli, supcomp.sweep.cli, supcomp.__main__

Rules, each violation reported as ``path:line``:

(a) no module imports from a higher layer (nor a module that does not exist);
(b) no import cycles: imports anywhere in a file count (inside functions too: they run, and cycle, at
    call time);
(c) no module imports a private name (a leading underscore: a module or an attribute) owned by another
    package; ``_C`` (the compiled extension) and dunder names are public.

How an import is resolved: relative imports from the importing module's package; ``from P import n``
is an import of the module ``P.n`` when that is a module, else of ``P`` (attribute ``n``), and
``from supcomp import __version__`` is of ``supcomp.__version__`` (base). ``import a.b.c`` counts as an
import of ``a.b.c`` only (the parent packages' ``__init__`` run too, but every module runs
``supcomp/__init__.py`` that way, so it is not a dependency of the module). Literal
``importlib.import_module("supcomp...")`` calls count as imports.
"""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS = ("base", "ops", "nn", "models", "studies", "cli")
# (layer, module names: exact, or a package and everything under it with ".*"), first match wins.
LAYER_RULES = [
    ("cli", ["supcomp.cli", "supcomp.sweep.cli", "supcomp.sae_cli", "supcomp.__main__"]),
    (
        "base",
        [
            "supcomp.utils",
            "supcomp.utils.*",
            "supcomp._C",
            "supcomp.kernels",
            "supcomp.kernels.*",
            "supcomp.__version__",
        ],
    ),
    ("ops", ["supcomp.ops", "supcomp.ops.*", "supcomp.sparse", "supcomp.build_info"]),
    ("nn", ["supcomp.nn", "supcomp"]),
    (
        "models",
        [
            "supcomp.tms",
            "supcomp.tms.*",
            "supcomp.uand",
            "supcomp.uand.*",
            "supcomp.circuits",
            "supcomp.circuits.*",
            "supcomp.cc",
            "supcomp.cc.*",
            "supcomp.sae",
            "supcomp.sae.*",
            "supcomp.metrics",
        ],
    ),
    ("studies", ["supcomp.studies", "supcomp.studies.*", "supcomp.sweep", "supcomp.sweep.*"]),
]
# Modules that exist without a parsed source: the compiled extension, and the version string.
NOT_PARSED = ("supcomp._C", "supcomp.__version__")
PUBLIC_PRIVATE_NAMES = ("_C",)


def layer_of(module: str) -> str | None:
    for layer, patterns in LAYER_RULES:
        for pat in patterns:
            if module == pat or pat.endswith(".*") and module.startswith(pat[:-1]):
                return layer
    return None


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package this module belongs to (itself for a package's ``__init__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, resolved
    name: str | None  # the attribute imported from ``target``, or None for the module itself
    path: Path
    line: int


@dataclass(frozen=True)
class Violation:
    rule: str  # "upward", "cycle", "private", "unknown"
    path: str  # relative to the tree's root
    line: int
    message: str

    def __str__(self):
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def find_modules(root: Path) -> dict[str, Module]:
    """Every module of supcomp/ and of kernels/ (shipped as supcomp.kernels), by dotted name."""
    modules = {}
    for folder, prefix in ((root / "supcomp", "supcomp"), (root / "kernels", "supcomp.kernels")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join([prefix, *(parts[:-1] if is_package else parts)])
            if not all(p.isidentifier() for p in parts):
                continue  # not importable (a script, a backup file)
            modules[name] = Module(name, path, is_package)
    return modules


def _is_supcomp(name: str | None) -> bool:
    return name is not None and (name == "supcomp" or name.startswith("supcomp."))


def imports_of(module: Module, known) -> list[Import]:
    """The supcomp imports of ``module``, anywhere in its file, resolved (see the module docstring)."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [
                Import(module.name, a.name, None, module.path, node.lineno) for a in node.names if _is_supcomp(a.name)
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{module.path}:{node.lineno}: relative import beyond the top-level package")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if not _is_supcomp(target):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if a.name == "*":
                    out.append(Import(module.name, target, None, module.path, node.lineno))
                elif sub in known:  # a module (also "supcomp.__version__")
                    out.append(Import(module.name, sub, None, module.path, node.lineno))
                else:
                    out.append(Import(module.name, target, a.name, module.path, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and _is_supcomp(node.args[0].value)
        ):
            out.append(Import(module.name, node.args[0].value, None, module.path, node.lineno))
    return out


def _private(part: str) -> bool:
    return (
        part.startswith("_")
        and not (part.startswith("__") and part.endswith("__"))
        and part not in PUBLIC_PRIVATE_NAMES
    )


def _cycle_in(component: set[str], graph: dict[str, dict[str, Import]]) -> list[Import]:
    """One cycle through the strongly connected ``component``, as its edges (breadth first: a shortest one)."""
    start = min(component)
    prev = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt, edge in sorted(graph[node].items()):
            if nxt == start:
                path = [edge]
                while prev[node] is not None:
                    path.append(prev[node])
                    node = prev[node].source
                return path[::-1]
            if nxt in component and nxt not in prev:
                prev[nxt] = edge
                queue.append(nxt)
    raise AssertionError("no cycle in a strongly connected component")


def _components(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Strongly connected components (Tarjan) with a cycle: more than one module, or a self-import."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check_layers(root: Path) -> list[Violation]:
    """Every violation of rules (a), (b), (c) in the tree at ``root`` (supcomp/ and kernels/)."""
    modules = find_modules(root)
    known = set(modules) | set(NOT_PARSED)
    found = []

    def where(imp: Import) -> tuple[str, int]:
        return imp.path.relative_to(root).as_posix(), imp.line

    for name in sorted(modules):
        if layer_of(name) is None:
            found.append(
                Violation(
                    "unknown",
                    modules[name].path.relative_to(root).as_posix(),
                    1,
                    f"{name} is in no layer: add it to LAYER_RULES in tests/test_layers.py",
                )
            )
    graph: dict[str, dict[str, Import]] = {name: {} for name in known}
    for name in sorted(modules):
        mod = modules[name]
        for imp in imports_of(mod, known):
            what = imp.target + (f".{imp.name}" if imp.name else "")
            if imp.target not in known:
                found.append(Violation("unknown", *where(imp), f"{name} imports {what}: no such module"))
                continue
            src, dst = layer_of(name), layer_of(imp.target)
            if src and dst and LAYERS.index(dst) > LAYERS.index(src):
                found.append(Violation("upward", *where(imp), f"{name} ({src}) imports {what} ({dst}), a higher layer"))
            # (c): private parts of the target's path, and a private attribute, owned by another package
            parts = imp.target.split(".")
            owners = [(".".join(parts[:i]), parts[i]) for i in range(1, len(parts)) if _private(parts[i])]
            if imp.name is not None and _private(imp.name):
                target_is_module = imp.target in modules and not modules[imp.target].is_package
                owner = imp.target.rpartition(".")[0] if target_is_module else imp.target
                owners.append((owner, imp.name))
            for owner, part in owners:
                if owner != mod.package:
                    found.append(
                        Violation("private", *where(imp), f"{name} imports {what}: {part} is private to {owner}")
                    )
            if imp.target not in graph[name] or imp.line < graph[name][imp.target].line:
                graph[name][imp.target] = imp
    for comp in _components(graph):
        cycle = _cycle_in(comp, graph)
        chain = " -> ".join(f"{e.source} ({e.path.relative_to(root).as_posix()}:{e.line})" for e in cycle)
        more = f"; the cycle's component: {', '.join(sorted(comp))}" if len(comp) > len(cycle) else ""
        found.append(Violation("cycle", *where(cycle[0]), f"import cycle {chain} -> {cycle[0].source}{more}"))
    return sorted(found, key=lambda v: (v.rule, v.path, v.line, v.message))


def test_package_layers():
    """The real package: no upward import, no cycle, no private import, every module in a layer."""
    found = check_layers(ROOT)
    assert len(find_modules(ROOT)) > 50  # the tree was found
    assert not found, f"{len(found)} layering violation(s):\n" + "\n".join(map(str, found))


def _append(path: Path, text: str) -> int:
    """Append ``text`` to ``path``; the line number of its first line."""
    old = path.read_text()
    if not old.endswith("\n"):
        old += "\n"
    path.write_text(old + text)
    return old.count("\n") + 1


def test_checker_catches_planted_violations(tmp_path):
    """A copy of the tree with violations of each kind planted: each is reported at its file and line,
    and the allowed forms (``_C``, ``__version__``, private names of the same package) are not."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    shutil.copytree(ROOT / "supcomp", tmp_path / "supcomp", ignore=ignore)
    shutil.copytree(ROOT / "kernels", tmp_path / "kernels", ignore=ignore)
    before = {str(v) for v in check_layers(tmp_path)}
    pkg = tmp_path / "supcomp"
    planted = {
        # (a) upward: ops -> studies, absolute; ops -> the package face (nn) through an attribute, relative
        ("upward", "supcomp/ops/checks.py", _append(pkg / "ops/checks.py", "from supcomp.studies import demo\n")),
        ("upward", "supcomp/ops/dispatch.py", _append(pkg / "ops/dispatch.py", "from .. import sparse_encode\n")),
        # (c) a private attribute and a private module of other packages
        ("private", "supcomp/tms/model.py", _append(pkg / "tms/model.py", "from ..ops.tms_sample import _splitmix\n")),
        (
            "private",
            "supcomp/ops/relu_readout.py",
            _append(pkg / "ops/relu_readout.py", "import supcomp.kernels._utils\n"),
        ),
    }
    # (b) a cycle through an import inside a function (utils.figures imports utils.files at the top)
    cycle_line = (
        _append(
            pkg / "utils/files.py", "\n\ndef _late():\n    from .figures import save_figure\n\n    return save_figure\n"
        )
        + 3
    )
    # allowed: _C and __version__ from below, a private name of the module's own package
    allowed = {
        ("supcomp/ops/checks.py", _append(pkg / "ops/checks.py", "from .. import _C, __version__\n")),
        ("supcomp/utils/timing.py", _append(pkg / "utils/timing.py", "from supcomp import __version__\n")),
        ("supcomp/ops/superpose.py", _append(pkg / "ops/superpose.py", "from .tms_sample import _splitmix\n")),
    }
    new = [v for v in check_layers(tmp_path) if str(v) not in before]
    report = "\n".join(map(str, new))
    got = {(v.rule, v.path, v.line) for v in new}
    assert planted <= got, report
    # the planted upward imports close cycles too; the planted cycle is reported with both of its edges
    assert {(v.rule, v.path, v.line) for v in new if v.rule != "cycle"} == planted, report
    utils_cycle = [v for v in new if v.rule == "cycle" and f"supcomp/utils/files.py:{cycle_line}" in v.message]
    assert len(utils_cycle) == 1, report
    assert re.search(r"supcomp\.utils\.figures \(supcomp/utils/figures\.py:\d+\)", utils_cycle[0].message), report
    assert not any((v.path, v.line) in allowed for v in new), report
    assert all(re.match(r"supcomp/[\w/]+\.py:\d+: (upward|cycle|private): ", str(v)) for v in new), report


def test_relative_imports_resolve_like_python():
    """Relative imports, from a module and from a package's __init__, from the kernels folder too."""
    modules = find_modules(ROOT)
    known = set(modules) | set(NOT_PARSED)
    ops = {i.target for i in imports_of(modules["supcomp.ops"], known)}
    assert {"supcomp.ops.dispatch", "supcomp.ops.sparse_encode"} <= ops  # ops/__init__.py: from .x import y
    enc = {(i.target, i.name) for i in imports_of(modules["supcomp.ops.sparse_encode"], known)}
    assert ("supcomp._C", None) in enc and ("supcomp.ops.checks", None) in enc  # from .. import _C; from . import
    assert ("supcomp.kernels.sparse_encode", None) in enc  # inside a function: from ..kernels import x as y
    assert ("supcomp.ops.dispatch", "Table") in enc  # from .dispatch import Impl, Table
    step = {i.target for i in imports_of(modules["supcomp.kernels.tms_step"], known)}
    assert {"supcomp.kernels.relu_readout", "supcomp.kernels.sparse_encode"} <= step  # kernels/ is supcomp.kernels
    assert layer_of("supcomp.kernels._utils") == "base" and layer_of("supcomp.sweep.cli") == "cli"
    assert layer_of("supcomp.sweep.run") == "studies" and layer_of("supcomp") == "nn"
