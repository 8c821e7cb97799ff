"""A point's model weights beside the results table (opt-in: ``save_weights``).

With ``save_weights`` (a grid's ``save_weights = true``, ``supcomp sweep run --save-weights`` or
``run_sweep(..., save_weights=True)``) each successful point's trained tensors go to one safetensors
file, ``<table stem>.weights/<key>.safetensors`` in the table's folder, written atomically (a temporary
file renamed into place: never half a file). The file's metadata holds the point's key, experiment,
supcomp version and parameters (JSON); the row's ``weights`` column holds the file's path relative to
the table's folder. Adapters without a model (``uand``, ``circuits``) record no weights.
"""

from __future__ import annotations

import json
import os

from ..utils.files import atomic_path

__all__ = ["weights_dir", "save_point_weights", "load_weights"]


def weights_dir(table_path: str) -> str:
    """The folder of the weight files of the table at ``table_path`` (``<folder>/<stem>.weights``)."""
    folder, base = os.path.split(os.path.abspath(table_path))
    return os.path.join(folder, base.rsplit(".", 1)[0] + ".weights")


def save_point_weights(folder: str, key: str, tensors: dict, meta: dict) -> str:
    """Write ``tensors`` (``{name: tensor}``) to ``<folder>/<key>.safetensors`` atomically, with ``meta``
    (JSON-able) as the file's ``point`` metadata; returns ``<basename of folder>/<key>.safetensors``."""
    from safetensors.torch import save_file

    if not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"key: expected a hex point key, got {key!r}")
    path = os.path.join(folder, key + ".safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "supcomp.sweep.weights", "point": json.dumps(meta, default=str)})
    return os.path.join(os.path.basename(folder), key + ".safetensors")


def load_weights(table_path: str, row: dict) -> dict:
    """The tensors saved for ``row`` (a row of the table at ``table_path``), ``{name: tensor}``.

    Raises:
        ValueError: the row has no weights (the sweep ran without ``save_weights``, or the point failed).
        FileNotFoundError: the weights file is gone.
    """
    from safetensors.torch import load_file

    rel = row.get("weights")
    if not rel:
        raise ValueError(f"row: point {row.get('key')!r} has no saved weights (run the sweep with save_weights)")
    folder = os.path.dirname(os.path.abspath(table_path))
    path = os.path.abspath(os.path.join(folder, rel))
    if os.path.dirname(os.path.dirname(path)) != folder:
        raise ValueError(f"row: weights path {rel!r} points outside the table's folder")
    return load_file(path)
