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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run
        run(out_dir=args.out, progress=not args.no_progress, bench=not args.no_bench)
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
