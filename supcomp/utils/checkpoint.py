"""The library's one checkpoint format: a single safetensors file with its JSON metadata in the file's header.

One file is one atomic unit: it is written to a unique temporary file in the target's folder, flushed to
disk (``fsync``), renamed over the target (``os.replace``) and the folder is flushed too; a reader therefore
sees the previous checkpoint or the new one, never half of one or a mix of two runs, even when the writer
is killed at any point (tested with SIGKILL). Several processes may save into one folder at once: each
uses its own temporary name.

The header's ``__metadata__`` (strings only, as safetensors requires) holds:

* ``format``: ``FORMAT`` = ``"supcomp.checkpoint"``; ``format_version``: ``FORMAT_VERSION`` = ``"1"``;
* ``kind``: what the file holds (``"tms.ToyModel"``, ``"cc.CCModel"``, ...);
* ``supcomp_version``: the library version that wrote it;
* ``meta``: JSON with the rest (config, seed, training state: steps done, learning rate, batch size, ...);
* ``crc32``: JSON ``{tensor name: CRC-32 of its bytes}``, so a damaged file is detected on load.

A folder given as the path holds its checkpoint as ``FILE_NAME`` = ``model.safetensors``.

Loading checks all of it and raises :class:`CheckpointError` (a ``ValueError``) for a damaged, truncated,
foreign or newer-format file, and :class:`CheckpointNotFoundError` when there is no file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import struct
import zlib

import torch

from .. import __version__
from .files import atomic_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FILE_NAME",
    "Checkpoint",
    "CheckpointError",
    "CheckpointNotFoundError",
    "checkpoint_file",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "pack_values",
    "unpack_values",
    "check_model_tensors",
    "check_resumable",
]

FORMAT = "supcomp.checkpoint"
FORMAT_VERSION = 1
FILE_NAME = "model.safetensors"
_MAX_HEADER = 100 * 2**20  # a header larger than this is not one of ours (ours are kilobytes)


class CheckpointError(ValueError):
    """A file that is not a readable supcomp checkpoint: damaged, truncated, foreign (another program's
    safetensors file, or not safetensors at all), of another ``kind``, or written in a format version this
    supcomp does not read. The message names the file and what is wrong."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the path (nothing saved there yet). Also a ``FileNotFoundError``."""


@dataclasses.dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        kind: what the file holds, e.g. ``"tms.ToyModel"``.
        tensors: name -> CPU tensor (dtypes and shapes as saved).
        meta: the JSON metadata (config, seed, training state, ...).
        supcomp_version: the version of supcomp that wrote the file.
        format_version: the format version of the file.
        path: the file read.
    """

    kind: str
    tensors: dict
    meta: dict
    supcomp_version: str
    format_version: int
    path: str


def checkpoint_file(path) -> str:
    """The file a checkpoint ``path`` names: ``path`` itself when it ends in ``.safetensors``, else
    ``path/model.safetensors`` (``path`` is a folder).

    Raises:
        TypeError: ``path`` is not a str or os.PathLike of a str."""
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    return path if path.endswith(".safetensors") else os.path.join(path, FILE_NAME)


def _crc(t: torch.Tensor) -> int:
    return zlib.crc32(t.reshape(-1).view(torch.uint8).numpy())


def _fsync_dir(folder: str):
    with contextlib.suppress(OSError):  # some file systems (and Windows) cannot open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(path, kind: str, tensors: dict, meta: dict) -> str:
    """Write one checkpoint file atomically (see the module docstring) and return its path.

    Args:
        path: a ``.safetensors`` file, or a folder (the file is then ``folder/model.safetensors``).
        kind: what the file holds, checked on load (e.g. ``"tms.ToyModel"``).
        tensors: name -> tensor (any device; written from CPU copies, contiguous).
        meta: JSON-serialisable metadata (strict JSON: NaN / Inf are rejected).

    Raises:
        TypeError: a value in ``tensors`` is not a tensor. ValueError: ``meta`` is not strict JSON.
    """
    from safetensors.torch import save_file

    file = checkpoint_file(path)
    out = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{name!r}]: expected a tensor, got {type(t).__name__}")
        out[name] = t.detach().to("cpu").contiguous()
    try:
        meta_json = json.dumps(meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta: expected strict JSON (no NaN / Inf, plain types): {e}") from e
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": str(kind),
        "supcomp_version": __version__,
        "meta": meta_json,
        "crc32": json.dumps({k: _crc(v) for k, v in out.items()}, sort_keys=True),
    }
    with atomic_path(file) as tmp:
        save_file(out, tmp, metadata=header)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
    _fsync_dir(os.path.dirname(os.path.abspath(file)))  # and the rename itself
    return file


def _read_header(file: str) -> tuple[dict, int, int]:
    """(parsed header, header length, file size); raises CheckpointError / CheckpointNotFoundError."""
    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{file}: truncated ({size} bytes; not even a safetensors header length)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise CheckpointError(
                    f"{file}: header length {n} does not fit the file ({size} bytes): truncated or not safetensors"
                )
            raw = f.read(n)
    except FileNotFoundError as e:
        raise CheckpointNotFoundError(f"{file}: no checkpoint (the file does not exist)") from e
    except IsADirectoryError as e:
        raise CheckpointError(f"{file}: is a folder, not a checkpoint file") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: the safetensors header is not valid JSON (damaged or foreign file)") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: the safetensors header is not a JSON object (damaged or foreign file)")
    return header, n, size


def read_metadata(path) -> dict:
    """The header metadata of the checkpoint at ``path`` (a file or folder, see :func:`checkpoint_file`)
    without reading its tensors: a dict with ``format``, ``format_version`` (int), ``kind``,
    ``supcomp_version`` and ``meta`` (parsed JSON).

    Raises:
        CheckpointNotFoundError: no file. CheckpointError: not a supcomp checkpoint, or a newer format.
    """
    file = checkpoint_file(path)
    header, _, _ = _read_header(file)
    return _parse_metadata(file, header)


def _parse_metadata(file: str, header: dict) -> dict:
    md = header.get("__metadata__")
    if not isinstance(md, dict) or md.get("format") != FORMAT:
        found = md.get("format") if isinstance(md, dict) else None
        raise CheckpointError(
            f"{file}: not a supcomp checkpoint (format {found!r}, expected {FORMAT!r}); "
            "a foreign safetensors file, or one written by supcomp before the single-file format"
        )
    try:
        version = int(md.get("format_version", ""))
    except ValueError as e:
        raise CheckpointError(f"{file}: format_version {md.get('format_version')!r} is not an integer") from e
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: format version {version} was written by a newer supcomp ({md.get('supcomp_version')}); "
            f"this supcomp ({__version__}) reads versions up to {FORMAT_VERSION}"
        )
    if version < 1:
        raise CheckpointError(f"{file}: format version {version} is not one supcomp ever wrote")
    try:
        meta = json.loads(md.get("meta", "{}"))
        crc = json.loads(md.get("crc32", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: the metadata is not valid JSON (damaged file)") from e
    if not isinstance(meta, dict) or not isinstance(crc, dict):
        raise CheckpointError(f"{file}: the metadata is not a JSON object (damaged file)")
    return {
        "format": FORMAT,
        "format_version": version,
        "kind": md.get("kind", ""),
        "supcomp_version": md.get("supcomp_version", ""),
        "meta": meta,
        "crc32": crc,
    }


def load_checkpoint(path, kind: str | None = None, verify: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: a ``.safetensors`` file, or a folder holding ``model.safetensors``.
        kind: the expected ``kind`` (None: any).
        verify: check every tensor's CRC-32 against the header (detects damaged data, not only a damaged
            header; costs one pass over the bytes).

    Returns:
        a :class:`Checkpoint` with CPU tensors.

    Raises:
        CheckpointNotFoundError: no file at the path (nothing saved yet).
        CheckpointError: the file is damaged, truncated, foreign, of another ``kind`` or a newer format.
    """
    from safetensors import safe_open

    file = checkpoint_file(path)
    header, n, size = _read_header(file)
    md = _parse_metadata(file, header)
    if kind is not None and md["kind"] != kind:
        raise CheckpointError(f"{file}: holds a {md['kind']!r} checkpoint, expected {kind!r}")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    try:
        end = max((int(v["data_offsets"][1]) for v in entries.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"{file}: a tensor entry of the header is malformed (damaged file)") from e
    if 8 + n + end != size:
        raise CheckpointError(f"{file}: {size} bytes where the header describes {8 + n + end} (truncated or damaged)")
    if set(entries) != set(md["crc32"]):
        raise CheckpointError(f"{file}: the tensors in the file differ from those listed in its metadata (damaged)")
    tensors = {}
    try:
        with safe_open(file, framework="pt") as f:
            for name in entries:
                tensors[name] = f.get_tensor(name)
    except Exception as e:  # safetensors' own errors (SafetensorError, ...) for an inconsistent file
        raise CheckpointError(f"{file}: safetensors cannot read it ({type(e).__name__}: {e})") from e
    if verify:
        bad = [k for k, t in tensors.items() if _crc(t) != md["crc32"][k]]
        if bad:
            raise CheckpointError(f"{file}: the data of {', '.join(sorted(bad))} is damaged (CRC-32 mismatch)")
    return Checkpoint(md["kind"], tensors, md["meta"], md["supcomp_version"], md["format_version"], file)


# ---- config values that are tensors or arrays keep their type: stored as tensors, named in the JSON ----
_TENSOR = "__tensor__"


def pack_values(values: dict, tensors: dict, prefix: str) -> dict:
    """JSON-safe copy of ``values`` (e.g. a config's fields): each torch tensor or numpy array value (any
    shape and dtype) is copied into ``tensors`` (name -> tensor) as ``prefix + key`` and replaced by
    ``{"__tensor__": name, "numpy": bool}``, so that :func:`unpack_values` gives back the same types,
    shapes and dtypes (a list stays a list, a float64 tensor a float64 tensor)."""
    out = {}
    for k, v in values.items():
        is_numpy = type(v).__module__ == "numpy" and hasattr(v, "dtype") and hasattr(v, "shape")
        if isinstance(v, torch.Tensor) or is_numpy:
            name = prefix + k
            tensors[name] = torch.as_tensor(v).detach().cpu().clone()
            out[k] = {_TENSOR: name, "numpy": bool(is_numpy)}
        else:
            out[k] = v
    return out


def unpack_values(values: dict, tensors: dict) -> dict:
    """The inverse of :func:`pack_values`: the named tensors (any shape and dtype) are removed from
    ``tensors`` and put back as values (numpy arrays where they were numpy).

    Raises:
        CheckpointError: a named tensor is missing."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict) and _TENSOR in v:
            name = v[_TENSOR]
            if name not in tensors:
                raise CheckpointError(f"the checkpoint names tensor {name!r} for {k!r} but does not hold it")
            t = tensors.pop(name)
            out[k] = t.numpy() if v.get("numpy") else t
        else:
            out[k] = v
    return out


def check_model_tensors(tensors: dict, expected: dict, n_instances: int, what: str, source: str):
    """Split a model checkpoint's tensors into weights and loss log and check them against its config.

    Args:
        tensors: name -> tensor as stored (weights plus the optional ``loss_history [steps, I]`` float and
            ``loss_steps [steps]`` int64).
        expected: weight name -> the shape the config implies.
        n_instances: I, the instance count of the config.
        what: the model, for messages (``"'relu_output' ToyModel"``).
        source: the file, for messages.

    Returns:
        ``(weights, loss_history, loss_steps)``; the weights share one floating dtype.

    Raises:
        CheckpointError: a weight is missing or extra, has another shape than the config implies, the
            weights' dtypes differ or are not floating point, or the loss log does not fit.
    """
    weights = dict(tensors)
    history = weights.pop("loss_history", torch.zeros(0, n_instances))
    steps = weights.pop("loss_steps", torch.zeros(0, dtype=torch.int64))
    if set(weights) != set(expected):
        raise CheckpointError(f"{source}: tensors {sorted(weights)} do not fit a {what} (expected {sorted(expected)})")
    for k, shape in expected.items():
        if tuple(weights[k].shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {k} has shape {list(weights[k].shape)}, the config implies {list(shape)}"
            )
    dtypes = {t.dtype for t in weights.values()}
    if len(dtypes) > 1 or not all(d.is_floating_point for d in dtypes):
        raise CheckpointError(f"{source}: the weights' dtypes differ or are not floating point")
    if history.dim() != 2 or history.shape[1] != n_instances or steps.shape != (history.shape[0],):
        raise CheckpointError(f"{source}: loss_history / loss_steps have shapes that do not fit the config")
    return weights, history, steps


def check_resumable(model, config, hparams: dict) -> dict:
    """The training state of ``model`` (a loaded model), after checking that a run with ``config`` and
    ``hparams`` (name -> value) may continue it.

    Raises:
        ValueError: the model carries no training state, or was trained with another config or other
            hyperparameters (named in the message).
    """
    state = model.training_state
    if not state or "steps_done" not in state:
        raise ValueError("resume_from: the model carries no training state (it was not saved by train())")
    if model.config.to_dict() != config.to_dict():
        raise ValueError(f"resume_from: saved with config {model.config.to_dict()}, this call has {config.to_dict()}")
    differ = [f"{k}={state.get(k)!r} (this call: {v!r})" for k, v in hparams.items() if state.get(k) != v]
    if differ:
        raise ValueError("resume_from: the checkpoint was trained with " + ", ".join(differ))
    return state
