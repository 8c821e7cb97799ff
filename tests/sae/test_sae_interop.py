"""SAELens and sparsify on-disk formats: exact round trips, the files' layout, and (where the peer
libraries are importable) their own loaders opening supcomp's folders and the reverse."""

import importlib.util
import json

import pytest
import torch

from supcomp.sae import SAE, SAEConfig
from supcomp.sae.interop import load_saelens, load_sparsify, save_saelens, save_sparsify


def _trained_like(kind, seed=0, d=12, n=40, k=5):
    sae = SAE(SAEConfig(d=d, n=n, kind=kind, k=k, k_aux=7, aux_coef=0.1), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial biases and an encoder that is not the decoder's transpose
        sae.W_enc.add_(0.1 * torch.randn(sae.W_enc.shape, generator=g))
        sae.b_enc.copy_(0.05 * torch.randn(n, generator=g))
        sae.b_dec.copy_(torch.randn(d, generator=g))
        if kind == "jumprelu":
            sae.log_threshold.copy_(torch.randn(n, generator=g) - 2)
        if kind == "batchtopk":
            sae.threshold.fill_(0.3)
    return sae.eval()


def _code_and_recon(sae, x):
    code = sae.encode(x)
    return sae.decode(code)


@pytest.mark.parametrize("kind", ["topk", "relu", "jumprelu"])
def test_saelens_round_trip_is_exact(tmp_path, kind):
    sae = _trained_like(kind)
    save_saelens(sae, tmp_path / "s", metadata={"hook_name": "blocks.0.hook_resid_post"})
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == {"topk": "topk", "relu": "standard", "jumprelu": "jumprelu"}[kind]
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (12, 40, "float32")
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "s" / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (12, 40) and w["W_dec"].shape == (40, 12)
    back = load_saelens(tmp_path / "s")
    assert back.config == sae.config and not back.training
    for name, p in sae.named_parameters():
        assert torch.equal(p, dict(back.named_parameters())[name]), name
    x = torch.randn(9, 12)
    assert torch.equal(_code_and_recon(sae, x), _code_and_recon(back, x))


def test_saelens_folder_without_supcomp_metadata(tmp_path):
    # a folder as SAELens writes it: only its own fields; apply_b_dec_to_input false folds b_dec into b_enc
    d, n = 6, 20
    g = torch.Generator().manual_seed(3)
    w = {
        k: torch.randn(s, generator=g)
        for k, s in {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}.items()
    }
    from safetensors.torch import save_file

    (tmp_path / "f").mkdir()
    save_file(w, str(tmp_path / "f" / "sae_weights.safetensors"))
    cfg = {"architecture": "standard", "d_in": d, "d_sae": n, "dtype": "float32", "apply_b_dec_to_input": False}
    (tmp_path / "f" / "cfg.json").write_text(json.dumps(cfg))
    sae = load_saelens(tmp_path / "f")
    assert sae.config.kind == "relu"
    x = torch.randn(5, d)
    ref = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(sae.decode(sae.encode(x)), ref, rtol=1e-5, atol=1e-5)
    cfg.update(architecture="gated")
    (tmp_path / "f" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="architecture 'gated'"):
        load_saelens(tmp_path / "f")
    cfg.update(architecture="standard", normalize_activations="layer_norm")
    (tmp_path / "f" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="normalize_activations"):
        load_saelens(tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_saelens(tmp_path / "nothing")


def test_batchtopk_goes_out_as_jumprelu(tmp_path):
    sae = _trained_like("batchtopk")
    save_saelens(sae, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "cfg.json").read_text())["architecture"] == "jumprelu"
    back = load_saelens(tmp_path / "b")
    assert back.config == sae.config and float(back.threshold) == pytest.approx(0.3)
    x = torch.randn(20, 12)  # the eval-mode batch threshold encodes the same after the trip
    assert torch.equal(_code_and_recon(sae, x), _code_and_recon(back, x))


def test_sparsify_round_trip_is_exact(tmp_path):
    sae = _trained_like("topk", seed=2)
    save_sparsify(sae, tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["num_latents"], cfg["k"], cfg["activation"]) == (12, 40, 5, "topk")
    back = load_sparsify(tmp_path / "p")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(sae, name), getattr(back, name)), name
    x = torch.randn(9, 12)
    assert torch.equal(_code_and_recon(sae, x), _code_and_recon(back, x))
    with pytest.raises(ValueError, match="TopK"):
        save_sparsify(_trained_like("relu"), tmp_path / "q")


def _need(module):
    if importlib.util.find_spec(module) is None:
        msg = f"{module} is not importable here; benchmarks/sae_interop_check.py runs this check in a venv that has it"
        print(msg)
        pytest.skip(msg)


@pytest.mark.parametrize("kind", ["topk", "relu", "jumprelu"])
def test_saelens_opens_our_folder_and_we_open_its(tmp_path, kind):
    _need("sae_lens")
    from sae_lens import SAE as LensSAE

    sae = _trained_like(kind)
    save_saelens(sae, tmp_path / "s")
    lens = LensSAE.load_from_disk(str(tmp_path / "s"))
    x = torch.randn(9, 12)
    ours = sae.encode(x)
    dense = ours if not isinstance(ours, tuple) else torch.zeros(9, 40).scatter(1, ours[0].clamp(min=0), ours[1])
    torch.testing.assert_close(lens.encode(x), dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lens.decode(lens.encode(x)), sae.decode(ours), rtol=1e-5, atol=1e-5)
    lens.save_model(str(tmp_path / "l"))
    back = load_saelens(tmp_path / "l")
    assert torch.equal(back.W_dec, sae.W_dec) and torch.equal(back.W_enc, sae.W_enc)
