"""Feature hierarchies (a forest of trees) and their rules applied to a sparse active set.

A hierarchy is stored as three ``[N]`` tensors: ``parent`` (-1 for a root or a feature outside every
tree), ``level`` (0 for roots and outside features, 1 for a root's children, ...) and ``exclusive``
(True where the feature's siblings are mutually exclusive). Trees are laid out breadth-first from
feature 0 (roots first, then each level), as SAELens's ``generate_hierarchy`` numbers them.

Rules, applied level by level from the roots down on the active entries ``(sample b, feature f)``:
a child can be active only if its parent is active in the same sample (parent gating); among the
active children of one mutually exclusive parent in one sample, one chosen uniformly at random
stays (mutual exclusion); a removed feature's subtree is then removed by the next level's gating.
This is the distribution SAELens's hierarchy modifier produces. The sampler draws a child's own
firing only where its parent is active (``expand_children``), so it works on the active set only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Hierarchy", "build_forest"]


@dataclass
class Hierarchy:
    """A feature forest: ``parent [N]`` int64 (-1: none), ``level [N]`` int64, ``exclusive [N]`` bool."""

    parent: torch.Tensor
    level: torch.Tensor
    exclusive: torch.Tensor

    @property
    def depth(self) -> int:
        """The deepest level (0 for a forest of lone roots)."""
        return int(self.level.max()) if self.level.numel() else 0

    def to(self, device) -> Hierarchy:
        return Hierarchy(self.parent.to(device), self.level.to(device), self.exclusive.to(device))

    def correction_factors(self, p: torch.Tensor) -> torch.Tensor:
        """Factors that raise base firing probabilities ``p [N]`` to offset gating and exclusion.

        A child gets ``1 / p[parent]`` (it only fires when its parent does) times, when its siblings
        are exclusive, ``1 + (sum of the siblings' p) / p[parent]`` (the expected number of competitors):
        the rule of SAELens's ``compute_probability_correction_factors``. Roots get 1.
        """
        p = p.double().cpu()
        par, excl = self.parent.cpu(), self.exclusive.cpu()
        f = torch.ones_like(p)
        child = par >= 0
        pp = p[par.clamp(min=0)]
        f[child] = 1.0 / pp[child]
        sib_sum = torch.zeros_like(p).index_add_(0, par[child], p[child])  # per parent: sum of children's p
        me = child & excl
        f[me] *= 1.0 + (sib_sum[par[me]] - p[me]).clamp(min=0) / pp[me]
        return f


def build_forest(
    n_features: int, roots: int, branching: int, depth: int, exclusive: bool = True, device="cpu"
) -> Hierarchy:
    """A forest of ``roots`` full trees with ``branching`` children per node, ``depth`` levels below the roots.

    Numbered breadth-first from feature 0 across the forest (all roots, then all level-1 nodes, ...);
    features past the forest are outside it. With ``exclusive``, every parent's children are mutually
    exclusive.

    Raises:
        ValueError: a size is not a positive int (``branching >= 2``), or the forest needs more than
            ``n_features`` features.
    """
    for name, v, lo in (("roots", roots, 1), ("branching", branching, 2), ("depth", depth, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    sizes = [roots * branching**lv for lv in range(depth + 1)]
    if sum(sizes) > n_features:
        raise ValueError(f"hierarchy: the forest needs {sum(sizes)} features, the world has n_features={n_features}")
    parent = torch.full((n_features,), -1, dtype=torch.int64)
    level = torch.zeros(n_features, dtype=torch.int64)
    start = 0
    for lv in range(1, depth + 1):
        prev_start, start = start, start + sizes[lv - 1]
        ids = torch.arange(start, start + sizes[lv])
        parent[ids] = prev_start + (ids - start) // branching
        level[ids] = lv
    excl = (parent >= 0) if exclusive else torch.zeros(n_features, dtype=torch.bool)
    return Hierarchy(parent.to(device), level.to(device), excl.to(device))


def children_csr(h: Hierarchy) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ptr [N + 1], child [n_children])``: the children of feature p are ``child[ptr[p]:ptr[p + 1]]``."""
    N = h.parent.numel()
    kids = (h.parent >= 0).nonzero().squeeze(1)
    order = torch.argsort(h.parent[kids], stable=True)
    child = kids[order]
    counts = torch.bincount(h.parent[kids], minlength=N)
    ptr = torch.zeros(N + 1, dtype=torch.int64, device=h.parent.device)
    ptr[1:] = torch.cumsum(counts, 0)
    return ptr, child


def expand_children(b: torch.Tensor, f: torch.Tensor, ptr: torch.Tensor, child: torch.Tensor):
    """Every (sample, child) pair of the active parents ``(b, f)``.

    Returns ``(b', child', parent', seg)``: ``seg`` is the position of the parent entry in ``(b, f)``, so a
    parent's children are consecutive and share ``seg``.
    """
    n = ptr[f + 1] - ptr[f]
    seg = torch.repeat_interleave(torch.arange(f.numel(), device=f.device), n)
    within = torch.arange(seg.numel(), device=f.device) - (torch.cumsum(n, 0) - n)[seg]
    return b[seg], child[ptr[f][seg] + within], f[seg], seg


def exclusive_winners(seg: torch.Tensor, n_seg: int, generator: torch.Generator | None) -> torch.Tensor:
    """Keep-mask choosing one entry uniformly at random among the entries sharing each ``seg`` value."""
    if seg.numel() < 2:
        return torch.ones_like(seg, dtype=torch.bool)
    r = torch.rand(seg.numel(), generator=generator, device=seg.device)
    best = torch.full((n_seg,), -1.0, device=seg.device).scatter_reduce_(0, seg, r, "amax")
    return r == best[seg]


def scale_by_parent(
    keys: torch.Tensor, values: torch.Tensor, n_features: int, h: Hierarchy, parent_mean: torch.Tensor
) -> torch.Tensor:
    """Multiply each child's value by its parent's value over the parent's mean magnitude, top level first.

    ``keys`` must already satisfy the hierarchy (every child's parent present).
    """
    f = keys % n_features
    b = keys // n_features
    values = values.clone()
    for lv in range(1, h.depth + 1):
        pos = (h.level[f] == lv).nonzero().squeeze(1)
        if pos.numel() == 0:
            continue
        p = h.parent[f[pos]]
        ppos = torch.searchsorted(keys, b[pos] * n_features + p)
        values[pos] = values[pos] * values[ppos] / parent_mean[p]
    return values
