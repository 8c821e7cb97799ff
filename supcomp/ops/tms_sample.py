"""tms_sample: the toy-model batch sampler (counter-based, the same numbers on every device).

Every (seed, step, instance, row) has its own key, so a batch does not depend on the thread count
or the device, and every trainer (fused C++, reference, GPU) sees identical data.

Implementations (one table, :data:`IMPLS`):

* the C++ sampler ``csrc/tms_sample.cpp`` draws CSR batches on CPU (:class:`CsrSampler`); the
  fused TMS step (``supcomp.ops.tms_step``) draws the same rows inside its own loop;
* the pure-torch reference below draws dense batches ``x [I, B, n]`` on any device
  (:class:`DenseSampler`): integer arithmetic that restates the recipe;
* the Triton kernel ``kernels/tms_sample.py`` draws the independent features of a dense batch on
  CUDA (the hot part of :class:`DenseSampler`).

Tests: ``tests/ops/test_tms_sample.py``; benchmark: ``benchmarks/ops/tms_sample.py``.

The C++ sampler's recipe, restated (all arithmetic modulo 2^64 or 2^32):

* row key: a splitmix64 chain over (seed, step, instance, row); with per-instance seeds
  ``keys`` the chain is over (keys[i], step, 0, row). One more splitmix64 output ``k`` gives
  ``kon = k mod 2^32`` (which features are on) and ``kval = k >> 32`` (their values).
* independent feature f is on when ``mix32(kon + f * 0x9E3779B9) <= thr[i, f]``, with
  ``thr = p * 2^32 - 1`` (clamped), and its value is ``(mix32(kval + f * 0x9E3779B9) >> 8) / 2^24``
  (``2u - 1`` for the ``abs`` kind).
* correlated pair q: one uniform from the row's splitmix64 stream decides both members;
  anticorrelated pair q: one uniform decides whether the pair is on (probability p_a + p_b),
  and only then a second picks the member.

torch's int64 add and multiply wrap modulo 2^64 on CPU and CUDA; right shifts are made
logical by masking. ``tests/ops/test_tms_sample.py`` checks the agreement bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from .. import _C
from .dispatch import Impl, Table

_M32 = 0xFFFFFFFF


LAYOUTS = ("IBn", "BIn")


def to_instance_major(x: torch.Tensor, layout: str, n_instances: int | None = None, n_features: int | None = None):
    """A dense batch in ``layout`` -> ``[I, B, n]`` (a view), supcomp's layout.

    ``layout="IBn"``: ``x`` is ``[I, B, n]`` already (returned as is); ``layout="BIn"``: ``x`` is
    ``[B, I, n]``, ARENA's and the TMS notebook's layout. The layout is never inferred from the sizes
    (with B == I both read alike), so it must be named. ``n_instances`` / ``n_features``, when given, are
    checked against the instance and feature axes.

    Raises:
        ValueError: ``layout`` is not one of :data:`LAYOUTS`; ``x`` is not 3-D or its sizes differ from
            ``n_instances`` / ``n_features``.
    """
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout: expected one of {LAYOUTS} ('BIn' is ARENA's / the notebook's [B, I, n]), got {layout!r}"
        )
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a 3-D [{', '.join(layout)}] batch (layout={layout!r}), got {got}")
    xi = x if layout == "IBn" else x.transpose(0, 1)
    if n_instances is not None and xi.shape[0] != n_instances:
        raise ValueError(
            f"x: layout={layout!r} puts the instances on axis {layout.index('I')}, of size {xi.shape[0]}; "
            f"the model has {n_instances} instances"
        )
    if n_features is not None and xi.shape[2] != n_features:
        raise ValueError(f"x: expected {n_features} features on the last axis, got {xi.shape[2]}")
    return xi


def from_instance_major(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``[I, B, n]`` -> the same batch in ``layout`` (a view); the inverse of :func:`to_instance_major`.

    Raises:
        ValueError: ``layout`` is not one of :data:`LAYOUTS`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    return x if layout == "IBn" else x.transpose(0, 1)


@dataclasses.dataclass
class SparseBatch:
    """One batch of ``I * B`` sparse rows in CSR form.

    offsets ``[I*B + 1]`` int64; indices ``[nnz]`` int64 (ascending within a row as the samplers draw
    them; a hand-built batch may repeat a feature in a row: repeats add up); values ``[nnz]``.
    """

    offsets: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    n_instances: int
    batch_size: int
    n_features: int

    def counts(self) -> torch.Tensor:
        """Active features per row, ``[I, B]``."""
        return (self.offsets[1:] - self.offsets[:-1]).reshape(self.n_instances, self.batch_size)

    def _positions(self):
        rows = torch.repeat_interleave(torch.arange(self.n_instances * self.batch_size), self.counts().reshape(-1))
        slot = torch.arange(self.indices.shape[0]) - self.offsets[rows]
        return rows, slot

    def to_padded(self, k: int | None = None):
        """``(indices [I, B, k] int64, values [I, B, k])``, -1 / 0 padded; ``k`` defaults to the widest row.

        Raises:
            ValueError: a row has more than ``k`` active features.
        """
        most = int(self.counts().max()) if self.indices.numel() else 0
        k = most if k is None else k
        if most > k:
            raise ValueError(f"k: a row has {most} active features, more than k = {k}")
        rows, slot = self._positions()
        R = self.n_instances * self.batch_size
        idx = torch.full((R, k), -1, dtype=torch.int64)
        val = torch.zeros(R, k, dtype=self.values.dtype)
        idx[rows, slot] = self.indices
        val[rows, slot] = self.values
        return idx.reshape(self.n_instances, self.batch_size, k), val.reshape(self.n_instances, self.batch_size, k)

    def to_dense(self, layout: str = "IBn") -> torch.Tensor:
        """``x [I, B, n]`` (``layout="BIn"``: ``[B, I, n]``, ARENA's / the notebook's layout, contiguous); a
        feature repeated in a row adds up (as in the fused step and ``supcomp.sparse.padded_to_dense``)."""
        rows, _ = self._positions()
        x = torch.zeros(self.n_instances * self.batch_size, self.n_features, dtype=self.values.dtype)
        x.index_put_((rows, self.indices), self.values, accumulate=True)
        x = x.reshape(self.n_instances, self.batch_size, self.n_features)
        return x if layout == "IBn" else from_instance_major(x, layout).contiguous()

    @classmethod
    def from_dense(cls, x: torch.Tensor, layout: str = "IBn") -> SparseBatch:
        """The CSR batch of a dense one: ``x [I, B, n]``, or ``[B, I, n]`` with ``layout="BIn"`` (a batch
        drawn by ARENA's or the notebook's ``generate_batch``). Zeros are dropped; indices ascend in a row.

        Raises:
            ValueError: ``layout`` is unknown or ``x`` is not 3-D. TypeError: ``x`` is not floating point.
        """
        xi = to_instance_major(x, layout)
        if not xi.dtype.is_floating_point:
            raise TypeError(f"x: expected a floating-point batch, got {xi.dtype}")
        I, B, n = xi.shape
        flat = xi.detach().cpu().reshape(I * B, n)
        nz = flat != 0
        offsets = torch.zeros(I * B + 1, dtype=torch.int64)
        offsets[1:] = nz.sum(1).cumsum(0)
        rows, cols = nz.nonzero(as_tuple=True)
        return cls(offsets, cols.to(torch.int64), flat[rows, cols].contiguous(), I, B, n)


def check_batch_size(batch_size) -> None:
    """Raise ValueError unless ``batch_size`` is a positive int (not a bool)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def instance_seed_tensor(instance_seeds, n_instances) -> torch.Tensor | None:
    """None, or a list / tensor of ``n_instances`` non-negative ints -> uint64 tensor ``[I]``."""
    if instance_seeds is None:
        return None
    s = torch.as_tensor(instance_seeds)
    if s.dim() != 1 or s.shape[0] != n_instances or s.dtype.is_floating_point or s.dtype == torch.bool:
        raise ValueError(
            f"instance_seeds: expected {n_instances} ints (one per instance), got shape {list(s.shape)} {s.dtype}"
        )
    if bool((s < 0).any()):
        raise ValueError("instance_seeds: seeds must be >= 0")
    return s.to(torch.int64)


# ---------------------------------------------------------------- reference (pure torch, any device)


def _i64(u: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return u - (1 << 64) if u >= 1 << 63 else u


_GOLDEN64 = _i64(0x9E3779B97F4A7C15)
_SM1 = _i64(0xBF58476D1CE4E5B9)
_SM2 = _i64(0x94D049BB133111EB)
_STEP = _i64(0xD1B54A32D192ED03)
_INST = _i64(0x8CB92BA72F3D8DD7)
_ROW = _i64(0xABC98388FB8FAC03)
_GOLDEN32 = 0x9E3779B9


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _splitmix(s: torch.Tensor):
    """(new state, output) of splitmix64."""
    s = s + _GOLDEN64
    z = (s ^ _shr(s, 30)) * _SM1
    z = (z ^ _shr(z, 27)) * _SM2
    return s, z ^ _shr(z, 31)


def _uniform(s: torch.Tensor):
    s, z = _splitmix(s)
    return s, _shr(z, 11).double() * (1.0 / 9007199254740992.0)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser on int64 tensors holding uint32 values."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def reference_independent(kon: torch.Tensor, kval: torch.Tensor, thr: torch.Tensor, signed: bool):
    """The independent features of rows with keys ``kon``, ``kval`` ``[i, B]`` (int64 holding uint32).

    ``thr`` ``[i, n]`` int64: feature f is on when ``mix32(kon + f * 0x9E3779B9) <= thr[f]``; its value
    is ``(mix32(kval + f * 0x9E3779B9) >> 8) / 2^24`` (``2u - 1`` when ``signed``).
    Returns ``(on [i, B, n] bool, u [i, B, n] float32)``.
    """
    feat = torch.arange(thr.shape[1], dtype=torch.int64, device=thr.device) * _GOLDEN32
    on = _mix32((kon[..., None] + feat) & _M32) <= thr[:, None, :]
    u = (_mix32((kval[..., None] + feat) & _M32) >> 8).to(torch.float32) * (1.0 / 16777216.0)
    return on, (2.0 * u - 1.0 if signed else u)


# ---------------------------------------------------------------- Triton (CUDA) and the table


@functools.cache
def _triton_impl() -> Impl:
    from ..kernels import tms_sample as kernel

    return Impl(independent=kernel.tms_sample_independent)


IMPLS = Table(
    "tms_sample",
    reference=Impl(independent=reference_independent),
    triton=_triton_impl,
    cpp_dtypes=(),
)


class DenseSampler:
    """``sample(step) -> x [I, B, n]`` (dense, on ``device``): the batches of :class:`CsrSampler`.

    Args:
        p: ``[I, n]`` firing probabilities.
        batch_size: rows per instance, ``B >= 1``.
        seed: the run's seed (used when ``instance_seeds`` is None).
        correlated_pairs, anticorrelated_pairs: the first ``2 * (correlated + anticorrelated)``
            features form pairs (see ``supcomp.tms.ToyModelConfig``).
        signed_values: values on [-1, 1) instead of [0, 1).
        dtype: the batch's float dtype.
        device: where the batch is drawn.
        instance_seeds: None, or ``[I]`` non-negative integers keying each instance on its own.
        max_elements: bound on the int64 temporaries (rows are drawn in slices of instances).

    Raises:
        ValueError: ``batch_size`` is not a positive int, or ``instance_seeds`` has the wrong length.

    Where the Triton kernel serves (CUDA), the independent features are drawn by
    ``kernels/tms_sample.py``; the pairs always by the torch code here.
    """

    def __init__(
        self,
        p: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        correlated_pairs: int = 0,
        anticorrelated_pairs: int = 0,
        signed_values: bool = False,
        dtype=torch.float32,
        device=None,
        instance_seeds=None,
        max_elements: int = 1 << 25,
    ):
        check_batch_size(batch_size)
        self.batch_size, self.dtype = batch_size, dtype
        self.corr, self.anti, self.signed = int(correlated_pairs), int(anticorrelated_pairs), bool(signed_values)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        I, n = p.shape
        p = p.to(torch.float64).reshape(I, n)
        q = p * 4294967296.0
        thr = torch.where(
            q >= 4294967296.0,
            torch.full_like(q, float(_M32)),
            torch.where(q < 1.0, torch.zeros_like(q), torch.floor(q - 1.0)),
        )
        self.p = p.to(self.device)
        self.thr = thr.to(torch.int64).to(self.device)  # [I, n]
        self.seed = _i64(int(seed) & 0xFFFFFFFFFFFFFFFF)
        seeds = instance_seed_tensor(instance_seeds, I)  # the CSR sampler's checks: the same seeds work on both
        self.keys = None if seeds is None else seeds.to(self.device)
        self.rows_per_slice = max(1, int(max_elements) // max(1, batch_size * n))

    def _row_state(self, step: int, i0: int, i1: int) -> torch.Tensor:
        """The splitmix64 state of each row [i1 - i0, B] after its Rng construction."""
        B, dev = self.batch_size, self.device
        inst = torch.arange(i0, i1, dtype=torch.int64, device=dev)[:, None]
        row = torch.arange(B, dtype=torch.int64, device=dev)[None, :]
        if self.keys is None:
            s = torch.full((i1 - i0, B), self.seed, dtype=torch.int64, device=dev)
        else:
            s = self.keys[i0:i1, None].expand(i1 - i0, B).clone()
            inst = torch.zeros_like(inst)
        s, t = _splitmix(s)
        s = t ^ _i64((int(step) * (_STEP & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF)
        s, t = _splitmix(s)
        s = t ^ (inst * _INST)
        s, t = _splitmix(s)
        return t ^ (row * _ROW)

    def sample(self, step: int, layout: str = "IBn") -> torch.Tensor:
        """The batch of ``step``: ``x [I, B, n]`` (``layout="BIn"``: ``[B, I, n]``, a contiguous copy)."""
        x = self._sample(step)
        return x if layout == "IBn" else from_instance_major(x, layout).contiguous()

    def _sample(self, step: int) -> torch.Tensor:
        (I, n), B = self.p.shape, self.batch_size
        x = torch.empty((I, B, n), dtype=self.dtype, device=self.device)
        corr, anti = self.corr, self.anti
        independent = IMPLS.impl(self.device, self.dtype).independent
        for i0 in range(0, I, self.rows_per_slice):
            i1 = min(I, i0 + self.rows_per_slice)
            s = self._row_state(step, i0, i1)
            s, k = _splitmix(s)
            on, values = independent(k & _M32, _shr(k, 32), self.thr[i0:i1], self.signed)  # [i, B, n] each
            p = self.p[i0:i1]
            for q in range(corr):
                s, u = _uniform(s)
                o = u < p[:, None, 2 * q]
                on[..., 2 * q] = o
                on[..., 2 * q + 1] = o
            for q in range(anti):
                f = 2 * corr + 2 * q
                pa, s2 = p[:, None, f], p[:, None, f] + p[:, None, f + 1]
                s, u = _uniform(s)
                hit = u < s2
                s_next, u2 = _uniform(s)
                s = torch.where(hit, s_next, s)  # the second draw happens only for a hit
                a = u2 * s2 < pa
                on[..., f] = hit & a
                on[..., f + 1] = hit & ~a
            zero = torch.zeros((), dtype=values.dtype, device=values.device)
            x[i0:i1] = torch.where(on, values, zero).to(self.dtype)
            del on, values
        return x


# ---------------------------------------------------------------- C++ (CPU): CSR batches

# Batches with at most this many (instance, row, feature) slots are drawn in one pass (buffers of that
# size, 12 bytes a slot: 12 MiB at most); larger ones count first, then fill (buffers of nnz only).
ONEPASS_MAX_ELEMENTS = 1 << 20


class CsrSampler:
    """Draws CSR batches on CPU with the C++ sampler: ``sample(step) -> SparseBatch``.

    Args: as :class:`DenseSampler` (``dtype`` float32 or float64; no device: CPU only).
    ``instance_seeds`` (``[I]`` ints, optional): instance i's rows are drawn as those of instance 0
    of a run with ``seed = instance_seeds[i]``, wherever i sits in the batch, so a sweep can pack
    independent points into one run and get exactly the data each gets alone.

    Raises:
        ValueError: ``batch_size`` is not a positive int; ``instance_seeds`` is malformed.
        TypeError: ``dtype`` is not float32 or float64.
    """

    def __init__(
        self,
        p: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        correlated_pairs: int = 0,
        anticorrelated_pairs: int = 0,
        signed_values: bool = False,
        dtype=torch.float32,
        instance_seeds=None,
    ):
        check_batch_size(batch_size)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.batch_size, self.seed, self.dtype = batch_size, int(seed), dtype
        self.p = p.to(torch.float64).contiguous()
        self.correlated_pairs, self.anticorrelated_pairs = int(correlated_pairs), int(anticorrelated_pairs)
        self.signed_values = bool(signed_values)
        I = self.p.shape[0]
        seeds = instance_seed_tensor(instance_seeds, I)
        # the C++ sampler takes a uint64 numpy array (masked to 64 bits like ``seed``)
        self.instance_seeds = None if seeds is None else seeds.numpy().astype("uint64")
        self._offsets = torch.empty(I * batch_size + 1, dtype=torch.int64)
        self._indices = torch.empty(0, dtype=torch.int64)
        self._values = torch.empty(0, dtype=dtype)

    def key_args(self, step: int) -> tuple:
        """The leading arguments every C++ sampling entry point takes for ``step``."""
        return (
            self.seed & 0xFFFFFFFFFFFFFFFF,
            int(step),
            self.p.numpy(),
            self.batch_size,
            self.correlated_pairs,
            self.anticorrelated_pairs,
        )

    def sample(self, step: int, copy: bool = True) -> SparseBatch:
        """The batch of ``step``. With ``copy=False`` the tensors are views of buffers that the next call
        overwrites (what the trainer uses: no fresh memory, so no page faults, every step)."""
        I, n = self.p.shape
        args = self.key_args(step)
        threads = torch.get_num_threads()
        dense_size = I * self.batch_size * n
        if dense_size <= ONEPASS_MAX_ELEMENTS:
            # Small batches: one hashing pass into rows * n buffers, packed in place (same numbers).
            if self._indices.shape[0] < dense_size:
                self._indices = torch.empty(dense_size, dtype=torch.int64)
                self._values = torch.empty(dense_size, dtype=self.dtype)
            nnz = _C.tms_sample_onepass(
                *args,
                self.signed_values,
                self._offsets.numpy(),
                self._indices.numpy(),
                self._values.numpy(),
                threads,
                instance_seeds=self.instance_seeds,
            )
        else:
            nnz = _C.tms_sample_count(*args, self._offsets.numpy(), threads, instance_seeds=self.instance_seeds)
            if self._indices.shape[0] < nnz:
                cap = int(nnz * 1.25) + 1024
                self._indices = torch.empty(cap, dtype=torch.int64)
                self._values = torch.empty(cap, dtype=self.dtype)
            _C.tms_sample_fill(
                *args,
                self.signed_values,
                self._offsets.numpy(),
                self._indices.numpy(),
                self._values.numpy(),
                threads,
                instance_seeds=self.instance_seeds,
            )
        off, idx, val = self._offsets, self._indices[:nnz], self._values[:nnz]
        if copy:
            off, idx, val = off.clone(), idx.clone(), val.clone()
        return SparseBatch(off, idx, val, I, self.batch_size, n)
