"""The speed table of docs/coming-from-arena.md: ARENA's superposition steps in plain torch against supcomp.

The plain-torch side is the page's own ``ArenaToyModel`` (the page's first python block, executed here),
trained with its ``optimize`` (Adam, its ``generate_batch``, autograd); the supcomp side is
``supcomp.tms.train`` with the settings the page gives it. Three steps of the exercises, at their sizes
and batch 1024:

* five features in two dimensions: I = 8, n = 5, m = 2 (ARENA: 5,000 steps);
* the importance and sparsity sweep: I = 12, n = 5, m = 2 (5,000 steps, as the first);
* dimensionality per feature: I = 20, n = 200, m = 20 (ARENA: 10,000 steps).

Each arm trains a fresh model for ``--steps`` steps (model construction included), the arms interleaved
(``supcomp.utils.timing.time_interleaved``, medians); the full-length time is ms/step times the
exercise's steps. One thread for both (the TMS rule for small models on this shared machine).

    python benchmarks/tms_arena.py [--steps 200,200,20] [--rounds 3] [--page docs/coming-from-arena.md]
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common.machine import loadavg  # noqa: E402

from supcomp.tms import ToyModelConfig, per_instance, train  # noqa: E402
from supcomp.utils.timing import time_interleaved  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "coming-from-arena.md")
MARK_START, MARK_END = "<!-- speed-table -->", "<!-- /speed-table -->"


def arena_model_class():
    """The page's ``ArenaToyModel`` (its first python block, executed)."""
    with open(PAGE) as f:
        block = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.DOTALL | re.MULTILINE)[0]
    ns: dict = {}
    exec(compile(block, "coming-from-arena.md[block 0]", "exec"), ns)
    return ns["ArenaToyModel"]


def cases():
    """(name, full steps, I, n, m, feature_probability [I, 1], importance, train kwargs)."""
    imp5 = 0.9 ** torch.arange(5)
    dens = torch.tensor([1.0, 0.3, 0.1, 0.03]).repeat_interleave(3)[:, None]
    imp_sweep = torch.tensor([1.0, 0.9, 0.7]).repeat(4)[:, None] ** torch.arange(5)
    return [
        (
            "five features in two dimensions (I=8, n=5, m=2)",
            5_000,
            8,
            5,
            2,
            (50 ** -torch.linspace(0, 1, 8))[:, None],
            imp5[None, :],
            dict(init="arena", optimizer="adam"),
        ),
        ("importance and sparsity sweep (I=12, n=5, m=2)", 5_000, 12, 5, 2, dens, imp_sweep, {}),
        (
            "dimensionality per feature (I=20, n=200, m=20)",
            10_000,
            20,
            200,
            20,
            per_instance(20 ** -torch.linspace(0, 1, 20)).float(),
            1.0,
            {},
        ),
    ]


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="200,200,20", help="steps timed per call, one per case")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--page", default=None, help="write the table into this page between its speed-table markers")
    args = ap.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    torch.set_num_threads(1)
    Arena = arena_model_class()
    rows = []
    for (name, full, I, n, m, p, imp, kw), k in zip(cases(), steps):

        def plain(I=I, n=n, m=m, p=p, imp=imp, k=k):
            Arena(I, n, m, p, imp).optimize(batch_size=1024, steps=k)

        def ours(I=I, n=n, m=m, p=p, imp=imp, k=k, kw=kw):
            init = kw.get("init", "supcomp")
            cfg = ToyModelConfig(n, m, I, feature_probability=p, importance=imp, init=init)
            train(cfg, steps=k, batch_size=1024, progress=False, optimizer=kw.get("optimizer", "adamw"))

        t = time_interleaved({"plain torch": plain, "supcomp": ours}, reps=args.rounds, warmup=1)
        a, b = t["plain torch"].median / k * 1e3, t["supcomp"].median / k * 1e3
        rows.append(
            f"| {name} | {full:,} | {a:.2f} ms | {b:.3f} ms | {a * full / 1e3:.1f} s | {b * full / 1e3:.1f} s "
            f"| {a / b:.0f}x |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            "| step | steps | plain torch, per step | supcomp, per step | plain torch, full | supcomp, full | speed-up |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Medians of {args.rounds} interleaved rounds of {args.steps} steps (one thread each; the full "
            f"columns are per step times the steps); load average during the run: {loadavg()}.",
        ]
    )
    if args.page:
        with open(args.page) as f:
            text = f.read()
        i, j = text.index(MARK_START), text.index(MARK_END)
        with open(args.page, "w") as f:
            f.write(text[: i + len(MARK_START)] + "\n" + table + "\n" + text[j:])
    return table


if __name__ == "__main__":
    print(main())
