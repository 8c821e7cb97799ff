"""A compact forward + backward check of every C++ op against its pure-torch reference.

Small sizes (well under a second natively), so it can run under qemu (tests/test_qemu.py), once per
CPU variant (tests/test_cpu_variants.py) and from an installed wheel (``make dist-check``). Prints
the variant in use and one line per op; exits with status 1 on the first mismatch.

    python tools/op_smoke.py                      # the variant the CPU picks
    SUPCOMP_CPU_CAPABILITY=avx2 python tools/op_smoke.py
    python tools/op_smoke.py --float32-only       # half the work (the qemu runs)
"""

from __future__ import annotations

import sys

import torch

from supcomp import _C
from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend
from supcomp.ops.uand import reference_all_pairs, reference_forward
from supcomp.tms import BatchSampler, ToyModel, ToyModelConfig
from supcomp.tms.train import fused_loss_and_grad, fused_sampled_loss_and_grad, reference_loss_and_grad
from supcomp.uand import UAnd

TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def close(name: str, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        sys.exit(f"op_smoke: {name} ({dtype}): shape {tuple(a.shape)} != reference {tuple(b.shape)}")
    err = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
    if not err <= TOL[dtype]:
        sys.exit(f"op_smoke: {name} ({dtype}): relative error {err:.2e} against the reference")


def run(fn, inputs: list[torch.Tensor], backend: str):
    """Outputs of fn on `backend`, and the gradients of a weighted sum of its float outputs."""
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    with use_backend(backend):
        out = fn(*xs)
        outs = tuple(out) if isinstance(out, tuple) else (out,)
        floats = [o for o in outs if o.is_floating_point()]
        loss = sum((o * torch.linspace(0.5, 1.5, o.numel(), dtype=o.dtype).reshape(o.shape)).sum() for o in floats)
        leaves = [x for x in xs if x.requires_grad]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return outs, [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]


def check_op(name: str, fn, inputs: list[torch.Tensor], dtype: torch.dtype) -> None:
    (out_c, grad_c), (out_r, grad_r) = run(fn, inputs, "cpp"), run(fn, inputs, "reference")
    for i, (a, b) in enumerate(zip(out_c, out_r)):
        if a.is_floating_point():
            close(f"{name} output {i}", a, b, dtype)
        elif not torch.equal(a, b):
            sys.exit(f"op_smoke: {name} ({dtype}): integer output {i} differs from the reference")
    for i, (a, b) in enumerate(zip(grad_c, grad_r)):
        close(f"{name} gradient {i}", a, b, dtype)


def check_sparse_ops(dtype: torch.dtype, g: torch.Generator) -> None:
    I, B, k, n, d = 2, 9, 5, 70, 37  # odd sizes: partial vector chunks and tiles
    idx = torch.randint(-1, n, (I, B, k), generator=g)
    val = torch.rand(I, B, k, generator=g, dtype=dtype)
    W = torch.randn(I, n, d, generator=g, dtype=dtype)
    b = torch.randn(I, n, generator=g, dtype=dtype) * 0.1
    h = torch.randn(I, B, d, generator=g, dtype=dtype)
    check_op("sparse_encode", sparse_encode, [idx, val, W], dtype)
    check_op("relu_readout", relu_readout, [h, W, b], dtype)
    check_op("relu_readout_topk", lambda h, W, b: tuple(relu_readout_topk(h, W, b, 7)), [h, W, b], dtype)
    check_op("superpose", superpose, [idx, val, W, b], dtype)


def check_tms(dtype: torch.dtype) -> None:
    for kind in ("relu_output", "relu_hidden"):
        cfg = ToyModelConfig(
            n_features=37,
            n_hidden=6,
            n_instances=3,
            feature_probability=torch.tensor([1.0, 0.3, 0.05])[:, None],
            kind=kind,
        )
        model = ToyModel(cfg, seed=1, dtype=dtype)
        with torch.no_grad():
            model.b.normal_(0, 0.1)
        sampler = BatchSampler(cfg, 40, seed=3, dtype=dtype)
        for step in (0, 5):
            batch = sampler.sample(step)  # tms_sample
            loss_f = fused_loss_and_grad(model, batch)  # tms_step on a batch
            grads_f = [p.grad.clone() for p in model.parameters()]
            loss_r = reference_loss_and_grad(model, batch)
            grads_r = [p.grad.clone() for p in model.parameters()]
            close(f"tms_step {kind} loss", loss_f, loss_r, torch.float32)
            for a, b in zip(grads_f, grads_r):
                close(f"tms_step {kind} gradient", a, b, dtype)
            loss_s = fused_sampled_loss_and_grad(model, sampler, step)  # tms_step drawing its own batch
            grads_s = [p.grad.clone() for p in model.parameters()]
            close(f"tms_step sampled {kind} loss", loss_s, loss_r, torch.float32)
            for a, b in zip(grads_s, grads_r):
                close(f"tms_step sampled {kind} gradient", a, b, dtype)


def check_uand(dtype: torch.dtype, g: torch.Generator) -> None:
    m, d = 37, 53
    u = UAnd(m, d, 0.3, seed=m, dtype=dtype)
    idx = torch.randint(-1, m, (7, 5), generator=g)
    with use_backend("cpp"):
        a = u.forward(idx)
        pairs, _ = u.read_all_pairs(a, on_empty="mask")
    ones = torch.ones(idx.shape, dtype=torch.float64)
    a_ref = reference_forward(idx, ones, u.col_ptr, u.col_idx, u.bias, u.d)
    close("uand forward", a, a_ref, dtype)
    pairs_ref = reference_all_pairs(a.double(), u.col_ptr, u.col_idx, u.nrn_ptr, u.nrn_idx, None, m, 0, m)
    close("uand all pairs", pairs, pairs_ref, dtype)


def main() -> None:
    print(f"op_smoke: supcomp._C variant {_C.cpu_variant()} (compiled: {', '.join(_C.compiled_variants())})")
    g = torch.Generator().manual_seed(0)
    dtypes = (torch.float32,) if "--float32-only" in sys.argv[1:] else (torch.float32, torch.float64)
    for dtype in dtypes:
        check_sparse_ops(dtype, g)
        check_tms(dtype)
        check_uand(dtype, g)
        print(f"op_smoke: {dtype}: sparse_encode relu_readout relu_readout_topk superpose tms_sample tms_step uand ok")
    print("op_smoke: all ok")


if __name__ == "__main__":
    main()
