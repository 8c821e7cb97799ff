"""Which large neurons host each small circuit: the ``"overlap1"`` and ``"random"`` assignments.

An assignment is an int64 tensor ``[T, S]``: circuit t's small neurons live on
the S positions ``A[t]`` (distinct, in ``[0, M)``) of each neuron block of the
large network (``M = width // (d + 2)`` positions per block, see ``compress``).

``"overlap1"`` (Linsefors & Bushnaq 2025): each circuit gets an arithmetic
progression ``start, start + step, ..., start + (S-1) step`` that fits in
``[0, M)``. Steps have no prime factor below S, so two progressions with
different steps meet at most once (``a k1 = b k2`` with ``k1, k2 < S`` forces
``a = b``); progressions with the same step are laid out disjointly (start
shifted by ``S step`` along one residue class, then the next residue class).
Hence **any two circuits share at most one position**. The number of
progressions is finite: :func:`max_circuits` gives it, and ``T`` beyond it
raises. (The reference code also uses steps ``step * S**n`` when S is not
prime; we leave that extension out, so our capacity can be a little smaller.)

``"random"``: S distinct positions drawn uniformly per circuit (two circuits
then share ``Hypergeometric(M, S, S)`` positions, mean ``S^2 / M``).
"""

from __future__ import annotations

import torch

ASSIGNMENTS = ("overlap1", "random")


def _steps(M: int, S: int):
    """Valid steps in increasing order: no prime factor < S and ``step (S - 1) < M``."""
    step = 1
    while step * (S - 1) < M or (S == 1 and step == 1):
        if all(step % k for k in range(2, S)):  # coprime to every k < S <=> no prime factor < S
            yield step
        if S == 1:
            return
        step += 1


def _progressions(M: int, S: int):
    """Yield the overlap-1 progressions' start/step pairs, in order."""
    for step in _steps(M, S):
        for shift in range(step):
            start = shift
            while start + step * (S - 1) < M:
                yield start, step
                start += step * S


def max_circuits(M: int, S: int) -> int:
    """How many circuits the overlap-1 assignment fits in ``M`` positions with ``S`` per circuit."""
    if S > M:
        return 0
    return sum(1 for _ in _progressions(M, S))


def overlap1(T: int, M: int, S: int) -> torch.Tensor:
    """``[T, S]`` positions: arithmetic progressions, any two rows share at most one entry."""
    out = []
    for start, step in _progressions(M, S):
        out.append([start + k * step for k in range(S)])
        if len(out) == T:
            return torch.tensor(out, dtype=torch.int64)
    raise ValueError(
        f"width / neurons_per_unit: the overlap-1 assignment fits at most {len(out)} circuits with "
        f"{M} positions per block and S={S}; got T={T}. Use a larger width, a smaller S or assignment='random'."
    )


def random_assignment(T: int, M: int, S: int, generator: torch.Generator) -> torch.Tensor:
    """``[T, S]`` positions: S distinct positions drawn uniformly for each circuit."""
    return torch.rand(T, M, generator=generator).argsort(-1)[:, :S].contiguous()


def overlaps(A: torch.Tensor, M: int) -> torch.Tensor:
    """``[T, T]`` float64 matrix of shared positions ``|A[t] & A[u]|`` (diagonal = S)."""
    T = A.shape[0]
    onehot = torch.zeros(T, M, dtype=torch.float64)
    onehot.scatter_(1, A, 1.0)
    return onehot @ onehot.T
