"""SAELens's on-disk format: ``cfg.json`` + ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``, and ``threshold`` for JumpReLU), so an SAE trained here opens with SAELens's
``SAE.load_from_disk`` and one saved by SAELens loads here.

Architectures: ``topk`` <-> SAELens ``topk``; ``relu`` <-> ``standard``; ``jumprelu`` <-> ``jumprelu``;
``batchtopk`` is written as a ``jumprelu`` SAE whose every threshold is the learned batch threshold
(BatchTopK's inference rule, as SAELens stores its BatchTopK SAEs).
"""

from __future__ import annotations

import json
import os

import torch

from .models import SAE, SAEConfig

__all__ = ["save_saelens", "load_saelens"]

_ARCH = {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}


def save_saelens(sae: SAE, path: str):
    """Write ``sae`` to the folder ``path`` in SAELens's format (``cfg.json``, ``sae_weights.safetensors``)."""
    from safetensors.torch import save_file

    from ..utils.files import atomic_path

    c = sae.config
    arch = _ARCH[c.kind]
    cfg = {
        "architecture": arch,
        "d_in": c.d,
        "d_sae": c.n,
        "dtype": str(sae.W_dec.dtype).replace("torch.", ""),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"supcomp_kind": c.kind},
    }
    if arch == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=False)
    t = {
        "W_enc": sae.W_enc.detach().T.contiguous().cpu(),
        "W_dec": sae.W_dec.detach().contiguous().cpu(),
        "b_enc": sae.b_enc.detach().contiguous().cpu(),
        "b_dec": sae.b_dec.detach().contiguous().cpu(),
    }
    if c.kind == "jumprelu":
        t["threshold"] = sae.log_threshold.detach().exp().contiguous().cpu()
    elif c.kind == "batchtopk":
        t["threshold"] = sae.threshold.detach().expand(c.n).contiguous().cpu()
    os.makedirs(path, exist_ok=True)
    with atomic_path(os.path.join(path, "sae_weights.safetensors")) as tmp:
        save_file(t, tmp)
    with atomic_path(os.path.join(path, "cfg.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(cfg, f, indent=1)


def load_saelens(path: str, device=None) -> SAE:
    """Read an SAE in SAELens's format (architectures ``topk``, ``standard``, ``jumprelu``).

    Raises:
        ValueError: another architecture, or input normalisation other than ``none``.
    """
    from safetensors.torch import load_file

    with open(os.path.join(path, "cfg.json")) as f:
        cfg = json.load(f)
    arch = cfg.get("architecture", "standard")
    kinds = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}
    if arch not in kinds:
        raise ValueError(f"path: SAELens architecture {arch!r} is not one of {sorted(kinds)}")
    if cfg.get("normalize_activations", "none") != "none":
        raise ValueError(f"path: normalize_activations={cfg['normalize_activations']!r} is not supported")
    t = load_file(os.path.join(path, "sae_weights.safetensors"))
    kind = kinds[arch]
    d, n = int(cfg["d_in"]), int(cfg["d_sae"])
    config = SAEConfig(d=d, n=n, kind=kind, k=int(cfg.get("k", 1)) if kind == "topk" else 1)
    sae = SAE(config, dtype=t["W_dec"].dtype)
    with torch.no_grad():
        sae.W_enc.copy_(t["W_enc"].T)
        sae.W_dec.copy_(t["W_dec"])
        sae.b_enc.copy_(t["b_enc"])
        sae.b_dec.copy_(t["b_dec"])
        if kind == "jumprelu":
            sae.log_threshold.copy_(t["threshold"].clamp(min=1e-30).log())
    if not cfg.get("apply_b_dec_to_input", True):
        raise ValueError("path: apply_b_dec_to_input=false is not supported")
    return sae.to(device) if device is not None else sae
