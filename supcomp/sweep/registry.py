"""The experiment registry: one small adapter per experiment.

An adapter is an :class:`Experiment`:

* ``name``: what a grid's ``experiment = "..."`` names.
* ``run(points) -> list[dict]``: ``points`` are full parameter dicts (the grid's fixed arguments and axis
  values over the adapter's ``defaults``) that agree on every parameter **not** in ``per_instance``;
  ``run`` trains / measures them all in one batched call and returns one dict of metrics per point, in
  order. Metric values are numbers, strings, bools or None (anything else is stored as JSON text). It
  must give each point what a call with that point alone gives (the sweep packs points into one call
  and unpacks the rows, and a rerun may pack them differently); the sweep runs a failing pack again
  point by point, so one bad point only costs its own row. Threads: the executor has already set
  ``torch.set_num_threads`` to the run's share; the supcomp kernels follow it.
* ``per_instance``: parameters that may differ inside one call (e.g. density, importance, seed).
* ``defaults``: parameters a grid may leave out (the key of a point includes them, so changing a default
  changes the keys: old rows are then not mistaken for new ones).
* ``required``: parameters a grid must give.
* ``params``: ``{name: Param}`` (:mod:`.params`), every parameter with its type and range; a grid naming
  any other parameter is refused with the closest name, and values are checked before anything runs.
  When left out, the known names are those of ``defaults``, ``required`` and ``per_instance``, unchecked.
* ``plot(rows) -> {name: Figure}``: the standard figure(s) from the results table's rows (dicts), by a
  short file-name-safe name; :func:`supcomp.sweep.plot_results` saves them.
* Weights: a metrics dict may hold ``WEIGHTS_KEY`` (``"_weights"``): ``{tensor name: tensor}`` of the
  point's trained model; the sweep stores them (safetensors, one file per point) when asked to
  (``save_weights``) and drops them otherwise.

Adding an experiment is one adapter module with an ``EXPERIMENT = Experiment(...)`` and one line in
``_BUILTIN`` below (``"uand": "supcomp.sweep.uand:EXPERIMENT"``). Adapters are found by import path so
that worker processes and Ray tasks find them too; :func:`register` takes an object (used in this
process only, i.e. the serial executor) or a ``"module:attr"`` path (found everywhere the module is
importable).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from .params import Param, check_params

#: Built-in adapters, by import path (imported on first use).
_BUILTIN = {
    "tms": "supcomp.sweep.tms:EXPERIMENT",
    "circuits": "supcomp.sweep.circuits:EXPERIMENT",
    "cc": "supcomp.sweep.cc:EXPERIMENT",
    "uand": "supcomp.sweep.uand:EXPERIMENT",
    "sae": "supcomp.sweep.sae:EXPERIMENT",
}
#: The metrics entry holding a point's model weights ({name: tensor}); never a table column.
WEIGHTS_KEY = "_weights"
_REGISTRY: dict = {}  # name -> Experiment or "module:attr", registered in this process
_LOADED: dict = {}  # name -> Experiment imported from a path


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One sweep adapter (see the module docstring for each field)."""

    name: str
    run: Callable[[list], list]
    per_instance: frozenset = frozenset()
    defaults: dict = dataclasses.field(default_factory=dict)
    required: tuple = ()
    plot: Callable | None = None
    doc: str = ""
    params: dict | None = None

    def declared(self) -> dict:
        """``{name: Param}`` of every parameter this adapter knows."""
        if self.params is not None:
            return self.params
        names = set(self.defaults) | set(self.required) | set(self.per_instance)
        return {k: Param("any") for k in names}

    def check(self, params: dict, where: str | None = None, absent=()) -> dict:
        """Some of a point's parameters checked (known names, types, ranges) and normalised; no defaults
        added, nothing required (``absent``: required names missing elsewhere, for the error message).
        Raises :class:`~supcomp.sweep.params.ParamError` (a ValueError)."""
        return check_params(where or self.name, params, self.declared(), absent=absent)

    def complete(self, params: dict) -> dict:
        """The point's parameters checked and over the defaults. Raises
        :class:`~supcomp.sweep.params.ParamError` (a ValueError) for an unknown name (naming the closest
        known one), a missing required one, or a value of the wrong type or range."""
        out = dict(self.defaults)
        out.update(check_params(self.name, params, self.declared(), self.required))
        return out


def register(name: str, experiment) -> None:
    """Register an :class:`Experiment` (or a ``"module:attr"`` path to one) under ``name``.

    Raises:
        TypeError: ``experiment`` is neither an :class:`Experiment` nor a ``"module:attr"`` string.
    """
    if not isinstance(experiment, (Experiment, str)):
        raise TypeError(f"experiment: expected an Experiment or a 'module:attr' path, got {type(experiment).__name__}")
    _REGISTRY[name] = experiment
    _LOADED.pop(name, None)


def names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get(name: str) -> Experiment:
    """The adapter registered as ``name`` (imports it on first use)."""
    ref = _REGISTRY.get(name, _BUILTIN.get(name))
    if ref is None:
        raise ValueError(f"experiment: unknown {name!r}; registered: {', '.join(names())}")
    if isinstance(ref, str):
        if name not in _LOADED:
            mod, _, attr = ref.partition(":")
            exp = getattr(importlib.import_module(mod), attr)
            if not isinstance(exp, Experiment):
                raise TypeError(f"{name}: {mod}:{attr} is not an Experiment")
            _LOADED[name] = exp
        ref = _LOADED[name]
    return ref


def path_of(name: str) -> str | None:
    """The import path of a registered adapter (what worker processes import), or None for an object
    registered in this process only."""
    ref = _REGISTRY.get(name, _BUILTIN.get(name))
    return ref if isinstance(ref, str) else None
