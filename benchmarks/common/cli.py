"""The command line every ``benchmarks/ops/<op>.py`` shares, and the options the driver passes on.

    python benchmarks/ops/<op>.py [--quick] [--threads N] [--append benchmarks/RESULTS.md | --out FILE]
                                  [--no-memory] [--wait-quiet S] [--no-retry]

Each per-op module has ``run(opts: Options) -> str``, its RESULTS.md section; ``--append`` puts it
into the file in place of its older version (:func:`common.results.put_section`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .results import put_section


def _log(*a):
    print(*a, flush=True)


@dataclass
class Options:
    """quick: small sizes; threads: torch threads (supcomp's C++ kernels follow them); memory: run the
    peak-memory subprocesses; wait_quiet_s: before each case wait up to this long for other processes
    to go quiet; retry_until_s: rerun a disturbed case while less than this many seconds have passed."""

    quick: bool = False
    threads: int = 2
    memory: bool = True
    wait_quiet_s: float = 0.0
    retry_until_s: float = 0.0
    log: Callable = field(default=_log)

    @property
    def flags(self) -> str:
        """The command-line flags that matter for a section's heading."""
        return " --quick" if self.quick else ""


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quick", action="store_true", help="small sizes, seconds per op")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="S",
        help="before each case wait up to S s for other processes to use < 10%% of the CPUs, "
        "at most 120 s in all (default 20, 0 with --quick)",
    )
    ap.add_argument(
        "--no-retry", action="store_true", help="do not rerun a case disturbed by other processes (> 25%% of the CPUs)"
    )


def options(args: argparse.Namespace, log: Callable = _log) -> Options:
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 20.0)
    return Options(
        quick=args.quick,
        threads=args.threads,
        memory=not args.no_memory,
        wait_quiet_s=wait,
        retry_until_s=0.0 if (args.no_retry or args.quick) else 300.0,
        log=log,
    )


def main(run: Callable[[Options], str], description: str, argv=None) -> int:
    """Parse the shared command line, run one op's benchmark, print its section and put it where asked."""
    ap = argparse.ArgumentParser(description=description)
    add_arguments(ap)
    ap.add_argument(
        "--append",
        default=None,
        metavar="FILE",
        help="put the section into FILE (benchmarks/RESULTS.md), replacing its older version",
    )
    ap.add_argument("--out", default=None, metavar="FILE", help="write the section alone to FILE")
    args = ap.parse_args(argv)
    opts = options(args)
    torch.set_num_threads(opts.threads)
    text = run(opts)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text.rstrip("\n") + "\n")
    if args.append:
        put_section(args.append, text)
    return 0
