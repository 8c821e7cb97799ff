"""Every op's CUDA path against its pure-torch reference, on the GPU this runs on.

    python tools/gpu_check.py

The test suite checks the Triton kernels under ``TRITON_INTERPRET=1`` on CPU tensors; this script
runs them compiled, on CUDA tensors, at small odd sizes in float32 and float64 (outputs and
gradients), plus the TMS sampler (bit for bit against the C++ one) and the TMS step. It prints one
line per check and exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys
import traceback

import torch

from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose, tms_step, use_backend
from supcomp.tms import ToyModelConfig
from supcomp.tms.data import BatchSampler, DeviceBatchSampler
from supcomp.uand import UAnd

FAILED = []


def check(name: str, got, want, rtol: float, atol: float):
    ok = all(
        (a is None and b is None) or torch.allclose(a.double().cpu(), b.double().cpu(), rtol=rtol, atol=atol)
        for a, b in zip(got, want)
    )
    errs = [
        float((a.double().cpu() - b.double().cpu()).abs().max()) if a is not None and a.numel() else 0.0
        for a, b in zip(got, want)
    ]
    print(f"{'ok  ' if ok else 'FAIL'} {name} (max abs differences {[f'{e:.2g}' for e in errs]})")
    if not ok:
        FAILED.append(name)


def ops_case(dtype, dev):
    g = torch.Generator().manual_seed(0)
    I, B, k, n, d = 3, 37, 5, 101, 19
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    idx = torch.randint(-1, n, (I, B, k), generator=g)
    val = torch.randn(I, B, k, generator=g, dtype=dtype)
    W = torch.randn(I, n, d, generator=g, dtype=dtype)
    b = 0.1 * torch.randn(I, n, generator=g, dtype=dtype)
    h = torch.randn(I, B, d, generator=g, dtype=dtype)
    calls = {
        "sparse_encode": lambda i, v, w, bb, hh: [sparse_encode(i, v, w)],
        "superpose": lambda i, v, w, bb, hh: [superpose(i, v, w, bb)],
        "relu_readout": lambda i, v, w, bb, hh: [relu_readout(hh, w, bb)],
        "relu_readout_topk": lambda i, v, w, bb, hh: list(relu_readout_topk(hh, w, bb, 7)),
    }

    def run(op, backend, device):
        Wd = W.detach().clone().to(device).requires_grad_()
        vd = val.detach().clone().to(device).requires_grad_()
        hd = h.detach().clone().to(device).requires_grad_()
        with use_backend(backend):
            outs = calls[op](idx.to(device), vd, Wd, b.to(device), hd)
            sum(o.double().square().sum() for o in outs if o.is_floating_point()).backward()
        grads = [t.grad if t.grad is not None else torch.zeros(0) for t in (Wd, vd, hd)]
        return [o.double() for o in outs] + grads

    for op in calls:
        try:
            check(f"{op} {dtype} cuda vs reference", run(op, "triton", dev), run(op, "reference", "cpu"), **tol)
        except Exception as e:  # report every op, not only the first failure
            where = [f"{fr.name}" for fr in traceback.extract_tb(e.__traceback__) if "supcomp" in fr.filename][-3:]
            print(f"FAIL {op} {dtype}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (in {where})")
            FAILED.append(f"{op} {dtype}")


def tms_case(dev):
    for kind in ("linear", "relu_output", "relu_hidden", "abs"):
        cfg = ToyModelConfig(
            n_instances=3,
            n_features=23,
            n_hidden=4,
            feature_probability=0.2,
            kind=kind,
            correlated_pairs=1,
            anticorrelated_pairs=1,
        )
        x_cpp = BatchSampler(cfg, 33, seed=5).sample(4).to_dense()
        x_dev = DeviceBatchSampler(cfg, 33, seed=5, device=dev).sample(4)
        same = torch.equal(x_cpp, x_dev.cpu())
        print(f"{'ok  ' if same else 'FAIL'} tms_sample {kind}: CUDA batch equals the C++ batch bit for bit")
        if not same:
            FAILED.append(f"tms_sample {kind}")
        batch = BatchSampler(cfg, 33, seed=5, dtype=torch.float64).sample(1)
        g = torch.Generator().manual_seed(1)
        E = torch.randn(3, 23, 4, generator=g, dtype=torch.float64)
        b = 0.1 * torch.randn(3, 23, generator=g, dtype=torch.float64)
        imp = torch.rand(3, 23, generator=g, dtype=torch.float64)
        want = tms_step.IMPLS.get("reference").loss_and_grad(batch, E, E, b, imp, kind)
        Ed = E.to(dev)  # one tensor for both: a tied model
        got = tms_step.IMPLS.get("triton").loss_and_grad(batch, Ed, Ed, b.to(dev), imp.to(dev), kind)
        check(f"tms_step {kind} cuda vs reference", got, want, rtol=1e-9, atol=1e-12)


def uand_case(dev):
    u = UAnd(60, 300, 0.3, seed=0)
    act = torch.randint(-1, 60, (17, 4))
    a_ref = u.forward(act)
    want = [a_ref, u.read_all_pairs(a_ref, on_empty="mask")[0]]
    u_dev = UAnd(60, 300, 0.3, seed=0, device=dev) if "device" in UAnd.__init__.__code__.co_varnames else None
    if u_dev is None:
        print("skip uand: UAnd has no device argument")
        return
    a = u_dev.forward(act.to(dev))
    check("uand cuda vs cpu", [a, u_dev.read_all_pairs(a, on_empty="mask")[0]], want, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    cases = [
        ("ops float32", lambda: ops_case(torch.float32, "cuda")),
        ("ops float64", lambda: ops_case(torch.float64, "cuda")),
        ("tms", lambda: tms_case("cuda")),
        ("uand", lambda: uand_case("cuda")),
    ]
    for name, case in cases:
        try:
            case()
        except Exception as e:  # report every case, not only the first failure
            print(f"FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            FAILED.append(name)
    sys.exit(1 if FAILED else 0)
