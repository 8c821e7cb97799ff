"""Batches of toy-model inputs, generated directly in sparse form.

``BatchSampler(config, batch_size, seed).sample(step)`` draws every instance's
batch in C++ from a counter-based random generator keyed by (seed, step,
instance, row): the same arguments give the same numbers whatever the thread
count, and both trainers (fused and reference) see identical data. Each
(row, feature) pair gets one 32-bit counter-based hash (murmur3's finaliser of
a per-row key and the feature id, vectorised), compared with p * 2^32; the
values come from a second hash. A probability below 2^-32 rounds to 0.

A batch is a ``SparseBatch`` in CSR form (rows = (instance, batch row)),
because densities differ by orders of magnitude across instances: a padded
``[I, B, K]`` layout would be as wide as the densest instance everywhere.
``to_padded()`` and ``to_dense()`` convert for the ops and the reference.

Values are uniform on [0, 1) (on [-1, 1) for the ``abs`` kind). See
``ToyModelConfig`` for the correlated / anticorrelated pair rules.
"""
from __future__ import annotations

import dataclasses

import torch

from .. import _C
from .config import ToyModelConfig


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
        """``(indices [I, B, k], values [I, B, k])``, -1 / 0 padded; ``k`` defaults to the widest row."""
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

    def to_dense(self) -> torch.Tensor:
        """``x [I, B, n]``; a feature repeated in a row adds up (as in the fused step and
        ``supcomp.sparse.padded_to_dense``)."""
        rows, _ = self._positions()
        x = torch.zeros(self.n_instances * self.batch_size, self.n_features, dtype=self.values.dtype)
        x.index_put_((rows, self.indices), self.values, accumulate=True)
        return x.reshape(self.n_instances, self.batch_size, self.n_features)


def _instance_seeds(instance_seeds, n_instances) -> torch.Tensor | None:
    """None, or a list / tensor of ``n_instances`` non-negative ints -> uint64 tensor ``[I]``."""
    if instance_seeds is None:
        return None
    s = torch.as_tensor(instance_seeds)
    if s.dim() != 1 or s.shape[0] != n_instances or s.dtype.is_floating_point or s.dtype == torch.bool:
        raise ValueError(f"instance_seeds: expected {n_instances} ints (one per instance), got "
                         f"shape {list(s.shape)} {s.dtype}")
    if bool((s < 0).any()):
        raise ValueError("instance_seeds: seeds must be >= 0")
    return s.to(torch.int64)


# Batches with at most this many (instance, row, feature) slots are drawn in one pass (buffers of that
# size, 12 bytes a slot: 12 MiB at most); larger ones count first, then fill (buffers of nnz only).
ONEPASS_MAX_ELEMENTS = 1 << 20


class BatchSampler:
    """Draws the batches of one config and seed: ``sample(step) -> SparseBatch``.

    ``instance_seeds`` (``[I]`` ints, optional): instance i's rows are drawn as those of instance 0 of a
    run with ``seed = instance_seeds[i]``, wherever i sits in the batch; so a sweep can pack independent
    points (each with its own seed) into one run and get exactly the data each gets alone. ``seed`` is
    then unused."""

    def __init__(self, config: ToyModelConfig, batch_size: int, seed: int = 0, dtype=torch.float32,
                 instance_seeds=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.config, self.batch_size, self.seed, self.dtype = config, batch_size, int(seed), dtype
        self.p = config.probabilities().contiguous()
        seeds = _instance_seeds(instance_seeds, config.n_instances)
        # the C++ sampler takes a uint64 numpy array (masked to 64 bits like ``seed``)
        self._seeds = None if seeds is None else seeds.numpy().astype("uint64")
        self._offsets = torch.empty(config.n_instances * batch_size + 1, dtype=torch.int64)
        self._indices = torch.empty(0, dtype=torch.int64)
        self._values = torch.empty(0, dtype=dtype)

    def sample(self, step: int, copy: bool = True) -> SparseBatch:
        """The batch of ``step``. With ``copy=False`` the tensors are views of buffers that the next call
        overwrites (what the trainer uses: no fresh memory, so no page faults, every step)."""
        c = self.config
        args = (self.seed & 0xFFFFFFFFFFFFFFFF, int(step), self.p.numpy(), self.batch_size,
                c.correlated_pairs, c.anticorrelated_pairs)
        threads = torch.get_num_threads()
        dense_size = c.n_instances * self.batch_size * c.n_features
        if dense_size <= ONEPASS_MAX_ELEMENTS:
            # Small batches: one hashing pass into rows * n buffers, packed in place (same numbers).
            if self._indices.shape[0] < dense_size:
                self._indices = torch.empty(dense_size, dtype=torch.int64)
                self._values = torch.empty(dense_size, dtype=self.dtype)
            nnz = _C.tms_sample_onepass(*args, c.kind == "abs", self._offsets.numpy(), self._indices.numpy(),
                                        self._values.numpy(), threads, instance_seeds=self._seeds)
            off, idx, val = self._offsets, self._indices[:nnz], self._values[:nnz]
            if copy:
                off, idx, val = off.clone(), idx.clone(), val.clone()
            return SparseBatch(off, idx, val, c.n_instances, self.batch_size, c.n_features)
        nnz = _C.tms_sample_count(*args, self._offsets.numpy(), threads, instance_seeds=self._seeds)
        if self._indices.shape[0] < nnz:
            cap = int(nnz * 1.25) + 1024
            self._indices = torch.empty(cap, dtype=torch.int64)
            self._values = torch.empty(cap, dtype=self.dtype)
        _C.tms_sample_fill(*args, c.kind == "abs", self._offsets.numpy(), self._indices.numpy(),
                           self._values.numpy(), threads, instance_seeds=self._seeds)
        off, idx, val = self._offsets, self._indices[:nnz], self._values[:nnz]
        if copy:
            off, idx, val = off.clone(), idx.clone(), val.clone()
        return SparseBatch(off, idx, val, c.n_instances, self.batch_size, c.n_features)


def sample_batch(config: ToyModelConfig, batch_size: int, seed: int = 0, step: int = 0,
                 dtype=torch.float32) -> SparseBatch:
    """One batch (see ``BatchSampler``)."""
    return BatchSampler(config, batch_size, seed, dtype).sample(step)
