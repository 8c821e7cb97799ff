"""Peak extra memory of one forward call of a provider, each in a fresh subprocess.

After a tiny warm-up call (loads code, starts thread pools) and allocating the shared inputs, the
kernel's peak-RSS counter (VmHWM) is reset through /proc/self/clear_refs; the extra memory is
VmHWM - VmRSS-before over building the provider's own input format (e.g. the dense x) plus one call.
"""

from __future__ import annotations

import json
import subprocess
import sys

from . import cases
from .machine import BENCH_DIR

TEXT = (
    "Forward, one call per fresh subprocess: peak RSS (VmHWM, reset with /proc/self/clear_refs after the "
    "shared inputs are allocated and a tiny warm-up call) minus the RSS at that point; it covers building "
    "the provider's own input format (the dense x, the CSR x) and the call, including its output. "
    "**ratio = peer extra memory / supcomp extra memory** (> 1: supcomp needs less)."
)

_SCRIPT = r"""
import gc, json, resource, sys
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["here"])
import torch
torch.set_num_threads(cfg["threads"])
from common import cases

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MB (kB / 1024)
    return None

op, prov, s = cfg["op"], cfg["provider"], cfg["size"]
tiny = cases.make_inputs(op, cases.TINY[op])
cases.make_provider(op, "fwd", prov, tiny, cases.TINY[op])()   # warm code paths
del tiny
gc.collect()
inp = cases.make_inputs(op, s)
gc.collect()
base = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    method = "VmHWM after clear_refs"
except OSError:
    method = "ru_maxrss"
before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
fn = cases.make_provider(op, "fwd", prov, inp, s)
out = fn()
if method == "ru_maxrss":
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    extra = peak - max(base, before_max)
else:
    peak = status("VmHWM")
    extra = peak - base
print("RESULT " + json.dumps(dict(base_mb=base, peak_mb=peak, extra_mb=extra, method=method)))
"""


def measure(op: str, providers: list[str], quick: bool, threads: int, log=print) -> list[dict]:
    """One row per provider at the op's first size: extra_mb (or error), and ratio against supcomp."""
    s = cases.SIZES["quick" if quick else "full"][op][0]
    rows = []
    for prov in providers:
        cfg = dict(here=BENCH_DIR, threads=threads, op=op, provider=prov, size=s)
        row = dict(op=op, provider=prov, size=cases.size_label(op, s))
        try:
            p = subprocess.run(
                [sys.executable, "-c", _SCRIPT, json.dumps(cfg)], capture_output=True, text=True, timeout=300
            )
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not line:
                row["error"] = (p.stderr.strip().splitlines() or [f"rc {p.returncode}"])[-1]
            else:
                row.update(json.loads(line[-1][7:]))
        except subprocess.TimeoutExpired:
            row["error"] = "timeout"
        log(f"  memory {op} {prov}: " + (f"{row['extra_mb']:.1f} MB" if "extra_mb" in row else row["error"]))
        rows.append(row)
    ref = next((r for r in rows if r["provider"] == "supcomp" and "extra_mb" in r), None)
    for r in rows:
        if ref is not None and "extra_mb" in r and r["provider"] != "supcomp":
            r["ratio"] = r["extra_mb"] / max(ref["extra_mb"], 1e-3)
    return rows


def format_table(rows: list[dict]) -> str:
    out = ["| op | size | provider | peak extra memory MB | ratio |", "|---|---|---|--:|--:|"]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['op']} | {r['size']} | {cases.LABELS[r['provider']]} | failed: {r['error'][:80]} | — |")
            continue
        ratio = "1 (ref)" if r["provider"] == "supcomp" else (f"{r['ratio']:.1f}×" if r.get("ratio") else "—")
        prov = cases.LABELS[r["provider"]]
        prov = f"**{prov}**" if r["provider"] == "supcomp" else prov
        out.append(f"| {r['op']} | {r['size']} | {prov} | {r['extra_mb']:.1f} | {ratio} |")
    return "\n".join(out)
