"""The toy-model batch sampler in plain torch integer arithmetic, on any device.

Draws exactly the numbers of the C++ sampler (``csrc/tms.cpp``: ``tms_sample_count`` /
``tms_sample_fill``, used by ``supcomp.tms.data.BatchSampler``), bit for bit, but as a dense
batch ``x [I, B, n]`` on the device the model lives on. On a GPU the trainer uses it, so a
batch never crosses the PCIe bus and the same seed gives the same batches on CPU and GPU.

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
logical by masking. The test ``tests/test_tms.py::test_device_sampler_matches_cpp`` checks
the agreement with the C++ sampler bit for bit.
"""
from __future__ import annotations

import torch

from .config import ToyModelConfig

_M32 = 0xFFFFFFFF


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


class DeviceBatchSampler:
    """``sample(step) -> x [I, B, n]`` (dense, on ``device``): the batches of ``BatchSampler``.

    ``instance_seeds``: None, or ``[I]`` integers (uint64 range) keying each instance on its own.
    ``max_elements`` bounds the int64 temporaries (rows are drawn in slices of instances).
    """

    def __init__(self, config: ToyModelConfig, batch_size: int, seed: int = 0, dtype=torch.float32,
                 device=None, instance_seeds=None, max_elements: int = 1 << 25):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.config, self.batch_size, self.dtype = config, batch_size, dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        I, n = config.n_instances, config.n_features
        p = config.probabilities().to(torch.float64).reshape(I, n)
        q = p * 4294967296.0
        thr = torch.where(q >= 4294967296.0, torch.full_like(q, float(_M32)),
                          torch.where(q < 1.0, torch.zeros_like(q), torch.floor(q - 1.0)))
        self.p = p.to(self.device)
        self.thr = thr.to(torch.int64).to(self.device)  # [I, n]
        self.seed = _i64(int(seed) & 0xFFFFFFFFFFFFFFFF)
        if instance_seeds is not None:
            ks = [_i64(int(k) & 0xFFFFFFFFFFFFFFFF) for k in torch.as_tensor(instance_seeds).reshape(-1).tolist()]
            if len(ks) != I:
                raise ValueError(f"instance_seeds: expected {I} seeds, got {len(ks)}")
            self.keys = torch.tensor(ks, dtype=torch.int64, device=self.device)
        else:
            self.keys = None
        self.feat = torch.arange(n, dtype=torch.int64, device=self.device) * _GOLDEN32  # [n]
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

    def sample(self, step: int) -> torch.Tensor:
        c = self.config
        I, B, n = c.n_instances, self.batch_size, c.n_features
        x = torch.empty((I, B, n), dtype=self.dtype, device=self.device)
        corr, anti = c.correlated_pairs, c.anticorrelated_pairs
        for i0 in range(0, I, self.rows_per_slice):
            i1 = min(I, i0 + self.rows_per_slice)
            s = self._row_state(step, i0, i1)
            s, k = _splitmix(s)
            kon = (k & _M32)[..., None]
            kval = _shr(k, 32)[..., None]
            on = _mix32((kon + self.feat) & _M32) <= self.thr[i0:i1, None, :]  # [i, B, n]
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
            u = (_mix32((kval + self.feat) & _M32) >> 8).to(torch.float32) * (1.0 / 16777216.0)
            if c.kind == "abs":
                u = 2.0 * u - 1.0
            x[i0:i1] = torch.where(on, u, torch.zeros((), dtype=u.dtype, device=u.device)).to(self.dtype)
            del on, u
        return x
