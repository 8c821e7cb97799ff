"""Converters between supcomp's toy models and ARENA's / the TMS notebook's parameter layouts.

The three codes hold the same numbers in different places:

| | supcomp ``ToyModel`` | the TMS notebook ``Model`` | ARENA ``ToyModel`` |
|---|---|---|---|
| encoder | ``W [I, n, m]`` | ``W [I, n, m]`` | ``W [I, m, n]`` |
| untied read-out (``kind="abs"``) | ``W_out [I, n, m]`` | (none) | ``W2 [I, n, m]`` (with ``W1 [I, m, n]``) |
| output bias | ``b [I, n]`` | ``b_final [I, n]`` | ``b_final [I, n]`` |

(n features, m hidden, I instances.) ``to_arena`` / ``to_notebook`` return a dict of tensors under the
reference's names and layout (a ``load_state_dict`` away from the reference's model); ``from_arena`` /
``from_notebook`` build a :class:`~supcomp.tms.ToyModel` from such a dict or from the reference's model
itself. The round trips are exact (values are copied, never recomputed). ``config_from_arena`` /
``config_from_notebook`` read the sizes and the ``feature_probability`` / ``importance`` a reference model
holds into a :class:`~supcomp.tms.ToyModelConfig` (both broadcast against ``[I, n]`` by torch's rules, as
in supcomp).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .config import ToyModelConfig
from .model import ToyModel

__all__ = [
    "REFERENCES",
    "to_arena",
    "from_arena",
    "to_notebook",
    "from_notebook",
    "config_from_arena",
    "config_from_notebook",
]

REFERENCES = ("arena", "notebook")


def _names(reference: str, kind: str) -> dict[str, tuple[str, bool]]:
    """supcomp parameter -> (the reference's name, whether it is stored transposed there)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference: expected one of {REFERENCES}, got {reference!r}")
    if reference == "notebook":
        if kind == "abs":
            raise ValueError("kind: the TMS notebook has no untied ('abs') model to convert to or from")
        return {"W": ("W", False), "b": ("b_final", False)}
    if kind == "abs":  # ARENA's computation model: W1 [I, m, n], W2 [I, n, m]
        return {"W": ("W1", True), "W_out": ("W2", False), "b": ("b_final", False)}
    return {"W": ("W", True), "b": ("b_final", False)}


def _get(src, name: str) -> torch.Tensor:
    value = src.get(name) if isinstance(src, Mapping) else getattr(src, name, None)
    if value is None:
        raise ValueError(f"params: expected a tensor {name!r} (a state dict or the reference's model), found none")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"params: {name!r} must be a tensor, got {type(value).__name__}")
    return value.detach()


def _to_reference(model: ToyModel, reference: str) -> dict[str, torch.Tensor]:
    out = {}
    for ours, (theirs, transposed) in _names(reference, model.config.kind).items():
        t = getattr(model, ours).detach()
        out[theirs] = (t.transpose(1, 2) if transposed else t).contiguous().clone()
    return out


def _from_reference(params, config: ToyModelConfig, reference: str, dtype=None, device=None) -> ToyModel:
    if not isinstance(config, ToyModelConfig):
        raise TypeError(f"config: expected a ToyModelConfig, got {type(config).__name__}")
    I, n, m = config.n_instances, config.n_features, config.n_hidden
    tensors = {}
    for ours, (theirs, transposed) in _names(reference, config.kind).items():
        t = _get(params, theirs)
        want = [I, n] if ours == "b" else ([I, m, n] if transposed else [I, n, m])
        if list(t.shape) != want:
            raise ValueError(
                f"params: {reference}'s {theirs!r} must be {want} for this config (I={I}, n={n}, m={m}), "
                f"got {list(t.shape)}"
            )
        tensors[ours] = t.transpose(1, 2) if transposed else t
    dtype = dtype if dtype is not None else tensors["W"].dtype
    device = device if device is not None else tensors["W"].device
    model = ToyModel(config, device=device, dtype=dtype)
    with torch.no_grad():
        for ours, t in tensors.items():
            getattr(model, ours).copy_(t)
    return model


def to_arena(model: ToyModel) -> dict[str, torch.Tensor]:
    """ARENA's parameters of ``model``: ``{"W": [I, m, n], "b_final": [I, n]}``; for ``kind="abs"``
    ARENA's computation model's ``{"W1": [I, m, n], "W2": [I, n, m], "b_final": [I, n]}``. Copies, in
    the model's dtype and device.
    """
    return _to_reference(model, "arena")


def from_arena(params, config: ToyModelConfig, dtype=None, device=None) -> ToyModel:
    """A :class:`ToyModel` holding ARENA's parameters ``params`` (a dict / state dict, or ARENA's model).

    ``config`` gives the sizes and the kind (:func:`config_from_arena` reads one off ARENA's model);
    ``dtype`` / ``device`` default to those of ``params``' W.

    Raises:
        ValueError: a parameter is missing or its shape does not match ``config``.
        TypeError: ``config`` is not a ToyModelConfig, or a parameter is not a tensor.
    """
    return _from_reference(params, config, "arena", dtype, device)


def to_notebook(model: ToyModel) -> dict[str, torch.Tensor]:
    """The TMS notebook's parameters of ``model``: ``{"W": [I, n, m], "b_final": [I, n]}`` (copies).

    Raises:
        ValueError: ``model`` is untied (``kind="abs"``), which the notebook has no model for.
    """
    return _to_reference(model, "notebook")


def from_notebook(params, config: ToyModelConfig, dtype=None, device=None) -> ToyModel:
    """A :class:`ToyModel` holding the TMS notebook's parameters ``params`` (a dict, or the notebook's
    model); arguments and errors as :func:`from_arena`."""
    return _from_reference(params, config, "notebook", dtype, device)


def _config_from(src, reference: str, kind: str, **overrides) -> ToyModelConfig:
    if reference == "arena" and kind == "abs":
        W = _get(src, "W1")  # [I, m, n]
        I, m, n = W.shape
    else:
        W = _get(src, "W")
        if W.dim() != 3:
            raise ValueError(f"params: expected a 3-D 'W', got shape {list(W.shape)}")
        I, a, b = W.shape
        m, n = (a, b) if reference == "arena" else (b, a)
    args = dict(n_features=int(n), n_hidden=int(m), n_instances=int(I), kind=kind)
    for name in ("feature_probability", "importance"):
        v = src.get(name) if isinstance(src, Mapping) else getattr(src, name, None)
        if v is not None:
            args[name] = torch.as_tensor(v).detach().to("cpu", torch.float64)
    args.update(overrides)
    return ToyModelConfig(**args)


def config_from_arena(src, kind: str = "relu_output", **overrides) -> ToyModelConfig:
    """The config of ARENA's model ``src`` (or a dict): sizes from its W (``W1`` for ``kind="abs"``), its
    ``feature_probability`` and ``importance`` where it has them; ``overrides`` set any other field
    (e.g. ``init="arena"``). ARENA's ``ToyModel`` is ``kind="relu_output"``, its ``NeuronModel``
    ``"relu_hidden"``, its ``NeuronComputationModel`` ``"abs"``.

    Raises:
        ValueError: W is missing or not 3-D; the values do not make a valid config.
    """
    return _config_from(src, "arena", kind, **overrides)


def config_from_notebook(src, kind: str = "relu_output", **overrides) -> ToyModelConfig:
    """The config of the TMS notebook's model ``src`` (or a dict); as :func:`config_from_arena`."""
    return _config_from(src, "notebook", kind, **overrides)
