"""supcomp.sae against sparsify and SAELens: one TopK SAE training step, and drawing SynthSAEBench-16k batches.

    /work/saevenv/bin/python benchmarks/sae_bench.py [--quick] [--append benchmarks/RESULTS.md]

Run it with an interpreter that has supcomp's requirements plus ``eai-sparsify`` and ``sae-lens`` (a
separate environment: both pull many packages). Every measurement runs in a fresh subprocess: build the
model, the Adam optimiser and one batch, two untimed steps (Adam's state then exists), reset the
kernel's peak-RSS counter (``/proc/self/clear_refs``), time ``reps`` steps, and report the median step
and the peak extra memory of a step (VmHWM minus the RSS before the timed steps). AuxK is off in
every provider (no latent is dead this early; sparsify's default ``auxk_alpha`` is 0), so the step is
encoder + decoder + backward + Adam + the unit-norm decoder rule where the library has one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

_STEP = r"""
import json, os, sys, time, statistics
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
B, d, n, k = cfg["B"], cfg["d"], cfg["n"], cfg["k"]
x = torch.randn(B, d)
prov = cfg["provider"]

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

if prov == "supcomp":
    from supcomp.sae import SAE, SAEConfig
    sae = SAE(SAEConfig(d=d, n=n, k=k, k_aux=0))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4, eps=6.25e-10, fused=True)
    def step():
        out = sae(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
elif prov == "sparsify":
    from sparsify import SparseCoder, SparseCoderConfig
    sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k), device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)
    def step():
        out = sae(x)
        opt.zero_grad(set_to_none=True)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()
elif prov == "saelens":
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, device="cpu"))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4, fused=True)
    def step():
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                       n_training_steps=0, is_logging_step=False))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
elif prov == "gemm":
    W = torch.randn(n, d); b = torch.zeros(n)
    def step():
        torch.addmm(b, x, W.T)
else:
    raise SystemExit("unknown provider " + prov)

for _ in range(2):
    step()
open("/proc/self/clear_refs", "w").write("5")
base = rss()
times = []
for _ in range(cfg["reps"]):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "extra_bytes": hwm() - base,
                  "peak_bytes": hwm()}))
"""

_WORLD = r"""
import json, sys, time, statistics
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(cfg["threads"])
B, prov, mode = cfg["B"], cfg["provider"], cfg["mode"]
if prov == "supcomp":
    from supcomp.sae import World, synthsaebench_16k
    w = World(synthsaebench_16k())
    if mode == "sparse":
        draw = lambda s: w.sample(B, s)
    else:
        draw = lambda s: w.sample_activations(B, s)[0]
else:
    from sae_lens.synthetic.synthetic_model import (HierarchyConfig, LowRankCorrelationConfig, SyntheticModel,
        SyntheticModelConfig, ZipfianFiringProbabilityConfig)
    from sae_lens.synthetic.firing_magnitudes import FoldedNormalMagnitudeConfig, LinearMagnitudeConfig
    mcfg = SyntheticModelConfig(num_features=16384, hidden_dim=768,
        firing_probability=ZipfianFiringProbabilityConfig(max_prob=0.4, min_prob=5e-4, exponent=0.5),
        hierarchy=HierarchyConfig(total_root_nodes=128, branching_factor=4, mutually_exclusive_portion=1.0,
            mutually_exclusive_min_depth=0, compensate_probabilities=True, scale_children_by_parent=True, max_depth=3),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        correlation=LowRankCorrelationConfig(correlation_scale=0.1, rank=25),
        orthogonalization=None, bias=0.5, seed=42)
    m = SyntheticModel(mcfg, device="cpu")
    if mode == "sparse":
        m.use_sparse_tensors = True
        draw = lambda s: m.activation_generator.sample(B)
    else:
        draw = lambda s: m.sample(B)
out = draw(0)
l0 = None
if prov == "supcomp" and mode == "sparse":
    l0 = float((out.indices >= 0).sum(1).float().mean())
elif prov == "saelens" and mode == "sparse":
    l0 = out.coalesce()._nnz() / B
times = []
for s in range(cfg["reps"]):
    t = time.perf_counter(); draw(s + 1); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "l0": l0}))
"""


def _import_dir() -> str:
    """A folder holding only a link to supcomp: the repository root on the path would let its ``kernels/``
    folder shadow the ``kernels`` package that sparsify and SAELens import."""
    import tempfile

    d = os.path.join(tempfile.gettempdir(), f"supcomp-sae-bench-{os.getuid()}")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "supcomp")
    target = os.path.join(os.path.dirname(HERE), "supcomp")
    if os.path.realpath(link) != os.path.realpath(target):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)
    return d


def _run(script: str, cfg: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = _import_dir()
    r = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cfg)], capture_output=True, text=True, env=env, cwd=env["PYTHONPATH"]
    )
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _mib(b):
    return f"{b / 2**20:.0f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 16384 only, 3 reps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--append", default=None, help="append the section to this Markdown file")
    ap.add_argument("--widths", default=None, help="comma-separated dictionary sizes (default: 16384,65536)")
    ap.add_argument("--no-step", action="store_true", help="skip the training-step table")
    ap.add_argument("--no-world", action="store_true", help="skip the world-sampling table")
    a = ap.parse_args()
    reps = 3 if a.quick else 5
    load0 = os.getloadavg()
    lines = ["", "## supcomp.sae: TopK SAE training step and SynthSAEBench-16k sampling vs sparsify and SAELens", ""]
    lines.append(
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {a.threads}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average at start "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}."
    )
    lines.append(
        f"- Command: `{os.path.basename(sys.executable)} benchmarks/sae_bench.py"
        f"{' --quick' if a.quick else ''}` (a separate venv with torch 2.13.0+cpu, eai-sparsify, sae-lens)."
    )
    lines.append(
        "- Step: B = 4096, d = 768, k = 32, Adam; median of the timed steps, each provider in a fresh "
        "subprocess; extra = peak RSS of the timed steps over the RSS before them."
    )
    lines.append("")
    lines.append("| n | provider | step (ms) | x GEMM | supcomp speed-up | extra memory | peak RSS |")
    lines.append("|---|---|---|---|---|---|---|")
    widths = [16384] if a.quick else [16384, 65536]
    if a.widths:
        widths = [int(w) for w in a.widths.split(",")]
    for n in [] if a.no_step else widths:
        res = {}
        for prov in ["gemm", "supcomp", "sparsify", "saelens"]:
            cfg = dict(provider=prov, B=4096, d=768, n=n, k=32, reps=reps if n <= 16384 else 3, threads=a.threads)
            res[prov] = _run(_STEP, cfg)
            print(n, prov, res[prov], flush=True)
        g = res["gemm"].get("median_s")
        s = res["supcomp"].get("median_s")
        for prov in ["gemm", "supcomp", "sparsify", "saelens"]:
            r = res[prov]
            if "error" in r:
                lines.append(f"| {n} | {prov} | error: {r['error'][:80]} | | | | |")
                continue
            t = r["median_s"]
            sp = f"{t / s:.2f}x" if s and prov in ("sparsify", "saelens") else ""
            lines.append(
                f"| {n} | {prov} | {t * 1e3:.0f} | {t / g:.2f} | {sp} | {_mib(r['extra_bytes'])} | {_mib(r['peak_bytes'])} |"
            )
    lines.append("")
    lines.append(
        "World sampling, SynthSAEBench-16k parameters (hierarchy, rank-25 correlation on), B = 4096 per batch. "
        "SAELens built without orthogonalisation (it does not change sampling); sparse = feature codes "
        "(supcomp: padded indices/values; SAELens: COO), dense = activations [B, 768]."
    )
    lines.append("")
    lines.append("| output | provider | ms / batch | samples / s | supcomp speed-up | mean L0 |")
    lines.append("|---|---|---|---|---|---|")
    for mode in [] if a.no_world else ["sparse", "dense"]:
        res = {}
        for prov in ["supcomp", "saelens"]:
            r = reps if prov == "supcomp" else (1 if mode == "sparse" else 2)  # SAELens sparse: minutes per batch
            res[prov] = _run(_WORLD, dict(provider=prov, B=4096, mode=mode, reps=r, threads=a.threads))
            print(mode, prov, res[prov], flush=True)
        s = res["supcomp"].get("median_s")
        for prov in ["supcomp", "saelens"]:
            r = res[prov]
            if "error" in r:
                lines.append(f"| {mode} | {prov} | error: {r['error'][:80]} | | | |")
                continue
            t = r["median_s"]
            sp = f"{t / s:.1f}x" if prov == "saelens" and s else ""
            l0 = f"{r['l0']:.1f}" if r.get("l0") is not None else ""
            lines.append(f"| {mode} | {prov} | {t * 1e3:.0f} | {4096 / t:,.0f} | {sp} | {l0} |")
    load1 = os.getloadavg()
    lines.append("")
    lines.append(f"- Load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (other jobs shared the 2 cores).")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
