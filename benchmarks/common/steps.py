"""Rows and table of the training-step benchmarks (``ops/tms_step.py``, ``cc_train.py``)."""

from __future__ import annotations

from supcomp.utils.timing import Timing

from .machine import FLOP_CEILING

CEILING_GFLOPS = FLOP_CEILING / 1e9


def medians(timings: dict[str, Timing]) -> dict[str, float]:
    """provider -> median seconds, from :func:`supcomp.utils.timing.time_interleaved`'s result."""
    return {k: t.median for k, t in timings.items()}


def step_rows(size: str, med: dict, flop: float, ref: str = "supcomp fused") -> list[dict]:
    """One row per provider: ms/step, steps/s, speed-up of ``ref`` (peer time / ref time), GFLOP/s, % of ceiling."""
    return [
        dict(
            size=size,
            provider=k,
            ms=1e3 * t,
            steps_per_s=1 / t,
            ratio=t / med[ref],
            gflops=flop / t / 1e9,
            pct=100 * flop / t / 1e9 / CEILING_GFLOPS,
        )
        for k, t in med.items()
    ]


def format_table(
    rows,
    first: str = "size",
    gflops_label: str = "GFLOP/s",
    ms_digits: int = 1,
    sps_digits: int = 2,
    pct_digits: int = 0,
) -> str:
    lines = [
        f"| {first} | provider | ms / step | steps / s | supcomp speed-up (peer time / supcomp time) | "
        f"{gflops_label} | % of {CEILING_GFLOPS:.0f} GFLOP/s |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['provider']} | {r['ms']:.{ms_digits}f} | {r['steps_per_s']:.{sps_digits}f} | "
            f"{r['ratio']:.2f}× | {r['gflops']:.1f} | {r['pct']:.{pct_digits}f}% |"
        )
    return "\n".join(lines)
