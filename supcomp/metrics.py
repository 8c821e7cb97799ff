"""Geometry metrics of Toy Models of Superposition (Elhage et al. 2022, section "Geometry").

Convention: the weights store **one feature per row**, ``W [n_features, m]``, or with an
instance axis ``W [I, n_features, m]`` (``I`` independently trained models, as in the TMS
notebook). Row ``W_i`` is feature ``i``'s direction in the ``m``-dimensional hidden space
(the paper's column ``W_i`` of its ``m x n`` matrix).

Every function accepts either layout. A 2-D ``W`` gives outputs without the instance axis
(``[n]`` instead of ``[I, n]``, a 0-d tensor instead of ``[I]``, one list instead of a
list of lists). The numeric metrics are pure torch, batched over instances (no Python
loop), run on any device, keep ``W``'s dtype for float32/float64 (float16/bfloat16 are
computed and returned in float32), and are differentiable. ``Ŵ_i = W_i / ‖W_i‖``.

=====================================  =================================================
``feature_norms(W)``                   ``‖W_i‖``                               ``[I, n]``
``feature_dimensionality(W)``          ``D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²``        ``[I, n]``
``dimensions_per_feature(W)``          ``D* = m / ‖W‖_F²``                       ``[I]``
``interference(W)``                    ``Σ_{j≠i} (Ŵ_i·W_j)²``                  ``[I, n]``
``geometry(W)``                        structure each feature sits in     list of str
``geometry_counts(W)``                 how many features sit in each       dict
``superposition_summary(W)``           all the numeric ones at once        dict
=====================================  =================================================

``STRUCTURES`` maps each named structure (antipodal pair, triangle, pentagon, ...) to the size of its group,
its dimensionality and its cosine profile; ``geometry`` labels features with these names.

Bad input raises before any computation: ``TypeError`` naming ``W`` for a non-tensor or
a non-floating dtype, ``ValueError`` naming ``W`` for a wrong number of dimensions or an
empty hidden size ``m = 0``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "feature_norms",
    "feature_dimensionality",
    "dimensions_per_feature",
    "interference",
    "geometry",
    "geometry_counts",
    "superposition_summary",
    "STRUCTURES",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------- checks


def _check_W(W) -> tuple[torch.Tensor, bool]:
    """Validate ``W`` and return ``(W3 [I, n, m] in a compute dtype, had_instance_axis)``."""
    if not isinstance(W, torch.Tensor):
        raise TypeError(f"W: expected a torch.Tensor, got {type(W).__name__}")
    if W.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"W: expected a floating dtype (float32, float64; float16/bfloat16 are upcast), got {W.dtype}")
    if W.dim() not in (2, 3):
        shape = "[" + ", ".join(str(s) for s in W.shape) + "]"
        raise ValueError(
            f"W: expected shape [n_features, m] or [n_instances, n_features, m], got {W.dim()}-d tensor {shape}"
        )
    if W.shape[-1] == 0:
        raise ValueError("W: the hidden size m (last dimension) must be at least 1, got 0")
    if W.dtype in (torch.float16, torch.bfloat16):
        W = W.float()
    batched = W.dim() == 3
    return (W if batched else W.unsqueeze(0)), batched


def _check_eps(eps, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {eps!r}")
    return float(eps)


def _out(x: torch.Tensor, batched: bool) -> torch.Tensor:
    return x if batched else x.squeeze(0)


# ----------------------------------------------------------------------------- core


def _core(W3: torch.Tensor, eps: float):
    """Shared quantities for ``W3 [I, n, m]``.

    Returns ``norms [I, n]``, ``learned [I, n]`` (bool, ``norm >= eps``),
    ``Wh [I, n, m]`` (unit rows, zero rows where not learned) and
    ``s [I, n] = Σ_j (Ŵ_i·W_j)²`` (``j = i`` included; 0 where not learned).
    """
    norms = torch.linalg.vector_norm(W3, dim=-1)  # [I, n]
    learned = norms >= eps if eps > 0 else norms > 0
    # clamp_min keeps the division (and its gradient) finite where the row is not learned.
    safe = norms.clamp_min(max(eps, torch.finfo(W3.dtype).tiny)).unsqueeze(-1)
    Wh = torch.where(learned.unsqueeze(-1), W3 / safe, torch.zeros_like(W3))
    n, m = W3.shape[-2], W3.shape[-1]
    if n <= m:
        # Σ_j (Ŵ_i·W_j)² from the n x n overlap matrix: O(n² m).
        s = (Wh @ W3.transpose(-1, -2)).square().sum(-1)
    else:
        # Same sum as the quadratic form Ŵ_i (WᵀW) Ŵ_iᵀ: O(n m²), no n x n matrix.
        M = W3.transpose(-1, -2) @ W3  # [I, m, m]
        s = ((Wh @ M) * Wh).sum(-1)
    return norms, learned, Wh, s


def _dimensionality(norms, learned, s):
    n2 = norms.square()
    # s >= ‖W_i‖² exactly; max() absorbs rounding so that D <= 1, and keeps 0/0 away.
    den = torch.maximum(s, n2).clamp_min(torch.finfo(norms.dtype).tiny)
    return torch.where(learned, n2 / den, torch.zeros_like(n2))


def _interference(norms, learned, s):
    val = (s - norms.square()).clamp_min(0)
    return torch.where(learned, val, torch.zeros_like(val))


# ----------------------------------------------------------------------------- numeric API


def feature_norms(W: torch.Tensor) -> torch.Tensor:
    """Length of each feature's embedding, ``‖W_i‖`` (about 1 if learned, 0 if not).

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.

    Returns:
        ``[n]`` or ``[I, n]``.
    """
    W3, batched = _check_W(W)
    return _out(torch.linalg.vector_norm(W3, dim=-1), batched)


def feature_dimensionality(W: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """TMS feature dimensionality ``D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²``, the sum including ``j = i``.

    ``D_i`` is the fraction of a hidden dimension feature ``i`` gets: 1 for a dedicated
    dimension, 1/2 for an antipodal pair, 2/3 triangle, 3/4 tetrahedron, 2/5 pentagon,
    3/8 square antiprism. Features with ``‖W_i‖ < eps`` (not learned) get ``D_i = 0``.
    Learned features have ``0 < D_i <= 1``. ``D`` is invariant under rotations of the
    hidden space and under a positive rescaling of a whole instance ``W -> cW``.
    For a tight packing the ``D_i`` add up to ``m`` (e.g. 5 x 2/5 = 2 for a pentagon).

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.
        eps: norm below which a feature counts as not learned (``D_i = 0``).

    Returns:
        ``[n]`` or ``[I, n]``, in ``[0, 1]``.
    """
    W3, batched = _check_W(W)
    eps = _check_eps(eps)
    norms, learned, _, s = _core(W3, eps)
    return _out(_dimensionality(norms, learned, s), batched)


def dimensions_per_feature(W: torch.Tensor) -> torch.Tensor:
    """TMS "dimensions per feature" ``D* = m / ‖W‖_F²`` of each instance.

    ``‖W‖_F²`` approximates the number of learned features, so ``D*`` is the number of
    hidden dimensions per learned feature: 1 without superposition, "sticky" at 1/2
    for antipodal pairs. An all-zero instance gives ``inf``.

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.

    Returns:
        0-d tensor for a 2-D ``W``, else ``[I]``.
    """
    W3, batched = _check_W(W)
    m = W3.shape[-1]
    fro2 = W3.square().sum((-2, -1))
    return _out(m / fro2, batched)


def interference(W: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """How much the other features project onto each feature: ``Σ_{j≠i} (Ŵ_i·W_j)²``.

    0 when ``W_i`` is orthogonal to every other feature; values >= 1 mean some set of
    other features can activate feature ``i``'s direction as strongly as feature ``i``
    itself. Features with ``‖W_i‖ < eps`` (not learned) get 0. Relates to ``D`` by
    ``D_i = ‖W_i‖² / (‖W_i‖² + interference_i)``.

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.
        eps: norm below which a feature counts as not learned (interference 0).

    Returns:
        ``[n]`` or ``[I, n]``, ``>= 0``.
    """
    W3, batched = _check_W(W)
    eps = _check_eps(eps)
    norms, learned, _, s = _core(W3, eps)
    return _out(_interference(norms, learned, s), batched)


def superposition_summary(W: torch.Tensor, eps: float = 1e-8) -> dict:
    """All the numeric metrics of ``W`` at once (one pass over the shared products).

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.
        eps: norm below which a feature counts as not learned (``D_i`` and interference 0).

    Returns:
        dict with (shapes for a 3-D ``W``; a 2-D ``W`` drops the leading ``I``)

        * ``"norms"`` ``[I, n]``: ``‖W_i‖`` (:func:`feature_norms`);
        * ``"D"`` ``[I, n]``: feature dimensionality (:func:`feature_dimensionality`);
        * ``"dims_per_feature"`` ``[I]``: ``m / ‖W‖_F²`` (:func:`dimensions_per_feature`);
        * ``"interference"`` ``[I, n]``: ``Σ_{j≠i} (Ŵ_i·W_j)²`` (:func:`interference`).
    """
    W3, batched = _check_W(W)
    eps = _check_eps(eps)
    norms, learned, _, s = _core(W3, eps)
    m = W3.shape[-1]
    return {
        "norms": _out(norms, batched),
        "D": _out(_dimensionality(norms, learned, s), batched),
        "dims_per_feature": _out(m / norms.square().sum(-1), batched),
        "interference": _out(_interference(norms, learned, s), batched),
    }


# ----------------------------------------------------------------------------- geometry

_C72, _C144 = math.cos(2 * math.pi / 5), math.cos(4 * math.pi / 5)
# Tight square antiprism: two squares at heights ±1/√3 (radius √(2/3)), rotated 45° apart.
_CA45, _CA135 = (math.sqrt(2) - 1) / 3, -(math.sqrt(2) + 1) / 3

#: The recognised structures: name -> (group size k, D of each member, sorted cosines
#: from one member to the other k - 1). Group sizes are distinct.
STRUCTURES: dict[str, tuple[int, float, tuple[float, ...]]] = {
    "dedicated dimension": (1, 1.0, ()),
    "antipodal pair": (2, 1 / 2, (-1.0,)),
    "triangle": (3, 2 / 3, (-0.5, -0.5)),
    "tetrahedron": (4, 3 / 4, (-1 / 3,) * 3),
    "pentagon": (5, 2 / 5, (_C144, _C144, _C72, _C72)),
    "square antiprism": (8, 3 / 8, (_CA135, _CA135, -1 / 3, _CA45, _CA45, 1 / 3, 1 / 3)),
}
_BY_SIZE = {k: (name, d, prof) for name, (k, d, prof) in STRUCTURES.items()}
_NOT_LEARNED = "not learned"
_OTHER = "other"


def _components(adj) -> list[list[int]]:
    """Connected components of a boolean adjacency matrix (numpy ``[n, n]``)."""
    n = adj.shape[0]
    seen = [False] * n
    comps = []
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        comp, frontier = [start], [start]
        while frontier:
            nxt = []
            for i in frontier:
                for j in adj[i].nonzero()[0].tolist():
                    if not seen[j]:
                        seen[j] = True
                        nxt.append(j)
            comp.extend(nxt)
            frontier = nxt
        comps.append(sorted(comp))
    return comps


def _check_positive(x, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    if not ok or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {x!r}")
    return float(x)


def geometry(W: torch.Tensor, norm_threshold: float = 0.5, tol: float = 0.05, cos_tol: float = 0.1):
    """Name the geometric structure each feature sits in.

    Rule, per instance:

    1. A feature with ``‖W_i‖ < norm_threshold`` is ``"not learned"``.
    2. The learned features are grouped: two learned features are *neighbours* when
       ``|cos(W_i, W_j)| > cos_tol``, and a *group* is a connected component of that
       neighbour graph (features of different groups are orthogonal up to ``cos_tol``,
       so e.g. a pentagonal bipyramid splits into a pentagon and an antipodal pair, an
       octahedron into three antipodal pairs, a square into two antipodal pairs).
    3. A group of size ``k`` is named after the structure of that size in
       :data:`STRUCTURES` when **both**

       * every member's ``D_i`` (:func:`feature_dimensionality`, over all features of
         the instance) is within ``tol`` of the structure's value, and
       * every member's sorted cosines to the other ``k - 1`` members are each within
         ``cos_tol`` of the structure's:

       ==========================  ===  =====  ==============================================
       name                        k    D      cosines to the other members
       ==========================  ===  =====  ==============================================
       ``"dedicated dimension"``   1    1      (none: orthogonal to every learned feature)
       ``"antipodal pair"``        2    1/2    -1
       ``"triangle"``              3    2/3    -1/2, -1/2
       ``"tetrahedron"``           4    3/4    -1/3 (x3)
       ``"pentagon"``              5    2/5    cos 144° (x2), cos 72° (x2)
       ``"square antiprism"``      8    3/8    -(√2+1)/3 (x2), -1/3, (√2-1)/3 (x2), 1/3 (x2)
       ==========================  ===  =====  ==============================================

       The cosines fix each group's Gram matrix up to the tolerance, hence its span (a
       line for the pair, a plane for the triangle and pentagon, 3-space for the
       tetrahedron and antiprism); this is what separates a pentagon (D = 0.4) from a
       square antiprism (D = 0.375), and a square antiprism from a cube (also D = 3/8,
       but with antipodal vertices). The antiprism template is the *tight* one (rings
       at heights ±1/√3), the one whose ``D`` is exactly 3/8. Norms need not be 1 (a
       TMS pentagon has ``‖W_i‖ ≈ 1.13``), but unequal norms within a group move ``D``.
    4. Anything else (no structure of that size, or a check failing for any member) is
       ``"other (D=0.xx)"`` with the feature's own ``D_i`` to two decimals: e.g. a
       hexagon, a lone feature with many small overlaps, an unbalanced pair.

    The numeric part (norms, ``D``, cosines) is batched on ``W``'s device; the grouping
    runs on the CPU per instance and costs ``O(n²)`` per instance.

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.
        norm_threshold: ``‖W_i‖`` below this is "not learned" (>= 0).
        tol: allowed ``|D_i - D_structure|`` (> 0).
        cos_tol: neighbour threshold and allowed cosine deviation (> 0).

    Returns:
        For a 2-D ``W`` a list of ``n`` strings; for a 3-D ``W`` a list (per instance)
        of such lists.
    """
    W3, batched = _check_W(W)
    norm_threshold = _check_positive(norm_threshold, "norm_threshold", allow_zero=True)
    tol = _check_positive(tol, "tol")
    cos_tol = _check_positive(cos_tol, "cos_tol")

    with torch.no_grad():
        norms, learned_eps, Wh, s = _core(W3.detach(), 1e-8)
        D = _dimensionality(norms, learned_eps, s)
        learned = (norms >= norm_threshold) & learned_eps
        cos = Wh @ Wh.transpose(-1, -2)  # [I, n, n]; rows of unlearned features are 0
        adj = (cos.abs() > cos_tol) & learned.unsqueeze(-1) & learned.unsqueeze(-2)
        n = W3.shape[-2]
        adj &= ~torch.eye(n, dtype=torch.bool, device=adj.device)
        D_np = D.double().cpu().numpy()
        cos_np = cos.double().cpu().numpy()
        adj_np = adj.cpu().numpy()
        learned_np = learned.cpu().numpy()

    out = []
    for inst in range(W3.shape[0]):
        names = [_NOT_LEARNED] * n
        Dn, Cn = D_np[inst], cos_np[inst]
        sub = learned_np[inst].nonzero()[0]
        # components of the learned features only
        for comp in _components(adj_np[inst][sub][:, sub]):
            group = [int(sub[c]) for c in comp]
            label = None
            tmpl = _BY_SIZE.get(len(group))
            if tmpl is not None:
                name, d_target, prof = tmpl
                ok = all(abs(Dn[i] - d_target) <= tol for i in group)
                if ok:
                    for i in group:
                        got = sorted(Cn[i, j] for j in group if j != i)
                        if any(abs(g - p) > cos_tol for g, p in zip(got, prof)):
                            ok = False
                            break
                if ok:
                    label = name
            for i in group:
                names[i] = label if label is not None else f"{_OTHER} (D={Dn[i]:.2f})"
        out.append(names)
    return out if batched else out[0]


def geometry_counts(W: torch.Tensor, norm_threshold: float = 0.5, tol: float = 0.05, cos_tol: float = 0.1):
    """How many features of each instance sit in each structure (see :func:`geometry`).

    Args:
        W: ``[n, m]`` or ``[I, n, m]`` float tensor, one feature per row.
        norm_threshold, tol, cos_tol: as in :func:`geometry`.

    Returns:
        A dict ``name -> count`` (per instance: a list of such dicts for a 3-D ``W``).
        Every dict has the same keys in the same order: ``"not learned"``, the names in
        :data:`STRUCTURES`, and ``"other"`` (all ``"other (D=...)"`` features together).
        The counts add up to ``n``.
    """
    labels = geometry(W, norm_threshold=norm_threshold, tol=tol, cos_tol=cos_tol)
    per = labels if W.dim() == 3 else [labels]
    keys = [_NOT_LEARNED, *STRUCTURES, _OTHER]
    res = []
    for names in per:
        c = dict.fromkeys(keys, 0)
        for nm in names:
            c[_OTHER if nm.startswith(_OTHER) else nm] += 1
        res.append(c)
    return res if W.dim() == 3 else res[0]
