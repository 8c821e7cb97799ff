"""``supcomp sweep run GRID`` and ``supcomp sweep plot RESULTS`` (wired into :mod:`supcomp.cli`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add the ``sweep`` subcommand to the ``supcomp`` argument parser's subparsers."""
    sw = sub.add_parser("sweep", help="run resumable experiment grids locally or on Ray; plot their results")
    ssub = sw.add_subparsers(dest="sweep_command", required=True)
    run = ssub.add_parser("run", help="run every point of a grid file not yet in the results table")
    run.add_argument("grid", help="grid file (.toml; .yaml with PyYAML)")
    run.add_argument(
        "--out",
        default=None,
        help="results table, .parquet or .jsonl (default: sweep-results/<grid name>.parquet, .jsonl without pyarrow)",
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
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    plot = ssub.add_parser("plot", help="draw each experiment's standard figure from a results table (PNG)")
    plot.add_argument("results", help="results table (.parquet or .jsonl)")
    plot.add_argument("--out", default=None, help="folder for the PNGs (default: the table's folder)")


def main(args) -> int:
    if args.sweep_command == "plot":
        from .plot import plot_results

        for p in plot_results(args.results, args.out):
            print(p)
        return 0
    from .grid import load_grid
    from .run import run_sweep

    grid = load_grid(args.grid)
    if args.max_instances is not None:
        if args.max_instances < 1:
            raise SystemExit(f"--max-instances: expected a positive int, got {args.max_instances}")
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
        )
    except KeyboardInterrupt as e:  # SweepInterrupted says what is saved; a bare one came before the sweep started
        print(e if str(e) else "interrupted", flush=True)
        return 130
    print(
        f"{s.out}: {s.n_points} points, {s.n_skipped} already done, {s.n_run} run in {s.n_packs} packed runs "
        f"({s.n_failed} failed), {s.wall_s:.1f} s"
    )
    return 1 if s.n_failed else 0
