"""The op-table cases of ``benchmarks/ops/{sparse_encode,relu_readout,relu_readout_topk,superpose}.py``
(run by :mod:`common.optable`) and of ``benchmarks/gpu_report.py``.

A case is (op, mode, size); for each case there is one callable per provider
(supcomp and its peers) built over the same inputs. Every callable returns
something comparable (the forward output, plus the gradients for fwd+bwd) so
the benchmark can check that the providers agree before it times them.

Sizes: ``SIZES["full"]`` are the sizes of the benchmark brief; ``SIZES["quick"]``
are small versions that run in a few seconds.

Work counted (the same amount for every provider of a case, so the rate is
proportional to 1 / time):

* sparse_encode, bytes (GB/s), fp32 = 4 bytes, int64 indices = 8 bytes:
    fwd      = 4*B*k*d  (the B*k gathered rows of W)
             + 12*B*k   (indices + values)
             + 4*B*d    (write h)
    fwd+bwd  = fwd + 12*B*k*d + 4*n*d + 8*B*d + 24*B*k, i.e. backward =
               gather of the B*k rows of W again for grad_values (4Bkd)
             + read-modify-write of the touched rows of grad_W (8Bkd)
             + writing (zeroing) grad_W (4nd) + reading grad_h twice (8Bd)
             + indices/values read twice and grad_values written (24Bk).
  A traffic model of the sparse algorithm, not measured traffic; the dense and
  torch.sparse peers are charged the same amount.
* relu_readout / relu_readout_topk, FLOPs (GFLOP/s): fwd = 2*B*n*d (the GEMM);
  fwd+bwd = 6*B*n*d (forward GEMM + the two backward GEMMs). Epilogues and the
  top-k are not counted.
* superpose (toy model), useful FLOPs: fwd = 2*I*B*n*d (read-out GEMM)
  + 2*I*B*nnz*d (read-in over the nonzeros only, nnz = mean nonzeros per row);
  fwd+bwd = 3x that. The dense einsum peer does 2*I*B*n*d for its read-in, which
  is charged as waste, not as work.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

import supcomp  # noqa: F401  (registers the ops)
from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose
from supcomp.sparse import padded_to_dense, random_sparse

SIZES = {
    "full": {
        "sparse_encode": [dict(B=8192, k=32, n=65536, d=256)],
        "relu_readout_topk": [dict(B=4096, d=256, n=65536, k=32), dict(B=4096, d=768, n=16384, k=32)],
        "relu_readout": [dict(B=4096, d=256, n=65536), dict(B=1024, d=64, n=4096)],
        "superpose": [dict(I=100, n=400, d=30, B=1024, p=0.05)],
    },
    "quick": {
        "sparse_encode": [dict(B=2048, k=32, n=16384, d=128)],
        "relu_readout_topk": [dict(B=512, d=128, n=16384, k=32)],
        "relu_readout": [dict(B=512, d=128, n=16384), dict(B=1024, d=64, n=4096)],
        "superpose": [dict(I=20, n=400, d=30, B=512, p=0.05)],
    },
}

# Tiny sizes: used to warm code paths (thread pools, lazily loaded libraries)
# in the peak-memory subprocesses before the measured call.
TINY = {
    "sparse_encode": dict(B=64, k=8, n=512, d=32),
    "relu_readout_topk": dict(B=64, d=32, n=1024, k=8),
    "relu_readout": dict(B=64, d=32, n=1024),
}

OPS = ("sparse_encode", "relu_readout_topk", "relu_readout", "superpose")

# (op, mode) -> providers, supcomp first. Names are stable ids (pytest ids, JSON);
# LABELS gives what the tables print.
PROVIDERS = {
    ("sparse_encode", "fwd"): ["supcomp", "embedding_bag", "dense_mm", "sparse_csr", "sparse_coo"],
    ("sparse_encode", "fwd+bwd"): ["supcomp", "embedding_bag", "sparse_csr", "sparse_coo"],
    ("relu_readout_topk", "fwd"): ["supcomp", "addmm_relu_topk"],
    ("relu_readout", "fwd"): ["supcomp", "addmm_relu"],
    ("relu_readout", "fwd+bwd"): ["supcomp", "addmm_relu"],
    ("superpose", "fwd"): ["supcomp", "supcomp_unfused", "einsum", "compiled_einsum"],
    ("superpose", "fwd+bwd"): ["supcomp", "supcomp_unfused", "einsum", "compiled_einsum"],
}

# Providers left out of the quick sizes (too slow or too slow to set up for a
# few-second run): COO fwd+bwd is ~5 s a call at full size, torch.compile takes
# tens of seconds to compile.
SLOW_PROVIDERS = {
    ("sparse_encode", "fwd+bwd", "sparse_coo"),
    ("superpose", "fwd", "compiled_einsum"),
    ("superpose", "fwd+bwd", "compiled_einsum"),
}

LABELS = {
    "supcomp": "supcomp",
    "embedding_bag": "F.embedding_bag(sum, per_sample_weights)",
    "dense_mm": "dense x @ W",
    "sparse_coo": "torch.sparse.mm (COO x)",
    "sparse_csr": "torch.sparse.mm (CSR x)",
    "addmm_relu_topk": "topk(relu(addmm(b, h, W.T)), k)",
    "addmm_relu": "relu(addmm(b, h, W.T))",
    "supcomp_unfused": "supcomp unfused: relu_readout(sparse_encode(..))",
    "einsum": "TMS einsum (dense x)",
    "compiled_einsum": "torch.compile(TMS einsum)",
}


def modes(op: str) -> list[str]:
    return [m for (o, m) in PROVIDERS if o == op]


def combos(op: str, quick: bool = False) -> list[tuple[str, str]]:
    """(mode, provider) pairs of one op, in table order."""
    return [(m, p) for m in modes(op) for p in PROVIDERS[(op, m)] if not (quick and (op, m, p) in SLOW_PROVIDERS)]


def size_label(op: str, s: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in s.items())


# --------------------------------------------------------------------------- inputs


def make_inputs(op: str, s: dict, seed: int = 0) -> dict:
    """The shared inputs of a case (fp32, CPU)."""
    g = torch.Generator().manual_seed(seed)
    if op == "sparse_encode":
        B, k, n, d = s["B"], s["k"], s["n"], s["d"]
        return dict(
            indices=torch.randint(0, n, (B, k), generator=g),
            values=torch.rand(B, k, generator=g),
            W=torch.randn(n, d, generator=g) / d**0.5,
            grad_h=torch.randn(B, d, generator=g),
        )
    if op in ("relu_readout", "relu_readout_topk"):
        B, d, n = s["B"], s["d"], s["n"]
        return dict(
            h=torch.randn(B, d, generator=g),
            W=torch.randn(n, d, generator=g) / d**0.5,  # rows ~ unit norm
            b=-0.1 - 0.05 * torch.rand(n, generator=g),  # negative bias, ~ -0.1 .. -0.15
            k=s.get("k"),
        )
    if op == "superpose":
        I, n, d, B, p = s["I"], s["n"], s["d"], s["B"], s["p"]
        indices, values = random_sparse((I, B), n, p, generator=g)
        return dict(
            indices=indices,
            values=values,
            W=torch.randn(I, n, d, generator=g) / d**0.5,
            b=-0.05 * torch.rand(I, n, generator=g),
            nnz_mean=float((indices >= 0).sum()) / (I * B),
            k_slots=indices.shape[-1],
        )
    raise ValueError(op)


def grad_out(op: str, inp: dict, s: dict) -> torch.Tensor:
    """A fixed upstream gradient for fwd+bwd (built once per case)."""
    g = torch.Generator().manual_seed(1)
    if op == "sparse_encode":
        return inp["grad_h"]
    if op == "relu_readout":
        return torch.randn(s["B"], s["n"], generator=g)
    if op == "superpose":
        return torch.randn(s["I"], s["B"], s["n"], generator=g)
    raise ValueError(op)


def work(op: str, mode: str, s: dict, inp: dict | None = None) -> tuple[float, str]:
    """(amount, unit) of work of a case; unit "B" (bytes -> GB/s) or "FLOP" (-> GFLOP/s)."""
    if op == "sparse_encode":
        B, k, n, d = s["B"], s["k"], s["n"], s["d"]
        fwd = 4 * B * k * d + 12 * B * k + 4 * B * d
        if mode == "fwd":
            return float(fwd), "B"
        return float(fwd + 12 * B * k * d + 4 * n * d + 8 * B * d + 24 * B * k), "B"
    if op in ("relu_readout", "relu_readout_topk"):
        f = 2.0 * s["B"] * s["n"] * s["d"]
        return (f if mode == "fwd" else 3 * f), "FLOP"
    if op == "superpose":
        I, n, d, B = s["I"], s["n"], s["d"], s["B"]
        nnz = inp["nnz_mean"] if inp is not None else s["p"] * n
        f = 2.0 * I * B * n * d + 2.0 * I * B * nnz * d
        return (f if mode == "fwd" else 3 * f), "FLOP"
    raise ValueError(op)


def dense_flops(op: str, mode: str, provider: str, s: dict) -> float | None:
    """FLOPs a dense peer actually executes (to show its own GEMM rate next to the
    useful-work rate), or None."""
    if op == "sparse_encode" and provider == "dense_mm":
        return 2.0 * s["B"] * s["n"] * s["d"]
    if op == "superpose" and provider in ("einsum", "compiled_einsum"):
        f = 4.0 * s["I"] * s["B"] * s["n"] * s["d"]
        return f if mode == "fwd" else 3 * f
    return None


# --------------------------------------------------------------------------- providers


def _csr(coo):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return coo.to_sparse_csr()


def _coo(indices, values, n):
    B, k = indices.shape
    rows = torch.arange(B).repeat_interleave(k)
    return torch.sparse_coo_tensor(
        torch.stack([rows, indices.reshape(-1)]), values.reshape(-1), (B, n), check_invariants=False
    ).coalesce()


def _tms_einsum(x, W, b):
    # The TMS papers' instance-batched toy model.
    h = torch.einsum("ibn,ind->ibd", x, W)
    return torch.relu(torch.einsum("ibd,ind->ibn", h, W) + b[:, None])


def make_provider(op: str, mode: str, name: str, inp: dict, s: dict, go: torch.Tensor | None = None):
    """A zero-argument callable running one provider once (setup, e.g. a dense or
    sparse copy of x or a torch.compile, is done here, outside the callable)."""
    if mode == "fwd+bwd" and go is None:
        go = grad_out(op, inp, s)

    if op == "sparse_encode":
        idx, val, W = inp["indices"], inp["values"], inp["W"]
        n = W.shape[0]
        if mode == "fwd":
            if name == "supcomp":
                return lambda: sparse_encode(idx, val, W)
            if name == "embedding_bag":
                return lambda: F.embedding_bag(idx, W, per_sample_weights=val, mode="sum")
            if name == "dense_mm":
                x = padded_to_dense(idx, val, n)  # [B, n]: 4*B*n bytes (2 GiB at full size)
                return lambda: torch.mm(x, W)
            if name == "sparse_coo":
                xs = _coo(idx, val, n)
                return lambda: torch.sparse.mm(xs, W)
            if name == "sparse_csr":
                xc = _csr(_coo(idx, val, n))
                return lambda: torch.sparse.mm(xc, W)
        else:
            Wg = W.clone().requires_grad_()
            if name in ("supcomp", "embedding_bag"):
                vg = val.clone().requires_grad_()
                f = (
                    sparse_encode
                    if name == "supcomp"
                    else (lambda i, v, w: F.embedding_bag(i, w, per_sample_weights=v, mode="sum"))
                )

                def run():
                    Wg.grad = vg.grad = None
                    h = f(idx, vg, Wg)
                    h.backward(go)
                    return h.detach(), Wg.grad, vg.grad

                return run
            if name in ("sparse_coo", "sparse_csr"):
                xs = _coo(idx, val, n)
                if name == "sparse_csr":
                    xs = _csr(xs)
                xs = xs.requires_grad_()

                def run():
                    Wg.grad = xs.grad = None
                    h = torch.sparse.mm(xs, Wg)
                    h.backward(go)
                    return h.detach(), Wg.grad, None  # grad of x is sparse, not compared

                return run

    elif op == "relu_readout_topk":
        h, W, b, k = inp["h"], inp["W"], inp["b"], inp["k"]
        if name == "supcomp":
            return lambda: relu_readout_topk(h, W, b, k)
        if name == "addmm_relu_topk":
            return lambda: torch.topk(torch.relu(torch.addmm(b, h, W.T)), k)

    elif op == "relu_readout":
        h, W, b = inp["h"], inp["W"], inp["b"]
        f = relu_readout if name == "supcomp" else (lambda h_, W_, b_: torch.relu(torch.addmm(b_, h_, W_.T)))
        if name not in ("supcomp", "addmm_relu"):
            raise ValueError(name)
        if mode == "fwd":
            return lambda: f(h, W, b)
        hg, Wg, bg = (t.clone().requires_grad_() for t in (h, W, b))

        def run():
            hg.grad = Wg.grad = bg.grad = None
            y = f(hg, Wg, bg)
            y.backward(go)
            return y.detach(), hg.grad, Wg.grad, bg.grad

        return run

    elif op == "superpose":
        idx, val, W, b = inp["indices"], inp["values"], inp["W"], inp["b"]
        n = W.shape[1]
        if name == "supcomp":
            f = lambda W_, b_: superpose(idx, val, W_, b_)  # noqa: E731
        elif name == "supcomp_unfused":
            f = lambda W_, b_: relu_readout(sparse_encode(idx, val, W_), W_, b_)  # noqa: E731
        elif name in ("einsum", "compiled_einsum"):
            x = padded_to_dense(idx, val, n)  # [I, B, n]
            fn = _tms_einsum
            if name == "compiled_einsum":
                fn = torch.compile(_tms_einsum, dynamic=False)
            f = lambda W_, b_: fn(x, W_, b_)  # noqa: E731
        else:
            raise ValueError(name)
        if mode == "fwd":
            run = lambda: f(W, b)  # noqa: E731
        else:
            Wg, bg = W.clone().requires_grad_(), b.clone().requires_grad_()

            def run():
                Wg.grad = bg.grad = None
                y = f(Wg, bg)
                y.backward(go)
                return y.detach(), Wg.grad, bg.grad

        if name == "compiled_einsum":
            run()  # compile here, outside the timed and warm-up calls
        return run

    raise ValueError(f"no provider {name!r} for {op} {mode}")


# --------------------------------------------------------------------------- checks


def _maxrel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.layout != torch.strided:
        a = a.to_dense()
    if b.layout != torch.strided:
        b = b.to_dense()
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) / scale


def _normrel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.layout != torch.strided:
        a = a.to_dense()
    if b.layout != torch.strided:
        b = b.to_dense()
    return float(torch.linalg.vector_norm((a - b).double())) / max(float(torch.linalg.vector_norm(b.double())), 1e-30)


def compare(op: str, mode: str, ref, out, tol: float = 2e-3) -> str | None:
    """None when ``out`` agrees with ``ref`` (the supcomp result), else a short description.

    The forward output is compared by max |difference| / max(1, max |ref|); gradients
    by ||difference|| / ||ref||, because a pre-activation within rounding of 0 may
    land on either side of the ReLU in two correct implementations, which moves
    single gradient entries by O(1) (seen with the superpose toy model in fp32:
    fp32 einsum vs fp64 einsum differ as much as supcomp vs fp64 einsum).
    """
    if op == "relu_readout_topk":
        # by name: supcomp returns SparseCode(indices, values), torch.topk (values, indices)
        rv, ri, ov, oi = ref.values, ref.indices, out.values, out.indices
        err = _maxrel(ov, rv)
        same = float((ri == oi).float().mean())
        if err > tol or same < 0.99:
            return f"topk values max rel err {err:.2g}, indices agree {100 * same:.2f}%"
        return None
    refs = ref if isinstance(ref, tuple) else (ref,)
    outs = out if isinstance(out, tuple) else (out,)
    for i, (r, o) in enumerate(zip(refs, outs)):
        if r is None or o is None:
            continue
        if r.shape != o.shape:
            return f"output {i}: shape {tuple(o.shape)} != {tuple(r.shape)}"
        err = _maxrel(o, r) if i == 0 else _normrel(o, r)
        if err > tol:
            return f"output {i}: {'max' if i == 0 else 'norm'} rel err {err:.2g}"
    return None
