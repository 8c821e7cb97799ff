"""Grids: which experiment, its fixed arguments, and the axes to sweep (TOML, YAML or Python).

A grid file (TOML; YAML too when PyYAML is installed) looks like::

    experiment = "tms"          # a name in supcomp.sweep.registry
    name = "tms-phase"          # optional (default: the file's stem); names the sweep's folder
    max_instances = 256         # optional: at most this many points per packed run
    save_weights = false        # optional: keep each point's model weights beside the results

    [fixed]                     # arguments every point shares
    n_features = 2
    n_hidden = 1
    steps = 2000

    [axes]                      # the grid is the Cartesian product of the axes, in this order
    importance = {logspace = [-1, 1, 10]}    # 10 ** linspace(-1, 1, 10)
    density = {logspace = [0, -2, 10]}
    seed = [0, 1]                            # a plain list
    # also {linspace = [a, b, n]} and {range = [start, stop]} / {range = [start, stop, step]}

Generated values are rounded to 12 significant digits, so a point's key (a hash of its parameters and
the supcomp version) is the same on every machine whatever its libm; a rerun of the same grid with the
same supcomp finds the points already done.

A ``name`` is a safe file name (letters, digits, ``.``, ``_``, ``-``; not starting with ``.``; at most
100 characters): it names the sweep's folder, so anything else (``../../x``) is refused. A file's stem
used as the default name has any other character replaced by ``_``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re

from .params import suggest

#: Column names the results table uses for itself; a grid may not use them as parameter names.
RESERVED = (
    "key",
    "experiment",
    "grid",
    "status",
    "error",
    "run_s",
    "pack_s",
    "pack_size",
    "supcomp_version",
    "machine",
    "finished_at",
    "executor",
    "attempt",
    "weights",
    "nonfinite",
)
TOP_LEVEL = ("experiment", "name", "max_instances", "save_weights", "fixed", "axes")
_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def safe_name(text: str) -> str:
    """``text`` made a safe file name: characters other than letters, digits, ``.``, ``_``, ``-`` become
    ``_``, a leading ``.`` too, cut to 100 characters (``"sweep"`` if nothing is left)."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", str(text))[:100]
    s = "_" + s[1:] if s.startswith(".") else s
    return s if s.strip("_") else "sweep"


def check_name(name) -> str:
    """``name`` if it is a safe file name (see the module docstring); else ValueError with a safe spelling."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name):
        raise ValueError(
            f"name: {name!r} is not a safe file name (letters, digits, '.', '_', '-', not starting with '.', "
            f"at most 100 characters); e.g. {safe_name(name)!r}"
        )
    return name


DEFAULT_MAX_INSTANCES = 256


def _round(v: float) -> float:
    return float(f"{v:.12g}")


def expand_axis(name: str, spec) -> list:
    """An axis spec -> its list of values: a list, or ``{"logspace"|"linspace": [a, b, n]}``,
    ``{"range": [start, stop(, step)]}``."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"axes.{name}: an empty list of values")
        return list(spec)
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if kind in ("logspace", "linspace"):
            if not (isinstance(args, (list, tuple)) and len(args) == 3 and isinstance(args[2], int) and args[2] >= 1):
                raise ValueError(f"axes.{name}.{kind}: expected [start, stop, count], got {args!r}")
            a, b, n = float(args[0]), float(args[1]), args[2]
            xs = [a + (b - a) * k / (n - 1) for k in range(n)] if n > 1 else [a]
            return [_round(10.0**x) if kind == "logspace" else _round(x) for x in xs]
        if kind == "range":
            if not (isinstance(args, (list, tuple)) and len(args) in (2, 3) and all(isinstance(x, int) for x in args)):
                raise ValueError(f"axes.{name}.range: expected [start, stop] or [start, stop, step] ints, got {args!r}")
            vals = list(range(*args))
            if not vals:
                raise ValueError(f"axes.{name}.range: {args!r} is empty")
            return vals
    raise ValueError(
        f"axes.{name}: expected a list of values or one of {{logspace, linspace, range}} = [...], got {spec!r}"
    )


def point_key(experiment: str, params: dict, version: str | None = None) -> str:
    """A stable id of one configuration under one version of supcomp: the first 16 hex digits of the SHA-1
    of the canonical JSON of the experiment, the parameters and ``version`` (default: this
    ``supcomp.__version__``), so results of two versions never share a key."""
    if version is None:
        from .. import __version__ as version
    blob = json.dumps(
        {"experiment": experiment, "params": params, "supcomp_version": version},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Grid:
    """A sweep: ``experiment`` (registry name), ``fixed`` arguments, ``axes`` (name -> spec or list of values),
    ``name`` (a safe file name: names the sweep's folder, recorded in each row), ``max_instances`` (points
    per packed run, at most), ``save_weights`` (keep each point's model weights).

    Raises:
        ValueError: a bad field (naming it): an unsafe ``name``, a parameter both fixed and swept, a
            reserved column name, a bad axis spec."""

    experiment: str
    fixed: dict = dataclasses.field(default_factory=dict)
    axes: dict = dataclasses.field(default_factory=dict)
    name: str = "sweep"
    max_instances: int = DEFAULT_MAX_INSTANCES
    save_weights: bool = False

    def __post_init__(self):
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment: expected a registry name, got {self.experiment!r}")
        check_name(self.name)
        if not isinstance(self.save_weights, bool):
            raise ValueError(f"save_weights: expected true or false, got {self.save_weights!r}")
        if not isinstance(self.fixed, dict) or not isinstance(self.axes, dict):
            raise ValueError("fixed, axes: expected tables (dicts)")
        if isinstance(self.max_instances, bool) or not isinstance(self.max_instances, int) or self.max_instances < 1:
            raise ValueError(f"max_instances: expected a positive int, got {self.max_instances!r}")
        both = set(self.fixed) & set(self.axes)
        if both:
            raise ValueError(f"axes: {sorted(both)} also in fixed; a parameter is either fixed or swept")
        bad = [k for k in list(self.fixed) + list(self.axes) if k in RESERVED]
        if bad:
            raise ValueError(f"fixed/axes: {bad} are column names of the results table ({', '.join(RESERVED)})")
        self._values = {k: expand_axis(k, v) for k, v in self.axes.items()}

    def points(self) -> list[dict]:
        """Every configuration, ``[{param: value}]``, in grid order (the last axis varies fastest). Contains the
        fixed arguments and the axis values only; the experiment's defaults are added by the registry."""
        names = list(self._values)
        out = []
        for combo in itertools.product(*(self._values[k] for k in names)):
            p = dict(self.fixed)
            p.update(zip(names, combo))
            out.append(p)
        return out

    def __len__(self) -> int:
        return math.prod(len(v) for v in self._values.values())

    @classmethod
    def from_dict(cls, d: dict, name: str | None = None) -> Grid:
        """A grid from a parsed file's top-level table; ``name``: the default name (sanitised).

        Raises:
            ValueError: an unknown top-level key (the message names the closest valid one), a missing
                ``experiment``, ``fixed``/``axes`` that are not tables, or an unsafe ``name``.
        """
        unknown = [k for k in d if k not in TOP_LEVEL]
        if unknown:
            k = unknown[0]
            hint = suggest(k, TOP_LEVEL)
            raise ValueError(
                f"grid: unknown top-level key {k!r}"
                + (f"; did you mean {hint!r}?" if hint else f" (expected {', '.join(TOP_LEVEL)})")
            )
        if "experiment" not in d:
            raise ValueError("grid: missing 'experiment'")
        for k in ("fixed", "axes"):
            if not isinstance(d.get(k, {}), dict):
                raise ValueError(f"{k}: expected a table, got {d[k]!r}")
        return cls(
            experiment=d["experiment"],
            fixed=dict(d.get("fixed", {})),
            axes=dict(d.get("axes", {})),
            name=d["name"] if "name" in d else safe_name(name or "sweep"),
            max_instances=d.get("max_instances", DEFAULT_MAX_INSTANCES),
            save_weights=d.get("save_weights", False),
        )


def load_grid(path: str) -> Grid:
    """Read a grid from a ``.toml`` file (``.yaml`` / ``.yml`` when PyYAML is installed).

    Raises:
        OSError: the file cannot be read.
        ValueError: not a grid file (suffix, syntax, unknown or bad keys; naming the closest known key).
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    ext = os.path.splitext(path)[1].lower()
    if ext == ".toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            try:
                import tomli as tomllib
            except ImportError as e:
                raise ImportError("reading a TOML grid on Python < 3.11 needs the tomli package") from e
        with open(path, "rb") as f:
            try:
                d = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: not valid TOML: {e}") from None
    elif ext in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise ImportError(f"{path}: YAML grids need PyYAML (pip install pyyaml); or write the grid in TOML") from e
        with open(path) as f:
            try:
                d = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    else:
        raise ValueError(f"path: expected a .toml (or .yaml) grid file, got {path!r}")
    return Grid.from_dict(d, name=stem)
