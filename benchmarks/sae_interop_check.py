"""Check supcomp's SAELens / sparsify folders against the peer libraries' own loaders and savers.

Run with a Python that has ``sae-lens`` and ``eai-sparsify`` installed (they need not be in supcomp's
environment): ``/path/to/venv/bin/python benchmarks/sae_interop_check.py``. The peer libraries are
imported before supcomp, and the repository root is appended to ``sys.path`` last, so that the
repository's ``kernels/`` folder does not shadow the Hugging Face ``kernels`` package they import.

For each architecture: supcomp -> folder -> peer loader (codes and reconstructions compared with
supcomp's on random inputs), and peer model -> peer saver -> supcomp loader (the same comparison).
Prints one line per check and exits 1 if any fails.
"""

import os
import sys
import tempfile

import sae_lens
import sparsify
import torch

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from supcomp.sae import SAE, SAEConfig  # noqa: E402
from supcomp.sae.interop import load_saelens, load_sparsify, save_saelens, save_sparsify  # noqa: E402


def _ours(kind, d=64, n=512, k=16, seed=0):
    sae = SAE(SAEConfig(d=d, n=n, kind=kind, k=k), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.W_enc.add_(0.1 * torch.randn(sae.W_enc.shape, generator=g))
        sae.b_enc.copy_(0.05 * torch.randn(n, generator=g))
        sae.b_dec.copy_(torch.randn(d, generator=g))
        if kind == "jumprelu":
            sae.log_threshold.copy_(torch.randn(n, generator=g) - 2)
    return sae.eval()


def _dense(code, n):
    if not isinstance(code, tuple):
        return code
    idx, val = code
    return torch.zeros(idx.shape[0], n, dtype=val.dtype).scatter(1, idx.clamp(min=0), torch.where(idx >= 0, val, 0))


def _report(name, a, b, results):
    err = float((a - b).detach().abs().max())
    ok = err <= 1e-5 * max(1.0, float(b.detach().abs().max()))
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |difference| {err:.2e}")


def main():
    torch.manual_seed(0)
    x = torch.randn(256, 64)
    results = []
    print(
        f"sae_lens {sae_lens.__version__}, sparsify {getattr(sparsify, '__version__', '?')}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("topk", "relu", "jumprelu"):
            ours = _ours(kind)
            folder = os.path.join(tmp, f"ours_{kind}")
            save_saelens(ours, folder)
            lens = sae_lens.SAE.load_from_disk(folder)
            code = ours.encode(x)
            _report(f"SAELens opens supcomp {kind}: encode", lens.encode(x), _dense(code, 512), results)
            _report(f"SAELens opens supcomp {kind}: decode", lens.decode(lens.encode(x)), ours.decode(code), results)
            # and the reverse: SAELens's own saver, read by supcomp
            back_folder = os.path.join(tmp, f"lens_{kind}")
            lens.save_model(back_folder)
            back = load_saelens(back_folder)
            _report(
                f"supcomp opens SAELens {lens.cfg.architecture()}: encode",
                _dense(back.encode(x), 512),
                lens.encode(x),
                results,
            )
            _report(
                f"supcomp opens SAELens {lens.cfg.architecture()}: decode",
                back.decode(back.encode(x)),
                lens.decode(lens.encode(x)),
                results,
            )
        # a fresh SAELens SAE (its own initialisation, no supcomp metadata)
        for arch, extra in (("topk", {"k": 16}), ("standard", {}), ("jumprelu", {})):
            lens = sae_lens.SAE.from_dict({"architecture": arch, "d_in": 64, "d_sae": 512, **extra})
            with torch.no_grad():
                lens.b_enc.normal_(0, 0.1)
                lens.b_dec.normal_(0, 1.0)
                if arch == "jumprelu":
                    lens.threshold.uniform_(0, 0.2)
            folder = os.path.join(tmp, f"fresh_{arch}")
            lens.save_model(folder)
            back = load_saelens(folder)
            _report(
                f"supcomp opens fresh SAELens {arch}: decode",
                back.decode(back.encode(x)),
                lens.decode(lens.encode(x)),
                results,
            )
        # sparsify
        ours = _ours("topk")
        folder = os.path.join(tmp, "ours_sparsify")
        save_sparsify(ours, folder)
        coder = sparsify.SparseCoder.load_from_disk(folder)
        enc = coder.encode(x)
        _report(
            "sparsify opens supcomp topk: decode",
            coder.decode(enc.top_acts, enc.top_indices),
            ours.decode(ours.encode(x)),
            results,
        )
        coder = sparsify.SparseCoder(64, sparsify.SparseCoderConfig(num_latents=512, k=16))
        with torch.no_grad():
            coder.b_dec.normal_(0, 1.0)
        coder.save_to_disk(os.path.join(tmp, "fresh_sparsify"))
        back = load_sparsify(os.path.join(tmp, "fresh_sparsify"))
        enc = coder.encode(x)
        _report(
            "supcomp opens fresh sparsify: decode",
            back.decode(back.encode(x)),
            coder.decode(enc.top_acts, enc.top_indices),
            results,
        )
    print(f"{sum(results)}/{len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
