"""``supcomp sae train CONFIG.toml`` and ``supcomp sae grade CHECKPOINT --world ...`` (wired into
:mod:`supcomp.cli`).

A config is a TOML file with the sections (every key checked: an unknown one is refused, naming the
closest known one):

* ``[world]``: the ground-truth world, :class:`supcomp.sae.WorldConfig`'s fields, or ``preset =
  "synthsaebench_16k"`` plus any fields to override; or instead ``[data] path = "acts.pt"`` (a stored
  ``[T, d]`` tensor, ``.pt`` or ``.safetensors``), which has no truth to grade against;
* ``[sae]``: :class:`supcomp.sae.SAEConfig`'s fields (``d`` comes from the world);
* ``[train]``: ``steps``, ``batch_size``, ``lr``, ``seed``, ``b_dec_init``, ``log_every``,
  ``lr_warmup``, ``lr_decay_from``, ``device``, ``out`` (the checkpoint's folder), ``formats`` (also
  write ``"saelens"`` / ``"sparsify"`` folders beside it);
* ``[grade]``: ``batches``, ``batch_size``, ``threshold`` (after training on a world).

Under ``torchrun`` (``WORLD_SIZE > 1``) ``train`` runs data-parallel (:mod:`supcomp.sae.distributed`);
rank 0 writes the files and prints. Every user mistake is one line on stderr, ``supcomp sae: error:
...``, and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

EXAMPLE = "sae_small"
_TRAIN_KEYS = {
    "steps": int,
    "batch_size": int,
    "lr": float,
    "seed": int,
    "b_dec_init": str,
    "log_every": int,
    "lr_warmup": int,
    "lr_decay_from": float,
    "device": str,
    "out": str,
    "formats": list,
}
_GRADE_KEYS = {"batches": int, "batch_size": int, "threshold": float}
_SECTIONS = ("name", "world", "data", "sae", "train", "grade")


class UsageError(Exception):
    """A user mistake reported in one line (exit status 2)."""


def _one_line_error(self, message):
    """argparse's error in one line, ``supcomp sae: error: <prog>: <message>``, exit status 2."""
    print(f"supcomp sae: error: {self.prog}: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def add_parser(sub) -> None:
    """Add the ``sae`` subcommand to the ``supcomp`` argument parser's subparsers."""
    import types

    p = sub.add_parser("sae", help="sparse autoencoders on ground-truth worlds: train and grade")
    ssub = p.add_subparsers(dest="sae_command", required=True)
    t = ssub.add_parser("train", help="train an SAE from a TOML config (torchrun: data-parallel)")
    t.add_argument("config", help=f"config file (.toml); an example ships as supcomp/examples/{EXAMPLE}.toml")
    t.add_argument("--out", default=None, help="checkpoint folder (default: [train] out, else sae-runs/<name>)")
    t.add_argument("--steps", type=int, default=None, help="override [train] steps")
    t.add_argument("--device", default=None, help="override [train] device (cpu, cuda, ...)")
    t.add_argument("--no-grade", action="store_true", help="skip grading after training")
    g = ssub.add_parser("grade", help="grade a trained SAE against a world's true features")
    g.add_argument("checkpoint", help="a supcomp checkpoint (file or folder), or an SAELens / sparsify folder")
    g.add_argument("--world", required=True, help="a config TOML (its [world]) or a preset: synthsaebench_16k")
    g.add_argument("--batches", type=int, default=4, help="fresh batches graded on (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=4096, help="samples per batch (default: %(default)s)")
    g.add_argument("--threshold", type=float, default=0.9, help="cosine of a recovered feature (default: 0.9)")
    g.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    g.add_argument("--plots", default=None, metavar="DIR", help="also write the two grading figures to DIR")
    for parser in (p, t, g):
        parser.error = types.MethodType(_one_line_error, parser)


def _check_keys(where: str, table, known) -> dict:
    from .sweep.params import suggest

    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected a table, got {type(table).__name__}")
    for key in table:
        if key not in known:
            near = suggest(key, known)
            hint = f"; did you mean {near!r}?" if near else f"; known: {', '.join(sorted(known))}"
            raise UsageError(f"{where}: unknown key {key!r}{hint}")
    return table


def _typed(where: str, table: dict, types: dict) -> dict:
    for k, v in table.items():
        want = types[k]
        ok = isinstance(v, want) and not isinstance(v, bool) if want is not bool else isinstance(v, bool)
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            raise UsageError(f"{where}.{k}: expected {want.__name__}, got {v!r}")
    return table


def load_config(path: str) -> dict:
    """Read and check a ``supcomp sae`` config: ``{"name", "world" (WorldConfig or None), "data" (path or
    None), "sae" (dict of SAEConfig fields), "train", "grade"}``.

    Raises:
        UsageError: a missing or bad file, an unknown key (naming the closest), a bad value.
    """
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError("config: reading TOML on Python < 3.11 needs the tomli package") from None

    from .sae import SAEConfig

    if not path.endswith(".toml"):
        raise UsageError(f"config: expected a .toml file, got {path!r}")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config: {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config: {path!r} is not valid TOML ({e})") from None
    _check_keys(path, raw, _SECTIONS)
    if ("world" in raw) == ("data" in raw):
        raise UsageError(f"{path}: give exactly one of [world] and [data]")
    world = _world_from(f"{path} [world]", raw["world"]) if "world" in raw else None
    data = None
    if "data" in raw:
        _check_keys(f"{path} [data]", raw["data"], ("path",))
        data = raw["data"].get("path")
        if not isinstance(data, str):
            raise UsageError(f"{path} [data].path: expected a file name")
        data = os.path.join(os.path.dirname(os.path.abspath(path)), data)
    sae_fields = {f.name for f in dataclasses.fields(SAEConfig)}
    sae = dict(_check_keys(f"{path} [sae]", raw.get("sae", {}), sae_fields - ({"d"} if world else set())))
    if world is not None:
        sae["d"] = world.d
    try:
        SAEConfig(**sae)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path} [sae]: {e}") from None
    train = _typed(f"{path} [train]", _check_keys(f"{path} [train]", raw.get("train", {}), _TRAIN_KEYS), _TRAIN_KEYS)
    for fmt in train.get("formats", []):
        if fmt not in ("saelens", "sparsify"):
            raise UsageError(f"{path} [train].formats: expected 'saelens' or 'sparsify', got {fmt!r}")
    grade = _typed(f"{path} [grade]", _check_keys(f"{path} [grade]", raw.get("grade", {}), _GRADE_KEYS), _GRADE_KEYS)
    name = raw.get("name", os.path.splitext(os.path.basename(path))[0])
    return {"name": str(name), "world": world, "data": data, "sae": sae, "train": train, "grade": grade}


def _world_from(where: str, table):
    from .sae import WorldConfig, synthsaebench_16k

    fields = {f.name for f in dataclasses.fields(WorldConfig)}
    table = dict(_check_keys(where, table, fields | {"preset"}))
    preset = table.pop("preset", None)
    try:
        if preset is None:
            return WorldConfig(**table)
        if preset.replace("-", "_") != "synthsaebench_16k":
            raise UsageError(f"{where}.preset: unknown {preset!r}; available: synthsaebench_16k")
        return synthsaebench_16k(**table)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: {e}") from None


def _train(args) -> int:
    from .sae import SAEConfig, World, grade, train_sae
    from .sae.interop import save_saelens, save_sparsify

    cfg = load_config(args.config)
    t = dict(cfg["train"])
    if args.steps is not None:
        if args.steps < 1:
            raise UsageError(f"--steps: expected a positive number, got {args.steps}")
        t["steps"] = args.steps
    device = args.device or t.pop("device", None)
    t.pop("device", None)
    out = args.out or t.pop("out", None) or os.path.join("sae-runs", cfg["name"])
    t.pop("out", None)
    formats = t.pop("formats", [])
    config = SAEConfig(**cfg["sae"])
    data = World(cfg["world"], device=device or "cpu") if cfg["world"] is not None else cfg["data"]
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        from .sae.distributed import train_sae_distributed

        for k in ("lr_warmup", "lr_decay_from"):
            if k in t:
                raise UsageError(f"[train].{k}: not supported in data-parallel training")
        sae = train_sae_distributed(data, config, **t)
        import torch.distributed as dist

        rank = dist.get_rank()
    else:
        sae = train_sae(data, config, device=device, **t)
        rank = 0
    if rank != 0:
        return 0
    file = sae.save(out)
    written = [file] + [(save_saelens if f == "saelens" else save_sparsify)(sae, os.path.join(out, f)) for f in formats]
    step, loss, metrics = sae.history[-1]
    print(
        f"trained {config.kind} SAE n={config.n} k={config.k}: step {step}, loss {loss:.4g}, fvu {metrics['fvu']:.4g}"
    )
    for w in written:
        print(f"wrote {w}")
    if cfg["world"] is not None and not args.no_grade:
        g = grade(sae, data, **{k: v for k, v in cfg["grade"].items()})
        _print_grade(g.summary(), as_json=False)
    return 0


def _load_any(path: str):
    """A supcomp checkpoint, or an SAELens / sparsify folder (by their files)."""
    from .sae import SAE
    from .sae.interop import load_saelens, load_sparsify

    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "sae_weights.safetensors")):
        return load_saelens(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "sae.safetensors")):
        return load_sparsify(path)
    return SAE.load(path)


def _grade(args) -> int:
    from .sae import World, grade, synthsaebench_16k

    for flag, v in (("--batches", args.batches), ("--batch-size", args.batch_size)):
        if v < 1:
            raise UsageError(f"{flag}: expected a positive number, got {v}")
    if args.world.replace("-", "_") == "synthsaebench_16k":
        world_cfg = synthsaebench_16k()
    else:
        cfg = load_config(args.world)
        if cfg["world"] is None:
            raise UsageError(f"--world: {args.world!r} has [data], not a [world] to grade against")
        world_cfg = cfg["world"]
    try:
        sae = _load_any(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"checkpoint: {' '.join(str(e).split())}") from None
    world = World(world_cfg)
    try:
        g = grade(sae, world, batches=args.batches, batch_size=args.batch_size, threshold=args.threshold)
    except ValueError as e:
        raise UsageError(str(e)) from None
    _print_grade(g.summary(), as_json=args.json)
    if args.plots is not None:
        from .sae import plot_matched_cosines, plot_recovery_vs_frequency
        from .utils.figures import save_figure

        os.makedirs(args.plots, exist_ok=True)
        save_figure(plot_recovery_vs_frequency(g), os.path.join(args.plots, "recovery_vs_frequency.png"))
        save_figure(plot_matched_cosines(sae, world, g), os.path.join(args.plots, "matched_cosines.png"))
    return 0


def _print_grade(summary: dict, as_json: bool):
    if as_json:  # strict JSON: a NaN (e.g. no absorption measurable) is null
        clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in summary.items()}
        print(json.dumps(clean, sort_keys=True, allow_nan=False))
        return
    for k, v in summary.items():
        print(f"{k:>22}: {v:.4g}" if isinstance(v, float) else f"{k:>22}: {v}")


def main(args) -> int:
    """Run a parsed ``supcomp sae ...`` command; returns the exit status (2 for a user mistake)."""
    try:
        return _train(args) if args.sae_command == "train" else _grade(args)
    except UsageError as e:
        print(f"supcomp sae: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
