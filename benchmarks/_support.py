"""Helpers of the pytest-benchmark suites (``bench_*.py``); see conftest.py."""
import os

import pytest

import cases

QUICK = os.environ.get("SUPCOMP_BENCH_QUICK", "") not in ("", "0")
THREADS = int(os.environ.get("SUPCOMP_BENCH_THREADS", "2"))


def sizes(op):
    return cases.SIZES["quick" if QUICK else "full"][op]


def params(op):
    """pytest params (size, mode, provider) of one op, with readable ids."""
    out = []
    for i, s in enumerate(sizes(op)):
        for mode, prov in cases.combos(op, QUICK):
            sid = "" if len(sizes(op)) == 1 else f"size{i}-"
            out.append(pytest.param(i, mode, prov, id=f"{sid}{mode}-{prov}"))
    return out


class CaseCache:
    """Inputs and upstream gradients of one op, built once per module and size."""

    def __init__(self, op):
        self.op = op
        self._inp = {}
        self._go = {}

    def inputs(self, i):
        if i not in self._inp:
            self._inp.clear()
            self._go.clear()
            self._inp[i] = cases.make_inputs(self.op, sizes(self.op)[i])
        return self._inp[i]

    def go(self, i):
        if i not in self._go:
            self._go[i] = cases.grad_out(self.op, self.inputs(i), sizes(self.op)[i])
        return self._go[i]


def run_benchmark(benchmark, cache: CaseCache, i: int, mode: str, provider: str):
    op = cache.op
    s = sizes(op)[i]
    inp = cache.inputs(i)
    fn = cases.make_provider(op, mode, provider, inp, s, cache.go(i) if mode == "fwd+bwd" else None)
    amount, unit = cases.work(op, mode, s, inp)
    benchmark.group = f"{op} {mode} {cases.size_label(op, s)}"
    benchmark.extra_info.update(op=op, mode=mode, size=cases.size_label(op, s), provider=provider,
                                label=cases.LABELS[provider], work=amount, work_unit=unit, threads=THREADS)
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        med = stats.stats.median
        key = "GB/s" if unit == "B" else "GFLOP/s"
        benchmark.extra_info[key + " (median)"] = round(amount / med / 1e9, 2)
