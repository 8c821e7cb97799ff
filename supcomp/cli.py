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
    tms.add_argument("name", choices=["intro", "dimensionality", "phase", "correlated", "dynamics", "cross-entropy",
                                      "all"], help="which reproduction (all: every one in turn)")
    tms.add_argument("--steps", type=int, default=None, help="training steps (default: the experiment's own)")
    tms.add_argument("--seed", type=int, default=0, help="seed of the initial weights and batches (default: 0)")
    tms.add_argument("--out", default="supcomp-report/tms", help="folder for the plots (default: %(default)s)")
    tms.add_argument("--quick", action="store_true", help="small sizes and few steps (seconds, not minutes)")
    tms.add_argument("--no-progress", action="store_true", help="no progress bars")
    uand = sub.add_parser("uand", help="U-AND (Vaintrob, Mendel & Hänni): error tables vs theory, capacity, plots")
    uand.add_argument("--out", default="supcomp-report/uand", help="folder for the plots (default: %(default)s)")
    uand.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    uand.add_argument("--batch", type=int, default=None, help="samples read at all pairs per s (default: by size)")
    uand.add_argument("--seed", type=int, default=0, help="seed of C and the inputs (default: 0)")
    uand.add_argument("--no-capacity", action="store_true", help="skip the capacity sweep")
    uand.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run
        run(out_dir=args.out, progress=not args.no_progress, bench=not args.no_bench)
    elif args.command == "tms":
        if args.steps is not None and args.steps < 1:
            parser.error(f"--steps: expected a positive number of steps, got {args.steps}")
        from .tms.experiments import run as run_tms
        run_tms(args.name, steps=args.steps, seed=args.seed, out_dir=args.out, progress=not args.no_progress,
                quick=args.quick)
    elif args.command == "uand":
        if args.batch is not None and args.batch < 1:
            parser.error(f"--batch: expected a positive number of samples, got {args.batch}")
        from .boolean.experiments import run as run_uand
        run_uand(out_dir=args.out, quick=args.quick, batch=args.batch, seed=args.seed, progress=not args.no_progress,
                 capacity_sweep=not args.no_capacity)
    elif args.command == "info":
        import torch

        from . import __version__
        from .ops import backends
        print(f"supcomp {__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
        print(f"CPU float32 backend: {backends.backend_name(torch.device('cpu'), torch.float32)}")
        print(f"Triton available: {backends.triton_available()}, CUDA available: {torch.cuda.is_available()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
