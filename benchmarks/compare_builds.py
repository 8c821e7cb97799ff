"""Time two builds of supcomp against each other on the same machine, in alternating processes.

    python benchmarks/compare_builds.py OTHER_TREE [--rounds 3] [--append benchmarks/RESULTS.md]

``OTHER_TREE`` is another checkout with its extension built in place (for example
``git worktree add /tmp/base <commit> && cd /tmp/base && python setup.py build_ext --inplace``).
Each round runs one fresh process per build and case, alternating the builds, so a slow phase of a
shared machine lands on both; the table gives each build's median over the rounds of its per-process
medians. Cases: sparse_encode fwd+bwd (B=8192, k=32, n=65536, d=256) and the fused TMS training
step (``fused_sampled_adamw_step``) at I=100, n=400, m=30 and I=1000, n=20, m=5, B=1024, and
relu_readout_topk forward (B=1024, d=256, n=65536, k=32). Both builds must offer the public API used
here (``supcomp.ops.sparse_encode``, ``supcomp.ops.relu_readout_topk``, ``supcomp.tms.train``).
``--title`` names the section (another comparison keeps its own); the environment (for example
``SUPCOMP_CPU_CAPABILITY``) passes to both builds' processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common.results import put_section  # noqa: E402

CASE = r"""
import statistics, sys, time
import torch
import supcomp

name = sys.argv[1]
g = torch.Generator().manual_seed(0)
if name == "sparse_encode fwd+bwd":
    from supcomp.ops import sparse_encode

    W = torch.randn(65536, 256, generator=g).requires_grad_()
    idx = torch.randint(0, 65536, (8192, 32), generator=g)
    val = torch.rand(8192, 32, generator=g).requires_grad_()
    gh = torch.randn(8192, 256, generator=g)

    def step(_):
        sparse_encode(idx, val, W).backward(gh)
        W.grad = val.grad = None
elif name.startswith("relu_readout_topk"):
    from supcomp.ops import relu_readout_topk

    h = torch.randn(1024, 256, generator=g)
    W = torch.randn(65536, 256, generator=g)
    b = torch.randn(65536, generator=g) * 0.1

    def step(_):
        relu_readout_topk(h, W, b, 32)
else:
    from supcomp.tms import ToyModelConfig
    from supcomp.tms.data import BatchSampler
    from supcomp.tms.model import ToyModel
    from supcomp.tms.train import FusedAdamW, fused_sampled_adamw_step

    I, n, m = (100, 400, 30) if "I=100 " in name else (1000, 20, 5)
    cfg = ToyModelConfig(n_instances=I, n_features=n, n_hidden=m,
                         feature_probability=torch.logspace(0, -1.30103, I)[:, None].expand(I, n).tolist())
    model, sampler = ToyModel(cfg), BatchSampler(cfg, 1024)
    opt = FusedAdamW(model)

    def step(s):
        fused_sampled_adamw_step(model, sampler, s, opt)

for s in range(3):
    step(s)
ts = []
for s in range(3, 28):
    t0 = time.perf_counter()
    step(s)
    ts.append(time.perf_counter() - t0)
print(1e3 * statistics.median(ts))
"""

CASES = (
    "sparse_encode fwd+bwd",
    "TMS step I=100 n=400 m=30",
    "TMS step I=1000 n=20 m=5",
    "relu_readout_topk fwd B=1024 n=65536 k=32",
)
TITLE = "Two builds, same machine (`python benchmarks/compare_builds.py OTHER_TREE`)"


def run_case(tree: str, case: str) -> float:
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, "-c", CASE, case], env=env, cwd="/", capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {case} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def git_rev(tree: str) -> str:
    out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or tree


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("other", help="the other checkout, extension built in place")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--append", help="put the section into this file (benchmarks/RESULTS.md)")
    ap.add_argument("--title", default=TITLE, help="the section title (default: %(default)s)")
    ap.add_argument("--note", default="", help="a sentence for the section (what the two builds are)")
    args = ap.parse_args()
    this = os.path.dirname(HERE)
    trees = {"this": this, "other": os.path.abspath(args.other)}
    ms = {(t, c): [] for t in trees for c in CASES}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for c in CASES:
            for t in order:
                ms[(t, c)].append(run_case(trees[t], c))
                print(f"round {r + 1} {t:5s} {c:42s} {ms[(t, c)][-1]:8.1f} ms", file=sys.stderr)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "## " + args.title,
        "",
        *([args.note, ""] if args.note else []),
        f"This tree (git {git_rev(this)}) against git {git_rev(trees['other'])}, {args.rounds} rounds of "
        f"alternating fresh processes (25 timed calls each, median per process, median over rounds), "
        f"torch {__import__('torch').__version__}, load average at the end {load}.",
        "",
        f"| case | this, ms | git {git_rev(trees['other'])}, ms | this / other |",
        "|---|--:|--:|--:|",
    ]
    for c in CASES:
        a, b = statistics.median(ms[("this", c)]), statistics.median(ms[("other", c)])
        lines.append(f"| {c} | {a:.1f} | {b:.1f} | {a / b:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        put_section(args.append, text)


if __name__ == "__main__":
    main()
