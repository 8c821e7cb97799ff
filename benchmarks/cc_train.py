"""Compressed-computation training steps per second: supcomp.cc's fused trainer against plain torch.

One "step" is everything a training loop does per step: draw the batch, forward, MSE, backward, AdamW
(lr schedule excluded: a Python float per step). Providers (same run, interleaved rounds, medians):

* supcomp fused            C++ sparse sampler; folded matrices A = W_E W_in, B = W_E W_out (bmm);
                           sparse read-in ``sparse_encode(x, A)``; relu; ``relu(pre) Bᵀ`` (bmm); autograd
* APD einsum eager         the APD code's step: dense batch from torch.rand (features on with probability p,
                           uniform on [-1, 1]), einsum through the d_embed-wide residual stream, autograd
* torch.compile(APD step)  the same loss function compiled once before timing (only with --compile)
* plain torch folded       ablation: the folded form on the dense batch (dense x @ A), eager; separates the
                           algebraic saving from the sparse kernel

For the plain MLP controls the APD provider is the critique's MLP step (relu(x W_in) W_outᵀ against
relu(x) + x Mᵀ), which is already small.

FLOP count (the folded model's useful work, the same for every provider): fold and its backward
8·I·n·d_embed·m (residual model only) plus per sample 3·(2·m·n + 2·nnz·m) (read-out, read-in, backward
twice the forward); GFLOP/s is against the 190 GFLOP/s fp32 ceiling. The literal residual stream does
about 4·d_embed·(n + m)·3 FLOPs per sample, which the folded form avoids.

    python benchmarks/cc_train.py [--quick] [--compile] [--threads N] [--append benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import steps  # noqa: E402
from common.results import heading, put_section  # noqa: E402

from supcomp.cc import CCConfig, CCModel  # noqa: E402
from supcomp.cc.train import fused_loss_and_grad, make_sampler  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

CASES = [
    ("residual, paper size", dict(model="residual")),
    ("mlp, M = W_E W_Eᵀ - I", dict(model="mlp")),
    ("mlp, σ sweep I=9", dict(model="mlp", mixing="symmetric", sigma=[0.01 * i for i in range(9)], n_instances=9)),
]


def supcomp_step(cfg, B):
    model = CCModel(cfg)
    opt = torch.optim.AdamW([model.W_in, model.W_out], lr=3e-3, weight_decay=0.01)
    sampler = make_sampler(cfg, B)
    state = {"step": 0}

    def step():
        fused_loss_and_grad(model, sampler.sample(state["step"], copy=False))
        opt.step()
        state["step"] += 1

    return step


def _dense_batch(I, B, n, p):
    x = torch.rand(I, B, n) * 2 - 1
    return torch.where(torch.rand(I, B, n) < p, x, torch.zeros(()))


def peer_step(cfg, B, mode="eager"):
    """mode: "eager" / "compile" (the APD / critique einsum step) or "folded" (plain-torch folded form)."""
    model = CCModel(cfg)
    W_in, W_out = model.W_in, model.W_out
    W_E, M = model.W_E, model.M
    I, n, p = cfg.n_instances, cfg.n_features, cfg.feature_probability
    opt = torch.optim.AdamW([W_in, W_out], lr=3e-3, weight_decay=0.01)
    residual = cfg.model == "residual"

    def loss_fn(x, W_in, W_out):
        if residual:
            resid = torch.einsum("ibn,ind->ibd", x, W_E)
            h = torch.relu(torch.einsum("ibd,idm->ibm", resid, W_in))
            resid = resid + torch.einsum("ibm,idm->ibd", h, W_out)
            out = torch.einsum("ibd,ind->ibn", resid, W_E)
            target = x + torch.relu(x)
        else:
            out = torch.einsum("ibm,inm->ibn", torch.relu(torch.einsum("ibn,inm->ibm", x, W_in)), W_out)
            target = torch.relu(x) + torch.einsum("ibj,inj->ibn", x, M)
        return ((out - target) ** 2).mean((1, 2)).sum()

    def folded_fn(x, W_in, W_out):
        A, Bm = (torch.bmm(W_E, W_in), torch.bmm(W_E, W_out)) if residual else (W_in, W_out)
        S = -M if residual else M
        y = torch.bmm(torch.relu(torch.bmm(x, A)), Bm.transpose(1, 2))
        return ((y - torch.relu(x) - torch.bmm(x, S.transpose(1, 2))) ** 2).mean((1, 2)).sum()

    fn = {"eager": loss_fn, "compile": torch.compile(loss_fn), "folded": folded_fn}[mode]

    def step():
        opt.zero_grad(set_to_none=True)
        fn(_dense_batch(I, B, n, p), W_in, W_out).backward()
        opt.step()

    return step


def flops(cfg, B):
    I, n, m, D = cfg.n_instances, cfg.n_features, cfg.d_mlp, cfg.d_embed
    nnz = n * cfg.feature_probability
    fold = 8 * I * n * D * m if cfg.model == "residual" else 0
    return fold + 3 * I * B * (2 * m * n + 2 * nnz * m)


def run(quick=False, compile_it=False, log=print):
    rows = []
    B = 2048
    for name, kw in CASES:
        cfg = CCConfig(**kw)
        fns = {
            "supcomp fused": supcomp_step(cfg, B),
            "APD einsum eager": peer_step(cfg, B),
            "plain torch folded (dense x)": peer_step(cfg, B, "folded"),
        }
        if compile_it:
            fns["torch.compile(APD step)"] = peer_step(cfg, B, "compile")
        med = steps.medians(time_interleaved(fns, reps=10 if quick else 40, warmup=3))
        fl = flops(cfg, B)
        size = f"{name}: n=100 d_embed=1000 m=50 B={B} p=0.01"
        rows += steps.step_rows(size, med, fl)
        for k, t in med.items():
            log(f"{size:<60} {k:<30} {1e3 * t:9.2f} ms/step")
    return rows


def format_table(rows):
    return steps.format_table(
        rows, first="case", gflops_label="GFLOP/s (folded count)", ms_digits=2, sps_digits=0, pct_digits=1
    )


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the APD step")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--append", default=None, help="put the section into this file, replacing its older version")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    load = open("/proc/loadavg").read().split()[:3]
    rows = run(args.quick, args.compile)
    load_end = open("/proc/loadavg").read().split()[:3]
    flags = (
        f"{' --quick' if args.quick else ''}{' --compile' if args.compile else ''}"
        f"{f' --threads {args.threads}' if args.threads else ''}"
    )
    text = (
        f"{heading('Compressed-computation training steps', 'cc_train.py', flags)}\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {' '.join(load)} at start, {' '.join(load_end)} at end, "
        f"{time.time() - t0:.0f} s. One step = batch generation + forward + loss + backward + AdamW; medians "
        f"of interleaved rounds.\n\n" + format_table(rows) + "\n"
    )
    print(text)
    if args.append:
        put_section(args.append, text)


if __name__ == "__main__":
    main()
