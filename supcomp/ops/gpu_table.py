"""Which implementation runs an op's forward on a GPU: supcomp's Triton kernel or a library routine.

The rule "never slower than the peer": for each op, dtype and size class, the table names the
route that measured fastest on a GPU architecture, and every entry carries the measurement that
justifies it. The routes are exact alternatives (:mod:`supcomp.ops.peer_routes`): the same values
within float rounding, the same empty-slot and NaN rules, the same errors (the index range is
checked by the op before any route runs); the backward always runs supcomp's own kernels, so
gradients and their determinism do not depend on the route.

Routes:

* ``sparse_encode``: ``"triton"`` (kernels/sparse_encode.py), ``"embedding_bag"``, ``"sparse_csr"``.
* ``relu_readout``: ``"triton"`` (cuBLAS GEMM + Triton epilogue), ``"addmm"`` (``baddbmm`` + ReLU,
  ``torch._addmm_activation`` for one instance).
* ``relu_readout_topk``: ``"triton"`` (blockwise, never holds [B, n]), ``"addmm_topk"``
  (``topk(relu(addmm))``: holds the [B, n] matrix, so only in the size class where it fits).
* ``superpose``: ``"triton"`` (the fused kernel), ``"unfused"`` (sparse_encode then relu_readout,
  each on its own route).

Lookup: the table of the device's architecture (``"sm90"`` for an H100/H200, from
``torch.cuda.get_device_capability``), else ``DEFAULT`` (the H100 measurements, the only GPU
measured so far). CPU tensors (Triton's interpreter in the tests) always take ``"triton"`` unless a
route is forced with :func:`use_route`. Determinism: under ``torch.use_deterministic_algorithms(True)``
routes whose CUDA implementation is not deterministic are skipped (``NONDETERMINISTIC``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import torch

from . import peer_routes

__all__ = ["DEFAULT", "ROUTES", "TABLES", "choose", "routed", "size_class", "use_route"]

# op -> route name -> forward on the canonical layout (the "triton" route is the op's own kernel, given to routed()).
ROUTES: dict[str, dict[str, Callable]] = {
    "sparse_encode": {
        "embedding_bag": peer_routes.sparse_encode_embedding_bag,
        "sparse_csr": peer_routes.sparse_encode_sparse_csr,
    },
    "relu_readout": {"addmm": peer_routes.relu_readout_addmm},
    "relu_readout_topk": {"addmm_topk": peer_routes.relu_readout_topk_values_indices},
    "superpose": {},  # "unfused" is added below: it routes its two ops through this table
}


def superpose_unfused(indices: torch.Tensor, values: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """superpose as its two ops: relu_readout(sparse_encode(indices, values, W), W, b), each on its own route.

    indices/values [I, B, k], W [I, n, d], b [I, n] -> y [I, B, n]; h [I, B, d] is written to memory in
    between (the fused kernel keeps it in registers).
    """
    from ..kernels import relu_readout as readout_kernel
    from ..kernels import sparse_encode as encode_kernel

    h = routed("sparse_encode", encode_kernel.sparse_encode_forward)(indices, values, W)
    return routed("relu_readout", readout_kernel.relu_readout_forward)(h, W, b)


# Routes whose CUDA kernels are not deterministic run to run (float atomics); skipped under
# torch.use_deterministic_algorithms(True). cuSPARSE SpMM (CSR, default algorithm) and
# embedding_bag's forward (one thread block per bag) are deterministic; so are cuBLAS GEMMs.
NONDETERMINISTIC: frozenset[tuple[str, str]] = frozenset()

_H100 = "benchmarks/RESULTS.md, GPU section, H100 80GB HBM3, torch 2.11, triton 3.6, 2026-11-25"

# (op, dtype, size class) -> (route, the measurement that justifies it). Entries not listed run "triton".
DEFAULT: dict[tuple[str, torch.dtype, str], tuple[str, str]] = {
    ("sparse_encode", torch.float32, "any"): (
        "sparse_csr",
        f"B=8192 k=32 n=65536 d=256 fwd: CSR 0.084 ms, embedding_bag 0.197 ms, triton 0.310 ms ({_H100})",
    ),
    ("sparse_encode", torch.bfloat16, "any"): (
        "embedding_bag",
        f"B=8192 k=32 n=65536 d=256 fwd: embedding_bag 0.173 ms, triton 0.331 ms; CSR not measured ({_H100})",
    ),
    ("sparse_encode", torch.float16, "any"): (
        "triton",
        f"B=8192 k=32 n=65536 d=256 fwd: triton 0.147 ms, embedding_bag 0.172 ms; CSR not measured ({_H100})",
    ),
    ("relu_readout", torch.float32, "small"): (
        "addmm",
        f"B=1024 d=64 n=4096 fwd: addmm 0.032 ms, triton 0.115 ms ({_H100})",
    ),
    ("relu_readout", torch.float16, "small"): (
        "addmm",
        f"B=1024 d=64 n=4096 fwd: addmm 0.015 ms, triton 0.119 ms ({_H100})",
    ),
    ("relu_readout", torch.bfloat16, "small"): (
        "addmm",
        f"B=1024 d=64 n=4096 fwd: addmm 0.015 ms, triton 0.119 ms ({_H100})",
    ),
    ("relu_readout", torch.float32, "large"): (
        "triton",
        f"B=4096 d=256 n=65536 fwd: triton 3.649 ms, addmm 3.651 ms, half the peak memory ({_H100})",
    ),
    ("relu_readout_topk", torch.float32, "dense_fits"): (
        "addmm_topk",
        f"B=4096 d=256 n=65536 k=32: addmm_topk 6.865 ms, triton 17.719 ms, at 12x the memory ({_H100})",
    ),
    ("relu_readout_topk", torch.float16, "dense_fits"): (
        "addmm_topk",
        f"B=4096 d=256 n=65536 k=32: addmm_topk 2.646 ms, triton 4.443 ms, at 20x the memory ({_H100})",
    ),
    ("relu_readout_topk", torch.bfloat16, "dense_fits"): (
        "addmm_topk",
        f"B=4096 d=256 n=65536 k=32: addmm_topk 2.634 ms, triton 4.428 ms, at 20x the memory ({_H100})",
    ),
    ("superpose", torch.float32, "any"): (
        "unfused",
        f"I=100 n=400 d=30 B=1024 p=0.05 fwd: unfused 1.211 ms, fused triton 1.549 ms ({_H100})",
    ),
}

# architecture ("sm90", ...) -> its table; an architecture not listed uses DEFAULT.
TABLES: dict[str, dict] = {"sm90": DEFAULT}

# Largest [B, n] matrix (bytes) the addmm_topk route may materialise: the measured size (1 GiB fp32).
DENSE_TOPK_MAX_BYTES = 1 << 30
# relu_readout: B * n * d at or below this is "small" (the measured small size, B=1024 d=64 n=4096).
SMALL_GEMM = 1 << 28

_forced: contextvars.ContextVar[dict | None] = contextvars.ContextVar("supcomp_gpu_route", default=None)


@contextlib.contextmanager
def use_route(op: str, name: str | None) -> Iterator[None]:
    """Run ``op``'s forward on route ``name`` inside the block, on any device (``None``: the table).

    Args:
        op: ``"sparse_encode"``, ``"relu_readout"``, ``"relu_readout_topk"`` or ``"superpose"``.
        name: ``"triton"`` or one of ``ROUTES[op]``.

    Raises:
        ValueError: unknown op or route. The choice applies to the current thread / asyncio task and
            only where the op runs its Triton backend (CUDA, or ``use_backend("triton")``).
    """
    if op not in ROUTES:
        raise ValueError(f"use_route: unknown op {op!r}, expected one of {sorted(ROUTES)}")
    if name is not None and name != "triton" and name not in ROUTES[op]:
        raise ValueError(f"use_route: {op} has no route {name!r}, expected 'triton' or one of {sorted(ROUTES[op])}")
    forced = dict(_forced.get() or {})
    forced[op] = name
    token = _forced.set(forced)
    try:
        yield
    finally:
        _forced.reset(token)


def size_class(op: str, *tensors: torch.Tensor, k: int | None = None) -> str:
    """The size class of a call: ``"any"``, ``"small"``/``"large"`` (relu_readout) or ``"dense_fits"``/``"large"``."""
    if op == "relu_readout":
        h, W = tensors[0], tensors[1]
        return "small" if h.shape[0] * h.shape[1] * W.shape[1] * W.shape[2] <= SMALL_GEMM else "large"
    if op == "relu_readout_topk":
        h, W = tensors[0], tensors[1]
        dense = h.shape[0] * h.shape[1] * W.shape[1] * h.element_size()
        return "dense_fits" if dense <= DENSE_TOPK_MAX_BYTES else "large"
    return "any"


def _arch(device: torch.device) -> str | None:
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm{major}{minor}"


def choose(op: str, device: torch.device, dtype: torch.dtype, cls: str) -> str:
    """The route that serves ``op``'s forward for tensors of this device, dtype and size class."""
    forced = (_forced.get() or {}).get(op)
    if forced is not None:
        return forced
    arch = _arch(device)
    if arch is None:
        return "triton"
    route = TABLES.get(arch, DEFAULT).get((op, dtype, cls), ("triton", ""))[0]
    if (op, route) in NONDETERMINISTIC and torch.are_deterministic_algorithms_enabled():
        return "triton"
    return route


def routed(op: str, own: Callable) -> Callable:
    """``op``'s forward through the table: ``own`` (the Triton kernel) or the route the table names."""

    def forward(*args, **kwargs):
        t = args[0]
        route = choose(
            op, t.device, args[2 if op in ("sparse_encode", "superpose") else 1].dtype, size_class(op, *args)
        )
        fn = own if route == "triton" else ROUTES[op][route]
        return fn(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = f"{op}_routed_forward"
    forward.__doc__ = f"{op} forward: the Triton kernel or the route named by supcomp.ops.gpu_table for this call."
    return forward


ROUTES["superpose"]["unfused"] = superpose_unfused
