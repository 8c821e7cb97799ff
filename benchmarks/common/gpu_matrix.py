"""The sparse_encode matrix of the GPU report (``benchmarks/gpu_report.py --matrix``, ``make bench-gpu``).

B = 8192; k in {32, 64, 128}; n in {2^16, 2^20}; d in {256, 768}; fp32 / bf16 / fp16; feature ids
uniform or Zipf-distributed (P(f) ~ 1 / (f + 1), ids shuffled). Providers, forward: ``supcomp`` (the
route :mod:`supcomp.ops.gpu_table` picks), ``supcomp:triton`` (the Triton kernel forced), and the peers
``F.embedding_bag`` and ``torch.sparse.mm`` with a CSR x; forward + backward: supcomp and the two peers.
The dense ``x @ W`` peer is left out (x would be 32 GiB at n = 2^20).
"""

from __future__ import annotations

import itertools

import torch

MATRIX = dict(
    k=(32, 64, 128),
    n=(1 << 16, 1 << 20),
    d=(256, 768),
    dtype=(torch.float32, torch.bfloat16, torch.float16),
    dist=("uniform", "zipf"),
)
B_FULL, B_QUICK = 8192, 1024
PROVIDERS = {
    "fwd": ["supcomp", "supcomp:triton", "embedding_bag", "sparse_csr"],
    "fwd+bwd": ["supcomp", "embedding_bag", "sparse_csr"],
}


def matrix_cases(quick: bool = False) -> list[dict]:
    """Every case of the matrix (quick: B=1024, k=8, n=4096, d=64, every dtype and distribution)."""
    if quick:
        return [
            dict(B=B_QUICK, k=8, n=4096, d=64, dtype=dt, dist=di) for dt in MATRIX["dtype"] for di in MATRIX["dist"]
        ]
    keys = list(MATRIX)
    return [dict(B=B_FULL, **dict(zip(keys, vals))) for vals in itertools.product(*MATRIX.values())]


def label(s: dict) -> str:
    return f"B={s['B']} k={s['k']} n={s['n']} d={s['d']} {s['dist']}"


def make_inputs(s: dict, device) -> dict:
    """indices [B, k] int64, values [B, k], W [n, d], grad_h [B, d] on ``device``, in the case's dtype."""
    g = torch.Generator(device=device).manual_seed(0)
    B, k, n, d, dt = s["B"], s["k"], s["n"], s["d"], s["dtype"]
    if s["dist"] == "zipf":
        p = 1.0 / torch.arange(1, n + 1, dtype=torch.float32, device=device)
        idx = torch.multinomial(p, B * k, replacement=True, generator=g).view(B, k)
        idx = torch.randperm(n, generator=g, device=device)[idx]
    else:
        idx = torch.randint(0, n, (B, k), generator=g, device=device)
    return dict(
        indices=idx,
        values=torch.rand(B, k, generator=g, device=device).to(dt),
        W=(torch.randn(n, d, generator=g, device=device) / d**0.5).to(dt),
        grad_h=torch.randn(B, d, generator=g, device=device).to(dt),
    )


def make_provider(mode: str, name: str, inp: dict, peer_provider):
    """A zero-argument call of one provider; ``peer_provider(op, mode, name, inp, s, go)`` builds the peers."""
    from supcomp.ops import gpu_table, sparse_encode

    idx, val, W = inp["indices"], inp["values"], inp["W"]
    if name == "supcomp:triton":

        def run():
            with gpu_table.use_route("sparse_encode", "triton"):
                return sparse_encode(idx, val, W)

        return run
    s = dict(B=idx.shape[0], k=idx.shape[1], n=W.shape[0], d=W.shape[1])
    return peer_provider("sparse_encode", mode, name, inp, s, inp["grad_h"] if mode == "fwd+bwd" else None)


def run_matrix(quick: bool, time_fn, peer_provider, ceilings: dict, log=print, device="cuda") -> list[dict]:
    """Rows of the matrix: time_fn(fns) -> provider -> ms (interleaved); errors are rows too."""
    rows = []
    for s in matrix_cases(quick):
        dt = str(s["dtype"]).replace("torch.", "")
        try:
            inp = make_inputs(s, device)
        except Exception as e:  # out of memory on a small card: the case is reported, the run goes on
            rows.append(
                dict(
                    op="sparse_encode",
                    mode="fwd",
                    size=label(s),
                    dtype=dt,
                    provider="inputs",
                    label="inputs",
                    error=str(e),
                )
            )
            continue
        for mode, names in PROVIDERS.items():
            fns, group = {}, []
            for name in names:
                row = dict(op="sparse_encode", mode=mode, size=label(s), dtype=dt, provider=name, label=name)
                try:
                    fns[name] = make_provider(mode, name, inp, peer_provider)
                    fns[name]()
                except Exception as e:
                    fns.pop(name, None)
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                group.append(row)
            ms = time_fn(fns) if fns else {}
            B, k, d = s["B"], s["k"], s["d"]
            nbytes = 2 if s["dtype"] != torch.float32 else 4
            amount = nbytes * B * k * d * (1 if mode == "fwd" else 4) + 12 * B * k + nbytes * B * d
            ref = ms.get("supcomp")
            for r in group:
                if r["provider"] in ms:
                    r["ms"] = ms[r["provider"]]
                    r["rate"] = amount / (r["ms"] * 1e-3)
                    r["unit"] = "GB/s"
                    r["pct"] = 100 * r["rate"] / ceilings["B"]
                    r["ratio"] = r["ms"] / ref if ref else float("nan")
                    r["peak_mib"] = float("nan")
                log(
                    f"{mode:<8} {label(s):<40} {dt:<9} {r['provider']:<15} "
                    + (f"{r['ms']:.3f} ms" if "ms" in r else r.get("error", ""))
                )
            rows += group
        del inp
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows
