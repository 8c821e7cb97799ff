#!/usr/bin/env python
"""GPU benchmark report: supcomp's Triton kernels against their torch peers on CUDA.

    python benchmarks/gpu_report.py --out gpu.md          # on a CUDA machine, full sizes
    python benchmarks/gpu_report.py --quick --out gpu.md  # small sizes, a few seconds
    make bench-gpu   # = --matrix --half --append benchmarks/RESULTS.md: the issue's matrix, all peers
    python benchmarks/gpu_report.py --matrix --half --dry-run   # list the cases (no GPU needed)

The cases, providers, work counts and agreement checks are those of
``benchmarks/common/cases.py`` (the CPU op tables), with every input moved to the GPU.
Timing: :func:`supcomp.utils.timing.time_interleaved` with ``sync=torch.cuda.synchronize``
(wall time of each call up to the end of its kernels, providers of a case interleaved, medians).
Peak memory: ``torch.cuda.max_memory_allocated`` over one call minus what was allocated before it
(the provider's own input format, e.g. the dense x of ``dense_mm``, is built before, so it is not
counted).

Ceilings are measured on the card in the same run (a device-to-device copy for
bandwidth, counting bytes read + written; an fp32 ``torch.mm`` with TF32 off for
FLOP/s), so "% of ceiling" is against what this card does, not its datasheet.

The toy-model training step (the cases of ``benchmarks/ops/tms_step.py``) runs on the GPU too:
supcomp's trainer there draws the batch on the GPU (``DeviceBatchSampler``) and runs the dense
step; the peers are the notebook's eager step and its ``torch.compile``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402
from common import cases, gpu_matrix  # noqa: E402

from supcomp.utils.timing import time_interleaved  # noqa: E402


def _to(inp: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inp.items()}


def _sync():
    torch.cuda.synchronize()


def _time(fns: dict, quick: bool) -> dict[str, float]:
    """provider -> median milliseconds of one call, the providers interleaved."""
    t = time_interleaved(
        fns,
        reps=20 if quick else 200,
        warmup=5 if quick else 25,
        min_reps=5 if quick else 20,
        budget_s=0.5 * len(fns) if quick else 3.0 * len(fns),
        sync=_sync,
    )
    return {k: 1e3 * v.median for k, v in t.items()}


def probe_ceilings() -> dict:
    dev = "cuda"
    x = torch.empty(1 << 28, dtype=torch.float32, device=dev)  # 1 GiB
    y = torch.empty_like(x)
    ms = _time({"copy": lambda: y.copy_(x)}, quick=False)["copy"]
    bw = 2 * x.numel() * 4 / (ms * 1e-3)
    x = y = None  # free the 2 GiB before the GEMM
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(8192, 8192, device=dev)
    b = torch.randn(8192, 8192, device=dev)
    ms = _time({"gemm": lambda: a @ b}, quick=False)["gemm"]
    fl = 2 * 8192**3 / (ms * 1e-3)
    torch.backends.cuda.matmul.allow_tf32 = prev
    return {"B": bw, "FLOP": fl}


def _provider(op, mode, name, inp, s, go):
    """cases.make_provider, with the torch.sparse peers built on the GPU."""
    if op == "sparse_encode" and name in ("sparse_coo", "sparse_csr"):
        idx, val, W = inp["indices"], inp["values"], inp["W"]
        B, k = idx.shape
        rows = torch.arange(B, device=idx.device).repeat_interleave(k)
        xs = torch.sparse_coo_tensor(torch.stack([rows, idx.reshape(-1)]), val.reshape(-1), (B, W.shape[0])).coalesce()
        if name == "sparse_csr":
            xs = xs.to_sparse_csr()
        if mode == "fwd":
            return lambda: torch.sparse.mm(xs, W)
        xs = xs.requires_grad_()
        Wg = W.clone().requires_grad_()

        def run():
            Wg.grad = xs.grad = None
            h = torch.sparse.mm(xs, Wg)
            h.backward(go)
            return h.detach(), Wg.grad, None

        return run
    return cases.make_provider(op, mode, name, inp, s, go)


def run_ops(quick: bool, ceilings: dict, dtypes, log=print) -> list[dict]:
    rows = []
    sizes = cases.SIZES["quick" if quick else "full"]
    for op in cases.OPS:
        for s in sizes[op]:
            for dtype in dtypes:
                if dtype != torch.float32 and op == "superpose":
                    continue
                inp = cases.make_inputs(op, s)
                inp = {
                    k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                    for k, v in inp.items()
                }
                inp = _to(inp, "cuda")
                fns = {}
                for mode, name in cases.combos(op, quick=quick):
                    if dtype != torch.float32 and name.startswith("sparse_"):
                        continue
                    go = None
                    if mode == "fwd+bwd":
                        go = cases.grad_out(op, inp, s)
                        go = go.to(device="cuda", dtype=dtype)
                    row = dict(
                        op=op,
                        mode=mode,
                        size=cases.size_label(op, s),
                        dtype=str(dtype).replace("torch.", ""),
                        provider=name,
                        label=cases.LABELS.get(name, name),
                    )
                    try:
                        torch.cuda.synchronize()
                        torch.cuda.empty_cache()
                        before = torch.cuda.memory_allocated()
                        fn = _provider(op, mode, name, inp, s, go)
                        setup_mem = torch.cuda.memory_allocated() - before
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        out = fn()
                        torch.cuda.synchronize()
                        row["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                        row["setup_mib"] = setup_mem / 2**20
                        row["out"] = out
                        fns[(mode, name)] = fn
                    except Exception as e:  # one failing provider must not hide the others
                        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                        log(traceback.format_exc())
                    rows.append(row)
                # timing (the providers of each mode interleaved), agreement with supcomp and ratios
                for mode in cases.modes(op):
                    group = [
                        r
                        for r in rows
                        if r["op"] == op
                        and r["mode"] == mode
                        and r["size"] == cases.size_label(op, s)
                        and r["dtype"] == str(dtype).replace("torch.", "")
                    ]
                    mode_fns = {nm: f for (m, nm), f in fns.items() if m == mode}
                    try:
                        ms = _time(mode_fns, quick) if mode_fns else {}
                    except Exception as e:
                        ms = {}
                        for r in group:
                            r.setdefault("error", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
                        log(traceback.format_exc())
                    amount, unit = cases.work(op, mode, s, inp)
                    for r in group:
                        if r["provider"] in ms:
                            r["ms"] = ms[r["provider"]]
                            r["rate"] = amount / (r["ms"] * 1e-3)
                            r["unit"] = "GB/s" if unit == "B" else "GFLOP/s"
                            r["pct"] = 100 * r["rate"] / ceilings[unit]
                        log(
                            f"{op:<18} {mode:<8} {r['dtype']:<9} {r['provider']:<18} "
                            + (f"{r['ms']:8.3f} ms" if "ms" in r else r.get("error", ""))
                        )
                    ref = next((r for r in group if r["provider"] == "supcomp" and "out" in r), None)
                    for r in group:
                        if ref is None or "ms" not in r:
                            continue
                        r["ratio"] = r["ms"] / ref["ms"]
                        if r is not ref and "out" in r:
                            tol = 2e-3 if dtype == torch.float32 else 3e-2
                            r["check"] = cases.compare(op, mode, ref["out"], r["out"], tol=tol) or "agrees"
                    for r in group:
                        r.pop("out", None)
                del inp, fns
    return rows


def run_tms(quick: bool, log=print) -> list[dict]:
    from ops import tms_step

    rows = []
    for c in tms_step.CASES[:1] if quick else tms_step.CASES:
        cfg = tms_step.config(c)
        B = c["B"]
        fns = {
            "supcomp train() step (device sampler + dense step)": tms_step.supcomp_step(cfg, B, device="cuda"),
            "TMS notebook eager": tms_step.notebook_step(cfg, B, device="cuda"),
        }
        if not quick:
            fns["torch.compile(notebook step)"] = tms_step.notebook_step(cfg, B, compile_it=True, device="cuda")
        timings = time_interleaved(fns, reps=10 if quick else 50, warmup=2, sync=_sync)  # warm-up: caches, compilation
        med = {k: v.median for k, v in timings.items()}
        size = f"I={c['I']} n={c['n']} m={c['m']} B={B} p=1..1/20"
        first = next(iter(med))
        for k, t in med.items():
            rows.append(dict(size=size, provider=k, ms=1e3 * t, ratio=t / med[first]))
            log(f"{size:<36} {k:<34} {1e3 * t:9.2f} ms/step")
    return rows


def format_ops(rows, ceilings) -> str:
    out = [
        "| op | mode | size | dtype | provider | ms (median) | supcomp speed-up | rate | % of measured ceiling | "
        "peak extra MiB (call) | agreement |",
        "|---|---|---|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(
                f"| {r['op']} | {r['mode']} | {r['size']} | {r['dtype']} | {r['label']} | failed: {r['error']} |||||| "
            )
            continue
        out.append(
            f"| {r['op']} | {r['mode']} | {r['size']} | {r['dtype']} | {r['label']} | {r['ms']:.3f} | "
            f"{r.get('ratio', float('nan')):.2f}× | {r['rate'] / 1e9:.0f} {r['unit']} | {r['pct']:.0f}% | "
            f"{r['peak_mib']:.0f} | {r.get('check', '(reference)')} |"
        )
    return "\n".join(out)


def format_tms(rows) -> str:
    out = ["| size | provider | ms / step | supcomp speed-up |", "|---|---|--:|--:|"]
    for r in rows:
        out.append(f"| {r['size']} | {r['provider']} | {r['ms']:.2f} | {r['ratio']:.2f}× |")
    return "\n".join(out)


def driver_version() -> str:
    """The NVIDIA driver version (nvidia-smi), else "unknown"."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dry_run(args) -> int:
    """List the cases a run would time (no CUDA needed)."""
    n = 0
    if args.matrix:
        for s in gpu_matrix.matrix_cases(args.quick):
            for mode, names in gpu_matrix.PROVIDERS.items():
                print(f"sparse_encode {mode} {gpu_matrix.label(s)} {s['dtype']}: {', '.join(names)}")
                n += 1
    if not args.no_ops:
        dtypes = ["float32"] + (["float16", "bfloat16"] if args.half else [])
        for op in cases.OPS:
            for s in cases.SIZES["quick" if args.quick else "full"][op]:
                for mode, name in cases.combos(op, quick=args.quick):
                    print(f"{op} {mode} {cases.size_label(op, s)} {'/'.join(dtypes)}: {name}")
                    n += 1
    if not args.no_tms:
        print("toy-model training step: supcomp train(), notebook eager, torch.compile(notebook)")
        n += 1
    print(f"{n} cases")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--append", default=None, metavar="FILE", help="put the section into FILE (benchmarks/RESULTS.md)")
    ap.add_argument("--no-tms", action="store_true")
    ap.add_argument("--no-ops", action="store_true", help="only the toy-model trainer")
    ap.add_argument("--half", action="store_true", help="also fp16 and bf16 (no torch.sparse peers)")
    ap.add_argument("--matrix", action="store_true", help="the sparse_encode matrix of benchmarks/common/gpu_matrix.py")
    ap.add_argument("--dry-run", action="store_true", help="list the cases and exit (no CUDA needed)")
    args = ap.parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    if not torch.cuda.is_available():
        print("gpu_report.py needs CUDA", file=sys.stderr)
        return 2
    import triton

    import supcomp  # noqa: F401

    t0 = time.time()
    name = torch.cuda.get_device_name()
    ceilings = probe_ceilings()
    dtypes = [torch.float32] + ([torch.float16, torch.bfloat16] if args.half else [])
    rows = []
    if args.matrix:
        rows += gpu_matrix.run_matrix(args.quick, lambda fns: _time(fns, True), _provider, ceilings)
    rows += [] if args.no_ops else run_ops(args.quick, ceilings, dtypes)
    tms_rows = [] if args.no_tms else run_tms(args.quick)
    flags = "".join(f" --{f}" for f in ("quick", "half", "matrix") if getattr(args, f))
    text = (
        f"## GPU: {name}\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, driver {driver_version()}, CUDA {torch.version.cuda}, "
        f"torch {torch.__version__}, triton {triton.__version__}, "
        f"command `python benchmarks/gpu_report.py{flags}`, "
        f"{time.time() - t0:.0f} s. Measured ceilings on this card: copy {ceilings['B'] / 1e9:.0f} GB/s "
        f"(read + write), fp32 GEMM (TF32 off) {ceilings['FLOP'] / 1e12:.1f} TFLOP/s. Timing: "
        f"supcomp.utils.timing.time_interleaved medians (CUDA synchronised after each call). Speed-up = peer "
        f"time / supcomp time. Rates from the work counts in benchmarks/common/cases.py (bytes models are "
        f"fp32).\n\n" + format_ops(rows, ceilings) + "\n"
    )
    if tms_rows:
        text += (
            "\n### Toy-model training steps on the GPU\n\nOne step = batch + forward + loss + backward + AdamW; "
            "medians of interleaved steps after warm-up.\n\n" + format_tms(tms_rows) + "\n"
        )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.append:
        from common.results import put_section

        put_section(args.append, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
