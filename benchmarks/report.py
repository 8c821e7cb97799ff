#!/usr/bin/env python
"""Benchmark report of supcomp against its peers; writes benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/report.py                  # full sizes, ~5-10 min on 2 cores
    .venv/bin/python benchmarks/report.py --quick          # small sizes, ~20 s -> benchmarks/RESULTS-quick.md
    .venv/bin/python benchmarks/report.py --ops relu_readout_topk --no-memory

Timing: each case runs its providers interleaved (one call of each provider per
round, the order rotated every round) after a warm-up call of each, and reports
the median and the 20th/80th percentiles of ``time.perf_counter`` wall times.
The number of rounds follows from the warm-up time (a per-provider time budget,
clamped to [min, max] repeats). The machine may be shared: before each case the
script waits (``--wait-quiet``) for other processes to go quiet, records the CPU
share other processes took during the case, and reruns a disturbed case once.

Peak memory: each provider runs in a fresh subprocess; after a tiny warm-up
call (loads code, starts thread pools) and allocating the shared inputs, the
kernel's peak-RSS counter (VmHWM) is reset through /proc/self/clear_refs and the
extra memory is VmHWM - VmRSS-before over building the provider's own input
format (e.g. the dense x) plus one call.

Also importable: ``run_quick() -> list[dict]`` and ``format_table(rows) -> str``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

import cases  # noqa: E402

# Ceilings of the reference machine (2 cores of an AVX-512 AMD EPYC, 2 threads).
FLOP_CEILING = 190e9   # fp32 GEMM, FLOP/s
MEM_CEILING = 50e9     # memory bandwidth, bytes/s (46-56 GB/s measured)

# Timing budgets: seconds of timed calls per provider, and repeat bounds.
FULL_TIMING = dict(budget_s=4.0, min_reps=5, max_reps=150, warmup=1)
QUICK_TIMING = dict(budget_s=0.1, min_reps=3, max_reps=15, warmup=1)
# Per-provider minimum overrides (very slow peers).
MIN_REPS = {("sparse_encode", "fwd+bwd", "sparse_coo"): 3, ("sparse_encode", "fwd", "dense_mm"): 3}

# Targets of the project, evaluated in the report: (op, mode, peer, min ratio, text).
TARGETS = [
    ("sparse_encode", "fwd", "embedding_bag", 1.5, ">= 1.5x F.embedding_bag"),
    ("sparse_encode", "fwd+bwd", "embedding_bag", 1.5, ">= 1.5x F.embedding_bag"),
    ("relu_readout_topk", "fwd", "addmm_relu_topk", 2.0, ">= 2x topk(relu(addmm))"),
    ("relu_readout", "fwd", "addmm_relu", 0.9, "parity with relu(addmm) (>= 0.9x)"),
    ("relu_readout", "fwd+bwd", "addmm_relu", 0.9, "parity with relu(addmm) (>= 0.9x)"),
]
MEMORY_TARGET = ("relu_readout_topk", "addmm_relu_topk", 10.0, "< 1/10 the peak memory of topk(relu(addmm))")

# Peak-memory subprocess cases: (op, [providers]) in forward mode.
MEMORY_CASES = [
    ("relu_readout_topk", ["supcomp", "addmm_relu_topk"]),
    ("relu_readout", ["supcomp", "addmm_relu"]),
    ("sparse_encode", ["supcomp", "embedding_bag", "dense_mm", "sparse_csr"]),
]


# --------------------------------------------------------------------------- timing

def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def time_interleaved(fns: dict, *, budget_s: float, min_reps: int, max_reps: int, warmup: int = 1,
                     min_reps_for: dict | None = None, check=None, failed: dict | None = None,
                     ) -> dict[str, list[float]]:
    """Time each callable of ``fns``, interleaved. Returns name -> list of seconds.

    ``warmup`` calls of each provider first (the first one's outputs go to
    ``check(outputs)``; a provider whose warm-up raises is dropped and its error put in
    ``failed``, if given); then each provider gets ``clamp(budget_s / t_warmup)``
    timed calls, one provider after the other per round, the order rotated per round.
    """
    min_reps_for = min_reps_for or {}
    names = list(fns)
    firsts, t_warm = {}, {}
    for w in range(max(1, warmup)):
        for name in list(names):
            t0 = time.perf_counter()
            try:
                out = fns[name]()
            except Exception as e:  # a peer that fails is reported (as failed), not fatal
                if failed is None:
                    raise
                failed[name] = f"failed: {type(e).__name__}: {str(e)[:120]}"
                names.remove(name)
                continue
            t_warm[name] = time.perf_counter() - t0
            if w == 0 and check is not None:
                firsts[name] = out
            del out
    if check is not None:
        check(firsts)
    firsts.clear()
    gc.collect()
    reps = {nm: max(min_reps_for.get(nm, min_reps), min(max_reps, int(budget_s / max(t_warm[nm], 1e-9))))
            for nm in names}
    times = {nm: [] for nm in names}
    for r in range(max(reps.values(), default=0)):
        order = names[r % len(names):] + names[:r % len(names)]
        for nm in order:
            if len(times[nm]) < reps[nm]:
                fn = fns[nm]
                t0 = time.perf_counter()
                fn()
                times[nm].append(time.perf_counter() - t0)
    return times


class CpuMeter:
    """CPU time used by *other* processes while it runs, as a fraction of all CPUs
    (from /proc/stat minus this process and its children): a measure of how much
    a shared machine disturbed the timings."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def foreign(self) -> float | None:
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        other = (busy - self.busy0) - (self._own() - self.own0)
        return max(0.0, other / max(wall * (os.cpu_count() or 1), 1e-9))


def _rate(amount: float, unit: str, seconds: float) -> tuple[float, str, float]:
    """(value, unit, fraction of ceiling)."""
    if unit == "B":
        r = amount / seconds
        return r / 1e9, "GB/s", r / MEM_CEILING
    r = amount / seconds
    return r / 1e9, "GFLOP/s", r / FLOP_CEILING


def run_case(op: str, mode: str, s: dict, *, quick: bool, timing: dict, log=print) -> list[dict]:
    """Time all providers of one (op, mode, size); return table rows (supcomp first)."""
    inp = cases.make_inputs(op, s)
    go = cases.grad_out(op, inp, s) if mode == "fwd+bwd" else None
    names = [p for (m, p) in cases.combos(op, quick) if m == mode]
    fns, notes = {}, {}
    for nm in names:
        t0 = time.perf_counter()
        try:
            fns[nm] = cases.make_provider(op, mode, nm, inp, s, go)
        except Exception as e:  # a peer that does not run is reported, not fatal
            notes[nm] = f"failed: {type(e).__name__}: {str(e)[:120]}"
            log(f"  {op} {mode} {nm}: {notes[nm]}")
            continue
        if time.perf_counter() - t0 > 1:
            log(f"  {op} {mode} {nm}: set-up {time.perf_counter() - t0:.1f} s")

    def check(outs):
        ref = outs.get("supcomp")
        for nm, out in outs.items():
            if nm == "supcomp" or ref is None:
                continue
            bad = cases.compare(op, mode, ref, out)
            if bad:
                notes[nm] = "MISMATCH vs supcomp: " + bad
                log(f"  {op} {mode} {nm}: {notes[nm]}")

    min_for = {nm: v for (o, m, nm), v in MIN_REPS.items() if o == op and m == mode}
    meter = CpuMeter()
    times = time_interleaved(fns, check=check, min_reps_for=min_for, failed=notes, **timing)
    foreign = meter.foreign()
    amount, unit = cases.work(op, mode, s, inp)
    med_sc = statistics.median(times["supcomp"]) if "supcomp" in times else None
    rows = []
    for nm in names:
        row = dict(op=op, mode=mode, size=cases.size_label(op, s), provider=nm, label=cases.LABELS[nm],
                   note=notes.get(nm, ""), foreign_cpu=foreign)
        if nm in times:
            ts = times[nm]
            med = statistics.median(ts)
            val, u, frac = _rate(amount, unit, med)
            df = cases.dense_flops(op, mode, nm, s)
            if df:
                row["info"] = f"its dense GEMMs: {df / med / 1e9:.0f} GFLOP/s"
            row.update(median_ms=1e3 * med, p20_ms=1e3 * percentile(ts, 20), p80_ms=1e3 * percentile(ts, 80),
                       repeats=len(ts), ratio=(med / med_sc) if med_sc else None, rate=val, rate_unit=u,
                       ceiling_frac=frac)
        rows.append(row)
    del fns, inp, go
    gc.collect()
    return rows


def wait_quiet(max_wait_s: float, threshold: float = 0.1, log=print) -> float | None:
    """Wait (at most ``max_wait_s``) until other processes use < ``threshold`` of the CPUs over 1 s."""
    t0 = time.perf_counter()
    said = False
    while True:
        m = CpuMeter()
        time.sleep(1.0)
        f = m.foreign()
        if f is None or f < threshold:
            return f
        if time.perf_counter() - t0 >= max_wait_s:
            log(f"  machine still busy after {max_wait_s:.0f} s (other processes {100 * f:.0f}%), going on")
            return f
        if not said:
            log(f"  other processes use {100 * f:.0f}% of the CPUs; waiting up to {max_wait_s:.0f} s")
            said = True


def run_all(quick: bool, ops=None, log=print, quiet_wait_s: float = 0.0, retry_above: float = 0.25,
            retry_until_s: float = 0.0, total_wait_s: float = 120.0) -> list[dict]:
    """All cases. Before each case wait up to ``quiet_wait_s`` for a quiet machine (at
    most ``total_wait_s`` of waiting in all). A case during which other processes used
    more than ``retry_above`` of the CPUs is run once more, if the machine has gone
    quiet by then and less than ``retry_until_s`` have passed; the less disturbed run is kept."""
    timing = QUICK_TIMING if quick else FULL_TIMING
    t_all = time.perf_counter()
    waited = 0.0

    def wait():
        nonlocal waited
        if quiet_wait_s <= 0 or waited >= total_wait_s:
            return None
        t0 = time.perf_counter()
        f = wait_quiet(min(quiet_wait_s, total_wait_s - waited), log=log)
        waited += time.perf_counter() - t0
        return f

    rows = []
    for op in cases.OPS:
        if ops and op not in ops:
            continue
        for s in cases.SIZES["quick" if quick else "full"][op]:
            for mode in cases.modes(op):
                best = None
                wait()
                for attempt in range(2):
                    t0 = time.perf_counter()
                    r = run_case(op, mode, s, quick=quick, timing=timing, log=log)
                    fc = r[0].get("foreign_cpu")
                    log(f"{op} {mode} {cases.size_label(op, s)}: {time.perf_counter() - t0:.1f} s"
                        + (f", other processes used {100 * fc:.0f}% of the CPUs" if fc is not None else ""))
                    for x in r:
                        if "median_ms" in x:
                            log(f"    {x['provider']:<18}{x['median_ms']:>10.2f} ms  x{x['ratio']:.2f}")
                    if best is None or (fc or 0) < (best[0].get("foreign_cpu") or 0):
                        best = r
                    if attempt or (fc or 0) <= retry_above or time.perf_counter() - t_all > retry_until_s:
                        break
                    f = wait()
                    if f is None or f >= 0.1:
                        break  # still busy: a rerun would be as disturbed
                    log("  that run was disturbed; the machine is quiet now, running the case again")
                rows += best
    return rows


def run_quick(threads: int | None = None, log=None) -> list[dict]:
    """A few-second version at small sizes (no torch.compile, no COO backward, no
    memory subprocesses). Returns the table rows; ``format_table(rows)`` prints them."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return run_all(quick=True, log=log or (lambda *a: None))
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- tables

def _fmt_ms(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def format_table(rows: list[dict]) -> str:
    """The timing table in Markdown."""
    head = "| op | mode | size | provider | median ms | p20–p80 | ratio vs peer | GB/s or GFLOP/s | % of ceiling |"
    out = [head, "|---|---|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        if "median_ms" not in r:
            out.append(f"| {r['op']} | {r['mode']} | {r['size']} | {r['label']} | — | — | — | — | {r['note']} |")
            continue
        if r["provider"] == "supcomp":
            ratio = "1 (ref)"
        elif r["ratio"] is None:
            ratio = "—"
        else:
            ratio = f"{r['ratio']:.2f}×"
        label = r["label"] + (f" ({r['info']})" if r.get("info") else "") + (f" ⚠ {r['note']}" if r.get("note") else "")
        prov = f"**{label}**" if r["provider"] == "supcomp" else label
        out.append(f"| {r['op']} | {r['mode']} | {r['size']} | {prov} | {_fmt_ms(r['median_ms'])} | "
                   f"{_fmt_ms(r['p20_ms'])}–{_fmt_ms(r['p80_ms'])} | {ratio} | "
                   f"{r['rate']:.1f} {r['rate_unit']} | {100 * r['ceiling_frac']:.0f}% |")
    return "\n".join(out)


def format_memory_table(mrows: list[dict]) -> str:
    out = ["| op | size | provider | peak extra memory MB | ratio |", "|---|---|---|--:|--:|"]
    for r in mrows:
        if r.get("error"):
            out.append(f"| {r['op']} | {r['size']} | {cases.LABELS[r['provider']]} | failed: {r['error'][:80]} | — |")
            continue
        ratio = "1 (ref)" if r["provider"] == "supcomp" else (f"{r['ratio']:.1f}×" if r.get("ratio") else "—")
        prov = cases.LABELS[r["provider"]]
        prov = f"**{prov}**" if r["provider"] == "supcomp" else prov
        out.append(f"| {r['op']} | {r['size']} | {prov} | {r['extra_mb']:.1f} | {ratio} |")
    return "\n".join(out)


def format_targets(rows: list[dict], mrows: list[dict]) -> str:
    out = ["| target | measured | met? |", "|---|--:|---|"]
    for op, mode, peer, want, text in TARGETS:
        for r in rows:
            if (r["op"], r["mode"], r["provider"]) == (op, mode, peer) and r.get("ratio"):
                ok = "yes" if r["ratio"] >= want else "**no**"
                out.append(f"| {op} {mode} ({r['size']}): {text} | {r['ratio']:.2f}× | {ok} |")
    op, peer, want, text = MEMORY_TARGET
    for r in mrows:
        if (r["op"], r["provider"]) == (op, peer) and r.get("ratio"):
            ok = "yes" if r["ratio"] > want else "**no**"
            out.append(f"| {op}: {text} | {r['ratio']:.1f}× less | {ok} |")
    return "\n".join(out)


# --------------------------------------------------------------------------- memory

_MEM_SCRIPT = r"""
import gc, json, resource, sys
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["here"])
import torch
torch.set_num_threads(cfg["threads"])
import cases

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


def measure_memory(quick: bool, threads: int, ops=None, log=print) -> list[dict]:
    sizes = cases.SIZES["quick" if quick else "full"]
    mrows = []
    for op, provs in MEMORY_CASES:
        if ops and op not in ops:
            continue
        s = sizes[op][0]
        group = []
        for prov in provs:
            cfg = dict(here=HERE, threads=threads, op=op, provider=prov, size=s)
            row = dict(op=op, provider=prov, size=cases.size_label(op, s))
            try:
                p = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, json.dumps(cfg)], capture_output=True,
                                   text=True, timeout=300)
                line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                if p.returncode != 0 or not line:
                    row["error"] = (p.stderr.strip().splitlines() or ["rc %d" % p.returncode])[-1]
                else:
                    row.update(json.loads(line[-1][7:]))
            except subprocess.TimeoutExpired:
                row["error"] = "timeout"
            log(f"  memory {op} {prov}: " + (f"{row['extra_mb']:.1f} MB" if "extra_mb" in row else row["error"]))
            group.append(row)
        ref = next((r for r in group if r["provider"] == "supcomp" and "extra_mb" in r), None)
        for r in group:
            if ref is not None and "extra_mb" in r and r["provider"] != "supcomp":
                r["ratio"] = r["extra_mb"] / max(ref["extra_mb"], 1e-3)
        mrows += group
    return mrows


# --------------------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = line.split(":", 1)[1].split()
                    return ", ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in fl)
    except OSError:
        pass
    return ""


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def _git() -> str:
    try:
        root = os.path.dirname(HERE)
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "n/a"
    except Exception:
        return "n/a"


def probe_ceilings() -> dict:
    """Quick probes of this run's GEMM and copy throughput (under the current load)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    gemm = 2 * 2048 ** 3 / statistics.median(ts)
    src = torch.randn(64 << 20)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        ts.append(time.perf_counter() - t0)
    copy = 2 * src.numel() * 4 / statistics.median(ts)  # read + write
    return dict(gemm_gflops=gemm / 1e9, copy_gbs=copy / 1e9)


def machine_info(threads: int) -> dict:
    import supcomp
    return dict(
        cpu=_cpu_model(), flags=_cpu_flags(), cores=os.cpu_count(), torch=torch.__version__,
        threads=threads, python=platform.python_version(), supcomp=getattr(supcomp, "__version__", "?"),
        git=_git(), load_start=_loadavg(),
        date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(path: str, info: dict, rows: list[dict], mrows: list[dict], quick: bool, command: str,
                 elapsed: float, probe: dict | None) -> None:
    L = []
    L.append("# supcomp benchmarks" + (" (quick sizes)" if quick else ""))
    L.append("")
    L.append(f"Generated by `{command}` on {info['date']} in {elapsed / 60:.1f} min.")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- CPU: {info['cpu']} ({info['flags']}), {info['cores']} cores visible")
    L.append(f"- torch {info['torch']}, {info['threads']} threads (torch.set_num_threads; supcomp's C++ kernels "
             f"follow it); Python {info['python']}; supcomp {info['supcomp']} at git {info['git']}")
    L.append(f"- load average (1/5/15 min): {info['load_start']} at start, {info['load_end']} at end "
             "(the machine is shared: a load above the thread count means the numbers are pessimistic)")
    L.append(f"- ceilings used for \"% of ceiling\": {FLOP_CEILING / 1e9:.0f} GFLOP/s fp32 GEMM, "
             f"{MEM_CEILING / 1e9:.0f} GB/s memory (reference values of this 2-core machine)")
    if info.get("foreign_cpu") is not None:
        L.append(f"- other processes used {100 * info['foreign_cpu']:.0f}% of the CPUs during the run "
                 "(/proc/stat minus this process and its children)")
        noisy = sorted({f"{r['op']} {r['mode']} ({r['size']}): {100 * r['foreign_cpu']:.0f}%" for r in rows
                        if (r.get("foreign_cpu") or 0) > 0.1})
        if noisy:
            L.append("- cases timed while other processes used > 10% of the CPUs (their numbers are disturbed): "
                     + "; ".join(noisy))
    if probe:
        L.append(f"- probes this run (under the load above): torch.mm 2048³ {probe['gemm_gflops']:.0f} GFLOP/s, "
                 f"256 MiB copy {probe['copy_gbs']:.1f} GB/s (read + write)")
    L.append("")
    L.append("## How to read")
    L.append("")
    L.append("- All fp32 on CPU. Times are wall-clock `time.perf_counter` per call: median and 20th–80th "
             "percentile over the repeats, after one warm-up call per provider; providers of a case run "
             "interleaved (round-robin, rotated every round), so load changes hit all of them alike.")
    L.append("- The machine is shared: before each case the script waits (up to a limit) until other processes "
             "use < 10% of the CPUs, measures how much CPU other processes took during each case (/proc/stat), "
             "and runs a case again when that exceeded 25% and the machine has gone quiet, keeping the less "
             "disturbed run. The share per case is in the JSON below; cases above 10% are listed under Machine.")
    L.append("- **ratio vs peer = peer time / supcomp time**: > 1 means supcomp is faster than that peer. "
             "The supcomp row is the reference (1). For the \"supcomp unfused\" row it is unfused / fused time.")
    L.append("- Before timing, every peer's output (and gradients, for fwd+bwd) is checked against supcomp's "
             "(relative error ≤ 2e-3); a mismatch would be flagged ⚠ in the table.")
    L.append("- GB/s and GFLOP/s count the same work for every provider of a case (so they are ∝ 1/time):")
    L.append("  - `sparse_encode` bytes, fwd = 4·B·k·d (the B·k gathered rows of W) + 12·B·k (int64 indices + "
             "fp32 values) + 4·B·d (write h); fwd+bwd = fwd + 12·B·k·d + 4·n·d + 8·B·d + 24·B·k (gather of W "
             "rows again for grad_values, read-modify-write of the touched rows of grad_W, zeroing grad_W, "
             "reading grad_h twice, indices/values and grad_values). A traffic model, not measured traffic; "
             f"% of ceiling is against {MEM_CEILING / 1e9:.0f} GB/s.")
    L.append("  - `relu_readout`, `relu_readout_topk`: fwd 2·B·n·d FLOPs (the GEMM), fwd+bwd 6·B·n·d; "
             f"% of ceiling against {FLOP_CEILING / 1e9:.0f} GFLOP/s.")
    L.append("  - `superpose` (toy model): useful FLOPs, fwd = 2·I·B·n·d (read-out) + 2·I·B·nnz·d (read-in over "
             "the nonzeros; nnz = mean nonzeros per row), fwd+bwd = 3× that. The dense einsum's "
             "2·I·B·n·d read-in is not counted as work.")
    L.append("- Peers: `F.embedding_bag(indices, W, per_sample_weights=values, mode=\"sum\")` (the strongest), "
             "dense `x @ W` with x the dense [B, n] matrix (built outside the timing; it is 4·B·n bytes = "
             "2 GiB at B=8192, n=65536), `torch.sparse.mm` with x as a coalesced COO or a CSR tensor "
             "(fwd+bwd: x and W require grad). For sparse_encode fwd+bwd the gradients of values and W are "
             "computed. For `superpose` fwd+bwd, W and b require grad (x / values are data), "
             "and `torch.compile` is compiled once before timing.")
    L.append("")
    L.append("## Timings")
    L.append("")
    L.append(format_table(rows))
    L.append("")
    if mrows:
        L.append("## Peak memory")
        L.append("")
        L.append("Forward, one call per fresh subprocess: peak RSS (VmHWM, reset with /proc/self/clear_refs after "
                 "the shared inputs are allocated and a tiny warm-up call) minus the RSS at that point; it covers "
                 "building the provider's own input format (the dense x, the CSR x) and the call, including its "
                 "output. **ratio = peer extra memory / supcomp extra memory** (> 1: supcomp needs less).")
        L.append("")
        L.append(format_memory_table(mrows))
        L.append("")
    L.append("## Targets")
    L.append("")
    L.append(format_targets(rows, mrows))
    L.append("")
    L.append("Raw rows (JSON) are in the HTML comment below.")
    L.append("")
    L.append("<!-- rows")
    L.append(json.dumps(dict(machine=info, probe=probe, rows=rows, memory=mrows), indent=None, default=str))
    L.append("-->")
    tail = _kept_sections(path)
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n" + tail)


# Sections of RESULTS.md written by other scripts (GPU report, U-AND, circuits, sweeps, the toy-model
# steps, ...) live after this report's raw-rows comment; a rerun keeps them (benchmarks/tms_train.py
# --append, which `make bench` runs next, replaces its own section in place).
_REGENERATED = ()


def _kept_sections(path: str) -> str:
    if not os.path.exists(path):
        return ""
    text = open(path).read()
    end = text.find("\n-->\n")
    if end < 0:
        return ""
    rest = text[end + len("\n-->\n"):]
    parts = rest.split("\n## ")
    kept = [parts[0]] + ["## " + p for p in parts[1:]]
    kept = [p for p in kept if not any(p.startswith(h) for h in _REGENERATED)]
    out = "\n".join(p.rstrip("\n") + "\n" for p in kept if p.strip())
    return ("\n" + out) if out else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds per op")
    ap.add_argument("--out", default=None, help="Markdown output (default benchmarks/RESULTS.md, "
                                                 "benchmarks/RESULTS-quick.md with --quick)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--ops", nargs="*", choices=cases.OPS, help="only these ops")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="S",
                    help="before each case wait up to S s for other processes to use < 10%% of the CPUs, "
                         "at most 120 s in all (default 20, 0 with --quick)")
    ap.add_argument("--no-retry", action="store_true",
                    help="do not rerun a case disturbed by other processes (> 25%% of the CPUs)")
    args = ap.parse_args(argv)
    out = args.out or os.path.join(HERE, "RESULTS-quick.md" if args.quick else "RESULTS.md")
    command = " ".join([os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd())
                        else sys.executable] + [os.path.relpath(os.path.abspath(__file__))] + sys.argv[1:])
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    meter = CpuMeter()
    info = machine_info(args.threads)
    print(f"{info['cpu']}, torch {info['torch']}, {args.threads} threads, load {info['load_start']}", flush=True)
    probe = probe_ceilings()
    print(f"probe: GEMM {probe['gemm_gflops']:.0f} GFLOP/s, copy {probe['copy_gbs']:.1f} GB/s", flush=True)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 20.0)
    rows = run_all(args.quick, ops=args.ops, log=log, quiet_wait_s=wait,
                   retry_until_s=0.0 if (args.no_retry or args.quick) else 300.0)
    mrows = [] if args.no_memory else measure_memory(args.quick, args.threads, ops=args.ops, log=log)
    info["load_end"] = _loadavg()
    info["foreign_cpu"] = meter.foreign()
    elapsed = time.perf_counter() - t_start
    write_report(out, info, rows, mrows, args.quick, command, elapsed, probe)
    print()
    print(format_table(rows))
    if mrows:
        print()
        print(format_memory_table(mrows))
    print()
    print(format_targets(rows, mrows))
    print(f"\nwrote {out} in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
