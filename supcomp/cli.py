"""The ``supcomp`` command line (also ``python -m supcomp``)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="supcomp", description="Compiled kernels for computation in superposition.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short tour: tables on stdout, plots in ./supcomp-report/")
    demo.add_argument("--out", default="supcomp-report", help="folder for the plots (default: %(default)s)")
    demo.add_argument("--no-bench", action="store_true", help="skip the benchmark ratios")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("info", help="version, backends and threads")
    tms = sub.add_parser("tms", help="reproduce a figure of Toy Models of Superposition (Elhage et al. 2022)")
    tms.add_argument(
        "name",
        choices=["intro", "dimensionality", "phase", "correlated", "dynamics", "cross-entropy", "all"],
        help="which reproduction (all: every one in turn)",
    )
    tms.add_argument("--steps", type=int, default=None, help="training steps (default: the experiment's own)")
    tms.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batches (default: 0)")
    tms.add_argument("--out", default="supcomp-report/tms", help="folder for the plots (default: %(default)s)")
    tms.add_argument("--quick", action="store_true", help="small sizes and few steps (seconds, not minutes)")
    tms.add_argument("--no-progress", action="store_true", help="no progress bars")
    circ = sub.add_parser("circuits", help="circuits in superposition: error sweeps, capacity, throughput")
    circ.add_argument(
        "--circuits",
        choices=["rotations", "random"],
        default="rotations",
        help="which small circuits: 2-D rotations (Linsefors & Bushnaq 2025) or random ReLU MLPs, d=3",
    )
    circ.add_argument(
        "--assignment",
        choices=["overlap1", "random"],
        default="overlap1",
        help="how small neurons are assigned to large ones (default: %(default)s)",
    )
    circ.add_argument("--seed", type=int, default=0, help="seed of circuits, assignment and samples (default: 0)")
    circ.add_argument("--out", default="supcomp-report/circuits", help="folder for the plots (default: %(default)s)")
    circ.add_argument("--quick", action="store_true", help="small sizes (about a minute, not many)")
    circ.add_argument("--no-bench", action="store_true", help="skip the throughput comparison")
    circ.add_argument("--no-progress", action="store_true", help="no progress bars")
    from .sweep.cli import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    from .sae.cli import add_parser as add_sae_parser

    add_sae_parser(sub)
    cc = sub.add_parser("cc", help="compressed computation (Braun et al. 2025) vs. its mixing-matrix controls")
    cc.add_argument("--steps", type=int, default=None, help="training steps (default: 10000; 2000 with --quick)")
    cc.add_argument("--seed", type=int, default=0, help="seed of the fixed matrices, weights and batches")
    cc.add_argument("--samples", type=int, default=None, help="non-empty samples per L/p evaluation")
    cc.add_argument("--sigmas", default=None, help="comma-separated σ values of the sweeps (default: 0,0.01,...,0.1)")
    cc.add_argument("--out", default="supcomp-report/cc", help="folder for the plots (default: %(default)s)")
    cc.add_argument(
        "--quick", action="store_true", help="2000 steps, fewer samples and σ values (~3 min on 2 busy cores)"
    )
    cc.add_argument("--no-progress", action="store_true", help="no progress bars")
    uand = sub.add_parser("uand", help="U-AND (Vaintrob, Mendel & Hänni): error tables vs theory, capacity, plots")
    uand.add_argument("--out", default="supcomp-report/uand", help="folder for the plots (default: %(default)s)")
    uand.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    uand.add_argument("--batch", type=int, default=None, help="samples read at all pairs per s (default: by size)")
    uand.add_argument("--seed", type=int, default=0, help="seed of C and the inputs (default: 0)")
    uand.add_argument("--no-capacity", action="store_true", help="skip the capacity sweep")
    uand.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.command == "sae":
        from .sae.cli import run as run_sae

        return run_sae(args)
    if args.command == "demo":
        from .studies.demo import run

        run(out_dir=args.out, progress=not args.no_progress, bench=not args.no_bench)
    elif args.command == "tms":
        if args.steps is not None and args.steps < 1:
            parser.error(f"--steps: expected a positive number of steps, got {args.steps}")
        from .studies.tms.experiments import run as run_tms

        run_tms(
            args.name,
            steps=args.steps,
            seed=args.seed,
            out_dir=args.out,
            progress=not args.no_progress,
            quick=args.quick,
        )
    elif args.command == "circuits":
        from .studies.circuits import run as run_circuits

        run_circuits(
            out_dir=args.out,
            quick=args.quick,
            progress=not args.no_progress,
            kind=args.circuits,
            assignment=args.assignment,
            seed=args.seed,
            bench=not args.no_bench,
        )
    elif args.command == "sweep":
        from .sweep.cli import main as sweep_main

        return sweep_main(args)
    elif args.command == "cc":
        for flag, v in (("--steps", args.steps), ("--samples", args.samples)):
            if v is not None and v < 1:
                parser.error(f"{flag}: expected a positive number, got {v}")
        if args.seed < 0:
            parser.error(f"--seed: expected a non-negative seed, got {args.seed}")
        sigmas = None
        if args.sigmas is not None:
            try:
                sigmas = [float(v) for v in args.sigmas.split(",") if v.strip()]
            except ValueError:
                parser.error(f"--sigmas: expected comma-separated numbers, got {args.sigmas!r}")
            if not sigmas or any(not (v >= 0) for v in sigmas):
                parser.error(f"--sigmas: expected non-negative numbers, got {args.sigmas!r}")
        from .studies.cc import run as run_cc

        run_cc(
            steps=args.steps,
            seed=args.seed,
            out_dir=args.out,
            progress=not args.no_progress,
            quick=args.quick,
            n_samples=args.samples,
            sigmas=sigmas,
        )
    elif args.command == "uand":
        if args.batch is not None and args.batch < 1:
            parser.error(f"--batch: expected a positive number of samples, got {args.batch}")
        from .studies.uand import run as run_uand

        run_uand(
            out_dir=args.out,
            quick=args.quick,
            batch=args.batch,
            seed=args.seed,
            progress=not args.no_progress,
            capacity_sweep=not args.no_capacity,
        )
    elif args.command == "info":
        import torch

        from . import __version__
        from .ops import dispatch

        print(f"supcomp {__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
        print(f"CPU float32 backend: {dispatch.backend_name(torch.device('cpu'), torch.float32)}")
        print(f"Triton available: {dispatch.triton_available()}, CUDA available: {torch.cuda.is_available()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
