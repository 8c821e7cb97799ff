"""Batches of toy-model inputs, generated directly in sparse form.

``BatchSampler(config, batch_size, seed).sample(step)`` draws every instance's
batch with the C++ sampler of ``supcomp.ops.tms_sample`` from a counter-based random generator keyed by (seed, step,
instance, row): the same arguments give the same numbers whatever the thread
count, and both trainers (fused and reference) see identical data. Each
(row, feature) pair gets one 32-bit counter-based hash (murmur3's finaliser of
a per-row key and the feature id, vectorised), compared with p * 2^32; the
values come from a second hash. A probability below 2^-32 rounds to 0.

Dense batches are ``[I, B, n]`` (instance-major). ARENA's and the TMS notebook's ``[B, I, n]`` is
accepted where a function says so with ``layout="BIn"`` (``SparseBatch.to_dense`` / ``from_dense``,
``DeviceBatchSampler.sample``, ``ToyModel.forward``, ``to_instance_major``); the layout is never
inferred from the sizes.

A batch is a ``SparseBatch`` in CSR form (rows = (instance, batch row)),
because densities differ by orders of magnitude across instances: a padded
``[I, B, K]`` layout would be as wide as the densest instance everywhere.
``to_padded()`` and ``to_dense()`` convert for the ops and the reference.

Values are uniform on [0, 1) (on [-1, 1) for the ``abs`` kind). See
``ToyModelConfig`` for the correlated / anticorrelated pair rules.
"""

from __future__ import annotations

import torch

from ..ops.tms_sample import LAYOUTS, CsrSampler, DenseSampler, SparseBatch, from_instance_major, to_instance_major
from .config import ToyModelConfig

__all__ = [
    "SparseBatch",
    "BatchSampler",
    "DeviceBatchSampler",
    "sample_batch",
    "LAYOUTS",
    "to_instance_major",
    "from_instance_major",
]


class BatchSampler(CsrSampler):
    """Draws the CSR batches of one config and seed on CPU: ``sample(step) -> SparseBatch``.

    Args:
        config: the models' config (probabilities, pairs, kind).
        batch_size: rows per instance.
        seed: the run's seed.
        dtype: float32 or float64.
        instance_seeds: ``[I]`` ints, optional: instance i's rows are drawn as those of instance 0 of
            a run with ``seed = instance_seeds[i]``, wherever i sits in the batch; so a sweep can pack
            independent points (each with its own seed) into one run and get exactly the data each
            gets alone. ``seed`` is then unused.

    Raises:
        ValueError: ``batch_size`` is not a positive int; ``instance_seeds`` is malformed.
        TypeError: ``dtype`` is not float32 or float64.
    """

    def __init__(
        self, config: ToyModelConfig, batch_size: int, seed: int = 0, dtype=torch.float32, instance_seeds=None
    ):
        super().__init__(
            config.probabilities(),
            batch_size,
            seed,
            config.correlated_pairs,
            config.anticorrelated_pairs,
            config.kind == "abs",
            dtype,
            instance_seeds,
        )
        self.config = config


class DeviceBatchSampler(DenseSampler):
    """``sample(step) -> x [I, B, n]``: the batches of :class:`BatchSampler`, dense, drawn on ``device``
    (``sample(step, layout="BIn")``: ``[B, I, n]``).

    On a GPU the trainer uses it, so a batch never crosses the PCIe bus and the same seed gives the
    same batches on CPU and GPU. Arguments as :class:`BatchSampler`, plus ``device`` and
    ``max_elements`` (bound on the temporaries; rows are drawn in slices of instances).
    """

    def __init__(
        self,
        config: ToyModelConfig,
        batch_size: int,
        seed: int = 0,
        dtype=torch.float32,
        device=None,
        instance_seeds=None,
        max_elements: int = 1 << 25,
    ):
        super().__init__(
            config.probabilities(),
            batch_size,
            seed,
            config.correlated_pairs,
            config.anticorrelated_pairs,
            config.kind == "abs",
            dtype,
            device,
            instance_seeds,
            max_elements,
        )
        self.config = config


def sample_batch(
    config: ToyModelConfig, batch_size: int, seed: int = 0, step: int = 0, dtype=torch.float32
) -> SparseBatch:
    """One batch (see ``BatchSampler``)."""
    return BatchSampler(config, batch_size, seed, dtype).sample(step)
