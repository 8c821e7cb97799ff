"""One op's table benchmark: every (mode, size) case of :mod:`common.cases`, timed, checked, written.

Timing (:func:`supcomp.utils.timing.time_interleaved`): one call of each provider first, whose output
is checked against supcomp's (a provider that raises is reported as failed, a mismatch is flagged);
then the providers run interleaved, one call of each per round with the order rotated every round,
each provider for about ``TIMING``'s seconds of timed calls (between ``min_reps`` and ``reps``
samples; a provider with all its samples sits out later rounds). Medians and interpolated
20th/80th percentiles are reported.

The machine may be shared: before each case the benchmark waits (``Options.wait_quiet_s``) for other
processes to go quiet, records the CPU share other processes took during the case, and reruns a
disturbed case once when the machine has gone quiet, keeping the less disturbed run.
"""

from __future__ import annotations

import gc
import json
import time

from supcomp.utils.timing import time_interleaved

from . import cases, memory
from .cli import Options
from .load import CpuMeter, QuietWaiter
from .machine import FLOP_CEILING, MEM_CEILING, RunContext
from .results import heading

TIMING = {
    "full": dict(budget_per_provider_s=4.0, min_reps=5, reps=150),
    "quick": dict(budget_per_provider_s=0.1, min_reps=3, reps=15),
}
RETRY_ABOVE = 0.25  # rerun a case during which other processes used more than this share of the CPUs


def _rate(amount: float, unit: str, seconds: float) -> tuple[float, str, float]:
    """(value, unit, fraction of the ceiling) of ``amount`` of work done in ``seconds``."""
    r = amount / seconds
    if unit == "B":
        return r / 1e9, "GB/s", r / MEM_CEILING
    return r / 1e9, "GFLOP/s", r / FLOP_CEILING


def _failed(e: Exception) -> str:
    return f"failed: {type(e).__name__}: {str(e)[:120]}"


def run_case(op: str, mode: str, s: dict, *, quick: bool, log=print) -> list[dict]:
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
            notes[nm] = _failed(e)
            log(f"  {op} {mode} {nm}: {notes[nm]}")
            continue
        if time.perf_counter() - t0 > 1:
            log(f"  {op} {mode} {nm}: set-up {time.perf_counter() - t0:.1f} s")
    firsts = {}
    for nm in list(fns):  # the warm-up call of each provider, its output checked against supcomp's
        try:
            firsts[nm] = fns[nm]()
        except Exception as e:
            notes[nm] = _failed(e)
            log(f"  {op} {mode} {nm}: {notes[nm]}")
            del fns[nm]
    ref = firsts.get("supcomp")
    for nm, out in firsts.items():
        bad = None if nm == "supcomp" or ref is None else cases.compare(op, mode, ref, out)
        if bad:
            notes[nm] = "MISMATCH vs supcomp: " + bad
            log(f"  {op} {mode} {nm}: {notes[nm]}")
    del firsts, ref
    gc.collect()
    tm = TIMING["quick" if quick else "full"]
    meter = CpuMeter()
    times = (
        time_interleaved(
            fns, reps=tm["reps"], warmup=0, min_reps=tm["min_reps"], budget_per_provider_s=tm["budget_per_provider_s"]
        )
        if fns
        else {}
    )
    foreign = meter.foreign()
    amount, unit = cases.work(op, mode, s, inp)
    med_sc = times["supcomp"].median if "supcomp" in times else None
    rows = []
    for nm in names:
        row = dict(
            op=op,
            mode=mode,
            size=cases.size_label(op, s),
            provider=nm,
            label=cases.LABELS[nm],
            note=notes.get(nm, ""),
            foreign_cpu=foreign,
        )
        if nm in times:
            t = times[nm]
            val, u, frac = _rate(amount, unit, t.median)
            df = cases.dense_flops(op, mode, nm, s)
            if df:
                row["info"] = f"its dense GEMMs: {df / t.median / 1e9:.0f} GFLOP/s"
            row.update(
                median_ms=1e3 * t.median,
                p20_ms=1e3 * t.p20,
                p80_ms=1e3 * t.p80,
                repeats=len(t.samples),
                ratio=(t.median / med_sc) if med_sc else None,
                rate=val,
                rate_unit=u,
                ceiling_frac=frac,
            )
        rows.append(row)
    del fns, inp, go
    gc.collect()
    return rows


def run_cases(op: str, opts: Options) -> list[dict]:
    """Every size and mode of ``op``, waiting for a quiet machine before each case and rerunning a
    disturbed case once (see the module docstring)."""
    log = opts.log
    wait = QuietWaiter(opts.wait_quiet_s, log=log)
    t_all = time.perf_counter()
    rows = []
    for s in cases.SIZES["quick" if opts.quick else "full"][op]:
        for mode in cases.modes(op):
            best = None
            wait()
            for attempt in range(2):
                t0 = time.perf_counter()
                r = run_case(op, mode, s, quick=opts.quick, log=log)
                fc = r[0].get("foreign_cpu")
                log(
                    f"{op} {mode} {cases.size_label(op, s)}: {time.perf_counter() - t0:.1f} s"
                    + (f", other processes used {100 * fc:.0f}% of the CPUs" if fc is not None else "")
                )
                for x in r:
                    if "median_ms" in x:
                        log(f"    {x['provider']:<18}{x['median_ms']:>10.2f} ms  x{x['ratio']:.2f}")
                if best is None or (fc or 0) < (best[0].get("foreign_cpu") or 0):
                    best = r
                if attempt or (fc or 0) <= RETRY_ABOVE or time.perf_counter() - t_all > opts.retry_until_s:
                    break
                f = wait()
                if f is None or f >= 0.1:
                    break  # still busy: a rerun would be as disturbed
                log("  that run was disturbed; the machine is quiet now, running the case again")
            rows += best
    return rows


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
        out.append(
            f"| {r['op']} | {r['mode']} | {r['size']} | {prov} | {_fmt_ms(r['median_ms'])} | "
            f"{_fmt_ms(r['p20_ms'])}–{_fmt_ms(r['p80_ms'])} | {ratio} | "
            f"{r['rate']:.1f} {r['rate_unit']} | {100 * r['ceiling_frac']:.0f}% |"
        )
    return "\n".join(out)


def format_targets(op: str, rows: list[dict], mrows: list[dict], targets=(), memory_target=None) -> str:
    """``targets``: (mode, peer, min ratio, text); ``memory_target``: (peer, min ratio, text)."""
    out = []
    for mode, peer, want, text in targets:
        for r in rows:
            if (r["mode"], r["provider"]) == (mode, peer) and r.get("ratio"):
                ok = "yes" if r["ratio"] >= want else "**no**"
                out.append(f"| {op} {mode} ({r['size']}): {text} | {r['ratio']:.2f}× | {ok} |")
    if memory_target is not None:
        peer, want, text = memory_target
        for r in mrows:
            if r["provider"] == peer and r.get("ratio"):
                ok = "yes" if r["ratio"] > want else "**no**"
                out.append(f"| {op}: {text} | {r['ratio']:.1f}× less | {ok} |")
    return "\n".join(["| target | measured | met? |", "|---|--:|---|"] + out) if out else ""


def section(op: str, opts: Options, *, notes: str, targets=(), memory_providers=(), memory_target=None) -> str:
    """Run ``op``'s cases (and its peak-memory subprocesses) and return its RESULTS.md section."""
    ctx = RunContext()
    rows = run_cases(op, opts)
    mrows = (
        memory.measure(op, list(memory_providers), opts.quick, opts.threads, log=opts.log)
        if opts.memory and memory_providers
        else []
    )
    noisy = sorted(
        {f"{r['mode']} ({r['size']}): {100 * r['foreign_cpu']:.0f}%" for r in rows if (r.get("foreign_cpu") or 0) > 0.1}
    )
    L = [
        heading(op, f"ops/{op}.py", opts.flags),
        "",
        ctx.line()
        + (
            ""
            if not noisy
            else " Cases timed while other processes used > 10% of the CPUs (their numbers are "
            "disturbed): " + "; ".join(noisy) + "."
        ),
        "",
        notes.strip(),
        "",
        format_table(rows),
    ]
    if mrows:
        L += ["", "Peak memory. " + memory.TEXT, "", memory.format_table(mrows)]
    tt = format_targets(op, rows, mrows, targets, memory_target)
    if tt:
        L += ["", tt]
    L += ["", f"<!-- {op} rows", json.dumps(dict(rows=rows, memory=mrows), default=str), "-->"]
    return "\n".join(L) + "\n"
