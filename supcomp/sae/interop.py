"""Reading and writing SAEs in the on-disk formats of SAELens and sparsify.

* SAELens (``SAE.save_model`` / ``SAE.load_from_disk``): a folder with ``cfg.json`` and
  ``sae_weights.safetensors`` holding ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``,
  ``b_dec [d_in]`` (and ``threshold [d_sae]`` for ``jumprelu``). The architectures map as
  ``topk`` <-> ``topk``, ``relu`` <-> ``standard``, ``jumprelu`` <-> ``jumprelu``; a ``batchtopk`` SAE is
  written as ``jumprelu`` with its learned inference threshold on every latent, as SAELens saves its own
  BatchTopK SAEs (supcomp's eval rule also caps the candidates at ``batch_cap * k`` per sample, so the
  two agree unless a sample has more than that many latents above the threshold). The supcomp config is
  kept in ``cfg.json``'s ``metadata.supcomp_config`` (and a JumpReLU's ``log_threshold`` in
  ``metadata.supcomp_log_threshold``), so a supcomp -> SAELens -> supcomp round trip
  gives back the same config and bit-identical weights (the dead-latent counters start again at 0).
* sparsify (``SparseCoder.save_to_disk`` / ``load_from_disk``): a folder with ``cfg.json`` (its
  ``SparseCoderConfig`` plus ``d_in``) and ``sae.safetensors`` holding ``encoder.weight [n, d]``,
  ``encoder.bias [n]``, ``W_dec [n, d]``, ``b_dec [d]``; TopK only.

Both libraries compute ``(x - b_dec) @ W_enc + b_enc`` (SAELens's layout) like supcomp; an SAELens
SAE with ``apply_b_dec_to_input = false`` is read with ``b_enc`` shifted by ``b_dec @ W_enc`` so that it
encodes the same. Neither peer library is needed to read or write these folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields

import torch

from .models import SAE, SAEConfig

__all__ = ["save_saelens", "load_saelens", "save_sparsify", "load_sparsify"]

_SAELENS_CFG, _SAELENS_WEIGHTS = "cfg.json", "sae_weights.safetensors"
_SPARSIFY_CFG, _SPARSIFY_WEIGHTS = "cfg.json", "sae.safetensors"
_ARCH = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _write_folder(path, cfg: dict, weights: dict, cfg_name: str, weights_name: str) -> str:
    from safetensors.torch import save_file

    from ..utils.files import atomic_path

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    with atomic_path(os.path.join(path, weights_name)) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, tmp)
    with atomic_path(os.path.join(path, cfg_name)) as tmp:
        with open(tmp, "w") as f:
            json.dump(cfg, f, indent=1)
    return path


def _read_folder(path, cfg_name: str, weights_name: str, who: str):
    from safetensors.torch import load_file

    path = os.fspath(path)
    cfg_file, weights_file = os.path.join(path, cfg_name), os.path.join(path, weights_name)
    for f in (cfg_file, weights_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"path: {path!r} is not a {who} SAE folder ({os.path.basename(f)} is missing)")
    with open(cfg_file) as f:
        try:
            cfg = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"path: {cfg_file!r} is not valid JSON ({e})") from e
    return cfg, load_file(weights_file)


def save_saelens(sae: SAE, path, metadata: dict | None = None) -> str:
    """Write ``sae`` as an SAELens folder (``cfg.json`` + ``sae_weights.safetensors``); returns the folder.

    Args:
        sae: a supcomp :class:`~supcomp.sae.SAE` (any kind; see the module docstring for batchtopk).
        path: the folder (created if needed; the two files are each replaced atomically).
        metadata: extra ``cfg.json`` metadata (SAELens's ``model_name``, ``hook_name``, ...).
    """
    c = sae.config
    arch = _ARCH[c.kind]
    weights = {"W_enc": sae.W_enc.T, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    if c.kind == "jumprelu":
        weights["threshold"] = sae.log_threshold.exp()
    elif c.kind == "batchtopk":
        weights["threshold"] = sae.threshold.clamp(min=0).expand(c.n)
    cfg = {
        "architecture": arch,
        "d_in": c.d,
        "d_sae": c.n,
        "dtype": _dtype_name(sae.W_dec.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {**(metadata or {}), "supcomp_config": asdict(c)},
    }
    if c.kind == "jumprelu":  # supcomp learns log(threshold); exp then log is not the identity in floating point
        cfg["metadata"]["supcomp_log_threshold"] = sae.log_threshold.detach().cpu().double().tolist()
    if arch == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=False)
    return _write_folder(path, cfg, weights, _SAELENS_CFG, _SAELENS_WEIGHTS)


def load_saelens(path, device=None) -> SAE:
    """Read an SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) as a supcomp SAE (eval mode).

    Architectures ``topk``, ``standard`` (read as ``relu``) and ``jumprelu`` (thresholds at or below 0
    act as ReLU in both libraries and are stored as 0); a folder written by :func:`save_saelens` gives
    back its original config (kind, k, training constants).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: another architecture, activation normalisation other than ``none``, ``hook_z``
            reshaping, or weights that do not fit ``d_in``/``d_sae``.
    """
    cfg, w = _read_folder(path, _SAELENS_CFG, _SAELENS_WEIGHTS, "SAELens")
    arch = cfg.get("architecture", "standard")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise ValueError(f"path: normalize_activations={cfg['normalize_activations']!r} is not supported (only 'none')")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise ValueError(f"path: reshape_activations={cfg['reshape_activations']!r} is not supported (only 'none')")
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        raise ValueError("path: rescale_acts_by_decoder_norm=true is not supported")
    d, n = int(cfg["d_in"]), int(cfg["d_sae"])
    stored = (cfg.get("metadata") or {}).get("supcomp_config")
    if stored is not None:
        names = {f.name for f in fields(SAEConfig)}
        config = SAEConfig(**{k: v for k, v in stored.items() if k in names})
        if (config.d, config.n, _ARCH[config.kind]) != (d, n, arch):
            config = None  # the folder was changed since supcomp wrote it: trust its SAELens fields
    else:
        config = None
    if config is None:
        kinds = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}
        if arch not in kinds:
            raise ValueError(f"path: SAELens architecture {arch!r} is not supported (one of {sorted(kinds)})")
        extra = {"k": int(cfg["k"])} if arch == "topk" else {"k": 1}
        config = SAEConfig(d=d, n=n, kind=kinds[arch], **extra)
    need = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    if arch == "jumprelu":
        need["threshold"] = (n,)
    for name, shape in need.items():
        if name not in w or tuple(w[name].shape) != shape:
            got = tuple(w[name].shape) if name in w else "missing"
            raise ValueError(f"path: {name} expected shape {shape} for d_in={d}, d_sae={n}, got {got}")
    dtype = w["W_dec"].dtype
    sae = SAE(config, dtype=dtype)
    b_enc = w["b_enc"]
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = (b_enc.double() + w["b_dec"].double() @ w["W_enc"].double()).to(dtype)
    with torch.no_grad():
        sae.W_enc.copy_(w["W_enc"].T)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(w["W_dec"])
        sae.b_dec.copy_(w["b_dec"])
        if config.kind == "jumprelu":
            log_t = w["threshold"].clamp(min=0).log()
            exact = (cfg.get("metadata") or {}).get("supcomp_log_threshold")
            if exact is not None and len(exact) == n:
                exact = torch.tensor(exact, dtype=torch.float64).to(dtype)
                if torch.equal(exact.exp(), w["threshold"]):  # unchanged since supcomp wrote it
                    log_t = exact
            sae.log_threshold.copy_(log_t)
        elif config.kind == "batchtopk":
            sae.threshold.copy_(w["threshold"].max())
    sae.eval()
    return sae.to(device) if device is not None else sae


def save_sparsify(sae: SAE, path) -> str:
    """Write a TopK ``sae`` as a sparsify folder (``cfg.json`` + ``sae.safetensors``); returns the folder.

    Raises:
        ValueError: ``sae`` is not of kind ``topk`` (sparsify's coders are TopK).
    """
    c = sae.config
    if c.kind != "topk":
        raise ValueError(f"sae: sparsify holds TopK SAEs only, got kind {c.kind!r}")
    weights = {"encoder.weight": sae.W_enc, "encoder.bias": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, c.n // c.d),
        "normalize_decoder": True,
        "num_latents": c.n,
        "k": c.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": c.d,
    }
    return _write_folder(path, cfg, weights, _SPARSIFY_CFG, _SPARSIFY_WEIGHTS)


def load_sparsify(path, device=None) -> SAE:
    """Read a sparsify folder (``cfg.json`` + ``sae.safetensors``) as a supcomp TopK SAE (eval mode).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a groupmax activation, a skip connection, a transcoder, or weights that do not fit
            the config.
    """
    cfg, w = _read_folder(path, _SPARSIFY_CFG, _SPARSIFY_WEIGHTS, "sparsify")
    for key, ok in (("activation", "topk"), ("skip_connection", False), ("transcode", False)):
        if cfg.get(key, ok) != ok:
            raise ValueError(f"path: sparsify {key}={cfg[key]!r} is not supported (only {ok!r})")
    d = int(cfg["d_in"])
    n = int(cfg.get("num_latents") or 0) or d * int(cfg.get("expansion_factor", 32))
    need = {"encoder.weight": (n, d), "encoder.bias": (n,), "W_dec": (n, d), "b_dec": (d,)}
    for name, shape in need.items():
        if name not in w or tuple(w[name].shape) != shape:
            got = tuple(w[name].shape) if name in w else "missing"
            raise ValueError(f"path: {name} expected shape {shape} for d_in={d}, num_latents={n}, got {got}")
    sae = SAE(SAEConfig(d=d, n=n, kind="topk", k=int(cfg.get("k", 32))), dtype=w["W_dec"].dtype)
    with torch.no_grad():
        sae.W_enc.copy_(w["encoder.weight"])
        sae.b_enc.copy_(w["encoder.bias"])
        sae.W_dec.copy_(w["W_dec"])
        sae.b_dec.copy_(w["b_dec"])
    sae.eval()
    return sae.to(device) if device is not None else sae
