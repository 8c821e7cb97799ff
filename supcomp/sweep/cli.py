"""``supcomp sweep run GRID``, ``supcomp sweep plot RESULTS`` and ``supcomp sweep init [PATH]`` (wired into
:mod:`supcomp.cli`).

Every user mistake (a bad or missing file, an unknown key, a bad value, an unsafe name, a bad option) is
one line on stderr, ``supcomp sweep: error: ...``, and exit status 2; no traceback.
"""

from __future__ import annotations

import os
import sys
import types

EXAMPLES = ("tms_phase", "tms_dimensionality")


class UsageError(Exception):
    """A user mistake the sweep command reports in one line (exit status 2)."""


def _one_line_error(self, message):
    """argparse's error, in one line: ``supcomp sweep: error: <prog>: <message>``, exit status 2."""
    print(f"supcomp sweep: error: {self.prog}: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def _positive(name, v, zero_ok=False):
    if v is not None and (v < 0 or (v == 0 and not zero_ok)):
        raise UsageError(f"{name}: expected a {'non-negative' if zero_ok else 'positive'} number, got {v}")


def add_parser(sub) -> None:
    """Add the ``sweep`` subcommand to the ``supcomp`` argument parser's subparsers."""
    sw = sub.add_parser("sweep", help="run resumable experiment grids locally or on Ray; plot their results")
    ssub = sw.add_subparsers(dest="sweep_command", required=True)
    run = ssub.add_parser("run", help="run every point of a grid file not yet in the results table")
    run.add_argument("grid", help="grid file (.toml; .yaml with PyYAML)")
    run.add_argument(
        "--out",
        default=None,
        help="results table, .parquet or .jsonl (default: the sweep's own folder, "
        "sweep-results/<grid name>/results.parquet; .jsonl without pyarrow)",
    )
    run.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1, this process)")
    run.add_argument("--threads", type=int, default=None, help="threads per run (default: cpus / workers)")
    run.add_argument(
        "--ray",
        default=None,
        metavar="auto|ADDRESS",
        help="run each packed run as a Ray task: 'auto' (this machine's cluster, else a new local "
        "one) or a cluster address",
    )
    run.add_argument("--ray-cpus", type=float, default=1, help="CPUs per Ray task (default: 1)")
    run.add_argument("--ray-gpus", type=float, default=0, help="GPUs per Ray task (default: 0)")
    run.add_argument("--retries", type=int, default=2, help="retries of a pack whose worker died (default: 2)")
    run.add_argument(
        "--max-instances",
        type=int,
        default=None,
        help="points per packed run, at most (default: the grid's max_instances, else 256)",
    )
    run.add_argument("--skip-failed", action="store_true", help="do not rerun points recorded as failed")
    run.add_argument(
        "--save-weights", action="store_true", help="keep each point's model weights (safetensors) beside the table"
    )
    run.add_argument(
        "--allow-version-mix",
        action="store_true",
        help="add rows to a table holding results of another supcomp version (refused by default)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    plot = ssub.add_parser("plot", help="draw each experiment's standard figures from a results table")
    plot.add_argument("results", help="results table (.parquet or .jsonl)")
    plot.add_argument("--out", default=None, help="folder for the figures (default: the table's folder)")
    plot.add_argument("--format", default="png", help="comma-separated formats: png, pdf, svg (default: png)")
    init = ssub.add_parser("init", help="write an example grid file to start from")
    init.add_argument("path", nargs="?", default=None, help="where to write it (default: ./<example>.toml)")
    init.add_argument("--example", default="tms_phase", help=f"which example: {', '.join(EXAMPLES)}")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    for p in (sw, run, plot, init):
        p.error = types.MethodType(_one_line_error, p)


def example_text(name: str) -> str:
    """The text of the example grid ``name`` shipped in ``supcomp/examples/``."""
    from importlib import resources

    if name not in EXAMPLES:
        raise UsageError(f"--example: unknown {name!r}; available: {', '.join(EXAMPLES)}")
    return resources.files("supcomp").joinpath("examples", name + ".toml").read_text()


def _init(args) -> int:
    text = example_text(args.example)
    path = args.path or f"{args.example}.toml"
    if os.path.isdir(path):
        path = os.path.join(path, f"{args.example}.toml")
    if os.path.exists(path) and not args.force:
        raise UsageError(f"{path}: already exists (use --force to overwrite)")
    from ..utils.files import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    print(f"{path}: example grid '{args.example}'; run it with: supcomp sweep run {path}")
    return 0


def _run(args) -> int:
    from .grid import load_grid
    from .run import run_sweep

    for name, v, zero_ok in (
        ("--workers", args.workers, False),
        ("--threads", args.threads, False),
        ("--retries", args.retries, True),
        ("--max-instances", args.max_instances, False),
        ("--ray-cpus", args.ray_cpus, True),
        ("--ray-gpus", args.ray_gpus, True),
    ):
        _positive(name, v, zero_ok)
    grid = load_grid(args.grid)
    if args.max_instances is not None:
        grid.max_instances = args.max_instances
    try:
        s = run_sweep(
            grid,
            out=args.out,
            workers=args.workers,
            ray=args.ray,
            threads=args.threads,
            ray_cpus=args.ray_cpus,
            ray_gpus=args.ray_gpus,
            retries=args.retries,
            retry_failed=not args.skip_failed,
            progress=not args.no_progress,
            save_weights=True if args.save_weights else None,
            allow_version_mix=args.allow_version_mix,
        )
    except KeyboardInterrupt as e:  # SweepInterrupted says what is saved; a bare one came before the sweep started
        print(e if str(e) else "interrupted", flush=True)
        return 130
    print(
        f"{s.out}: {s.n_points} points, {s.n_skipped} already done, {s.n_run} run in {s.n_packs} packed runs "
        f"({s.n_failed} failed), {s.wall_s:.1f} s"
    )
    return 1 if s.n_failed else 0


def _plot(args) -> int:
    from .plot import plot_results

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    for p in plot_results(args.results, args.out, formats=formats):
        print(p)
    return 0


def main(args) -> int:
    """Run a parsed ``supcomp sweep ...`` command; returns the exit status (2 for a user mistake)."""
    try:
        if args.sweep_command == "init":
            return _init(args)
        if args.sweep_command == "plot":
            return _plot(args)
        return _run(args)
    except (UsageError, ValueError, TypeError, OSError, ImportError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
        print(f"supcomp sweep: error: {msg}", file=sys.stderr)
        return 2
