"""``supcomp sae train CONFIG.toml`` and ``supcomp sae grade RUN_DIR``: SAEs on a ground-truth world from the shell.

The TOML config has three tables::

    [world]              # WorldConfig fields; preset = "synthsaebench_16k" starts from that preset
    preset = "synthsaebench_16k"
    [sae]                # SAEConfig fields (d is taken from the world)
    n = 16384
    k = 32
    [train]              # train_sae arguments
    steps = 2000
    batch_size = 4096
    lr = 1e-3

``train`` writes the SAE (``sae.safetensors``, ``config.json``), ``world.json`` and ``history.json`` to
``--out``; ``grade`` rebuilds the world from ``world.json`` (worlds are seeded), prints the scores as
JSON and, with ``--plots``, writes the two grading figures next to them.
"""

from __future__ import annotations

import json
import os

__all__ = ["add_parser", "run", "load_config"]

TRAIN_KEYS = ("steps", "batch_size", "lr", "seed", "b_dec_init", "log_every", "lr_warmup", "lr_decay_from")


def add_parser(sub) -> None:
    """Add the ``sae`` command (``train``, ``grade``) to an argparse subparsers object."""
    sae = sub.add_parser("sae", help="sparse autoencoders on a ground-truth world: train, grade")
    ssub = sae.add_subparsers(dest="sae_command", required=True)
    tr = ssub.add_parser("train", help="train an SAE on the world of a TOML config")
    tr.add_argument("config", help="TOML file with [world], [sae] and [train] tables")
    tr.add_argument("--out", default="supcomp-report/sae", help="run folder (default: %(default)s)")
    tr.add_argument("--steps", type=int, default=None, help="override [train] steps")
    tr.add_argument("--device", default=None, help="torch device (default: cpu)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")
    gr = ssub.add_parser("grade", help="grade a trained SAE against its world")
    gr.add_argument("run_dir", help="a folder written by `supcomp sae train`")
    gr.add_argument("--batches", type=int, default=4, help="batches of 4096 samples (default: 4)")
    gr.add_argument("--threshold", type=float, default=0.9, help="cosine for 'recovered' (default: 0.9)")
    gr.add_argument("--plots", action="store_true", help="write the recovery and matched-cosine figures")


def load_config(path: str):
    """Read a TOML run config: ``(WorldConfig, SAEConfig, train kwargs)``.

    Raises:
        ValueError: a missing table or an unknown key (named).
    """
    from .models import SAEConfig
    from .world import WorldConfig, synthsaebench_16k

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError as e:
            raise ImportError("reading a TOML config on Python < 3.11 needs the tomli package") from e
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    for table in ("world", "sae"):
        if table not in cfg:
            raise ValueError(f"config: {path!r} has no [{table}] table")
    w = dict(cfg["world"])
    preset = w.pop("preset", None)
    if preset not in (None, "synthsaebench_16k"):
        raise ValueError(f"config: [world] preset {preset!r} is unknown (known: 'synthsaebench_16k')")
    try:
        world = synthsaebench_16k(**w) if preset else WorldConfig(**w)
        sae = SAEConfig(d=world.d, **cfg["sae"])
    except TypeError as e:
        raise ValueError(f"config: {e}") from e
    train = dict(cfg.get("train", {}))
    unknown = sorted(set(train) - set(TRAIN_KEYS))
    if unknown:
        raise ValueError(f"config: unknown [train] keys {unknown}; known: {list(TRAIN_KEYS)}")
    return world, sae, train


def run(args) -> int:
    """Run the parsed ``sae`` command; returns the exit status."""
    import torch

    from .grade import grade, plot_matched_cosines, plot_recovery_vs_frequency
    from .models import SAE
    from .train import train_sae
    from .world import World, WorldConfig

    if args.sae_command == "train":
        wcfg, scfg, train = load_config(args.config)
        if args.steps is not None:
            train["steps"] = args.steps
        device = torch.device(args.device) if args.device else torch.device("cpu")
        world = World(wcfg, device=device)
        sae = train_sae(world, scfg, device=device, progress=not args.no_progress, checkpoint=args.out, **train)
        sae.save(args.out)
        with open(os.path.join(args.out, "world.json"), "w") as f:
            json.dump(wcfg.to_dict(), f, indent=1)
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump([{"step": s, "loss": lo, **m} for s, lo, m in sae.history], f, indent=1)
        print(json.dumps(sae.history[-1][2]))
        return 0
    sae = SAE.load(args.run_dir)
    with open(os.path.join(args.run_dir, "world.json")) as f:
        world = World(WorldConfig.from_dict(json.load(f)))
    g = grade(sae, world, batches=args.batches, threshold=args.threshold)
    print(json.dumps(g.summary(), indent=1))
    if args.plots:
        from ..utils.figures import save_figure

        save_figure(plot_recovery_vs_frequency(g), os.path.join(args.run_dir, "recovery_vs_frequency.png"))
        save_figure(plot_matched_cosines(sae, world, g), os.path.join(args.run_dir, "matched_cosines.png"))
    return 0
