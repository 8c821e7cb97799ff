"""Packing: grid points that differ only in per-instance parameters become one instance-batched run."""

from __future__ import annotations

import json
import math


def _shared_key(params: dict, per_instance) -> str:
    return json.dumps({k: v for k, v in params.items() if k not in per_instance}, sort_keys=True)


def pack(points: list, per_instance, max_instances: int, min_packs: int = 1) -> list[list]:
    """Group ``points`` (dicts with a ``"params"`` dict) into packed runs.

    Points whose parameters agree outside ``per_instance`` form a group (in first-seen order); each group
    is cut into ``ceil(len / max_instances)`` runs of near-equal size, and further (down to one point
    per run) while there are fewer than ``min_packs`` runs, so that ``min_packs`` workers all get work.
    Returns the runs, each a list of points in grid order.
    """
    if max_instances < 1:
        raise ValueError(f"max_instances: expected >= 1, got {max_instances}")
    groups: dict[str, list] = {}
    for pt in points:
        groups.setdefault(_shared_key(pt["params"], per_instance), []).append(pt)
    groups = list(groups.values())
    cuts = [math.ceil(len(g) / max_instances) for g in groups]
    # more runs for parallel workers: split the group whose runs are largest, one cut at a time
    while groups and sum(cuts) < min_packs:
        sizes = [len(g) / c if c < len(g) else 0 for g, c in zip(groups, cuts)]
        j = max(range(len(groups)), key=sizes.__getitem__)
        if sizes[j] == 0:
            break
        cuts[j] += 1
    runs = []
    for g, c in zip(groups, cuts):
        base, extra = divmod(len(g), c)
        start = 0
        for k in range(c):
            size = base + (k < extra)
            runs.append(g[start : start + size])
            start += size
    return runs
