"""Fuzz the compiled core ``supcomp._C`` directly, not through the Python wrappers.

Every entry point gets structured random calls: a valid call built from random (often empty)
sizes, then a few mutations of its arguments -- wrong shapes and dtypes, non-contiguous,
read-only, unaligned and aliased arrays, empty arrays with huge dimensions, NaN / Inf, indices
and offsets out of range, hostile integers (negative, near 2**62, 2**63 - 1). Each call must
either succeed or raise ValueError / IndexError / TypeError: never crash, hang or corrupt memory.
The valid (unmutated) calls must succeed, so the checks cannot pass by rejecting everything.

Examples per entry point: ``SUPCOMP_FUZZ_EXAMPLES`` (default 40; ``tools/sanitize.py`` runs this
module under AddressSanitizer + UndefinedBehaviorSanitizer, where memory errors abort the run).
A longer profile, for example::

    SUPCOMP_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/test_fuzz_c.py
    SUPCOMP_FUZZ_EXAMPLES=500 .venv/bin/python tools/sanitize.py -- -k fuzz_c

``SUPCOMP_FUZZ_SEED`` changes the random stream (default 0: every run draws the same calls).
The regression cases at the top are the holes these checks closed, one test each.
"""

from __future__ import annotations

import faulthandler
import os

import numpy as np
import pytest

from supcomp import _C

EXAMPLES = int(os.environ.get("SUPCOMP_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("SUPCOMP_FUZZ_SEED", "0"))
ALLOWED = (ValueError, IndexError, TypeError)
I64_MAX = 2**63 - 1
HOSTILE_INTS = [-1, -2, -(2**63), I64_MAX, 2**62, 2**62 + 1, 2**31, 2**32 + 1, -(2**31), 2**48 + 7, 2**64, 2**70]
# Attributes and argument-free getters (the build's description, read by supcomp.build_info): nothing to fuzz.
NOT_ENTRY_POINTS = {"has_openmp", "cpu_variant", "compiled_variants", "supported_variants", "compiler"}
# Scalars that set how much work a call does without a buffer to match (the batch size of the steps
# that draw their own rows): a value like 2**31 is valid there and only slow, so these get values that
# must be rejected (negative, or more than the 2**48 entries one step may draw).
WORK_ARGS = {"tms_sample_step": {3}, "tms_sample_adamw_step": {3}}
WORK_HOSTILE = [-1, -(2**63), 2**49, 2**62, I64_MAX, 2**64]


# ---------------------------------------------------------------- regression cases (one per hole)


def _topk_args(I=1, B=4, Bt=2, nt=5, n=8, k=3):
    tile = np.ones((I, Bt, nt), np.float32)
    b = np.zeros((I, n), np.float32)
    return tile, b, np.zeros((I, B, k), np.float32), np.full((I, B, k), -1, np.int64)


@pytest.mark.parametrize("r0", [3, I64_MAX, I64_MAX - 1, 2**62, -1])
def test_topk_merge_row_offset_past_batch(r0):
    tile, b, vals, idx = _topk_args()
    with pytest.raises(ValueError, match="r0: row block out of range"):
        _C.topk_merge(tile, b, vals, idx, r0, 0, 1)


@pytest.mark.parametrize("f0", [4, I64_MAX, -1])
def test_topk_merge_feature_offset_past_n(f0):
    tile, b, vals, idx = _topk_args()
    with pytest.raises(ValueError, match="f0: feature block out of range"):
        _C.topk_merge(tile, b, vals, idx, 0, f0, 1)


@pytest.mark.parametrize("batch", [2**62, 2**62 + 1, I64_MAX])
def test_tms_sample_count_huge_batch(batch):
    p = np.full((2, 3), 0.5)
    off = np.zeros(7, np.int64)
    with pytest.raises(ValueError, match="batch_size"):
        _C.tms_sample_count(0, 0, p, batch, 0, 0, off, 1)


@pytest.mark.parametrize(
    "offsets",
    [[0, 2**40, 3], [0, -5, 3], [7, 7, 7], [0, 3, 2], [0, 2, 2**40]],
    ids=["huge-middle", "negative", "not-from-0", "decreasing", "past-buffer"],
)
def test_tms_sample_fill_unchecked_offsets(offsets):
    p = np.full((1, 4), 0.5)
    idx, val = np.zeros(8, np.int64), np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="offsets"):
        _C.tms_sample_fill(0, 0, p, 2, 0, 0, False, np.array(offsets, np.int64), idx, val, 1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 1.5])
def test_sampler_rejects_bad_probabilities(bad):
    p = np.full((1, 4), 0.5)
    p[0, 2] = bad
    with pytest.raises(ValueError, match=r"p: probabilities must lie in \[0, 1\]"):
        _C.tms_sample_count(0, 0, p, 2, 0, 0, np.zeros(3, np.int64), 1)
    E = np.zeros((1, 4, 2), np.float32)
    g = [np.zeros_like(E), np.zeros_like(E), np.zeros((1, 4), np.float32)]
    with pytest.raises(ValueError, match=r"p: probabilities must lie in \[0, 1\]"):
        _C.tms_sample_step(0, 0, p, 2, 0, 0, False, E, E.copy(), g[2], g[2] + 1, *g, np.zeros(1), 0, 0, 0, 1)


def test_pairs_count_overflow():
    p = np.full((1, 4), 0.5)
    with pytest.raises(ValueError, match="correlated_pairs"):
        _C.tms_sample_count(0, 0, p, 2, 2**62, 2**62, np.zeros(3, np.int64), 1)


def test_sampled_step_huge_batch_rejected():
    p = np.full((1, 2), 0.5)
    E = np.zeros((1, 2, 2), np.float32)
    b = np.zeros((1, 2), np.float32)
    args = (E, E.copy(), b, b + 1, np.zeros_like(E), np.zeros_like(E), np.zeros_like(b), np.zeros(1))
    with pytest.raises(ValueError, match="batch_size"):
        _C.tms_sample_step(0, 0, p, 2**60, 0, 0, False, *args, 0, 0, 0, 1)


def test_tms_step_zero_instances():
    E = np.zeros((0, 3, 2), np.float32)
    b = np.zeros((0, 3), np.float32)
    off = np.zeros(1, np.int64)
    idx, val, loss = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0)
    _C.tms_step(off, idx, val, E, E.copy(), b, b.copy(), E.copy(), E.copy(), b.copy(), loss, 0, 0, 0, 1)
    with pytest.raises(ValueError, match="offsets"):
        _C.tms_step(
            np.zeros(3, np.int64), idx, val, E, E.copy(), b, b.copy(), E.copy(), E.copy(), b.copy(), loss, 0, 0, 0
        )


@pytest.mark.parametrize("bad", [float("-inf"), float("nan")])
@pytest.mark.parametrize("dense", [1, 2])
def test_tms_step_nonfinite_values_stay_in_bounds(bad, dense):
    # A non-finite input makes the padding features' gradient NaN; they must not count as live
    # (the step read and wrote their D / gD rows past n_features: heap corruption).
    rng = np.random.default_rng(0)
    off, idx = np.array([0, 1, 3]), np.array([1, 0, 2])
    val = np.array([-0.4, bad, 0.05], np.float32)
    E, D = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    b, imp = rng.standard_normal((1, 3)).astype(np.float32), np.ones((1, 3), np.float32)
    gE, gD = np.full((2, 1, 3, 3), 5.0, np.float32)
    gb, loss = np.zeros((1, 3), np.float32), np.zeros(1)
    for _ in range(50):
        _C.tms_step(off, idx, val, E, D, b, imp, gE, gD, gb, loss, False, False, False, 1, dense=dense)
    assert np.isnan(loss).all() or np.isinf(loss).all()


def test_unaligned_array_rejected():
    raw = np.zeros(4 * 6 + 1, np.uint8)
    y = raw[1:].view(np.float32).reshape(2, 3)  # C-contiguous, writeable, one byte off
    assert not y.flags.aligned
    with pytest.raises(ValueError, match="y: data is not aligned"):
        _C.relu_(y)


def test_empty_arrays_with_huge_dims_need_no_memory():
    # W [1, 2**40, 0]: no elements, but 2**40 features; a scratch of n entries would exhaust memory.
    W = np.empty((1, 2**40, 0), np.float32)
    idx = np.zeros((1, 3, 2), np.int64)
    _C.sparse_encode_forward(idx, np.ones((1, 3, 2), np.float32), W, np.empty((1, 3, 0), np.float32), 1, strategy=2)
    gv = np.full((1, 3, 2), 7.0, np.float32)
    _C.sparse_encode_backward_values(np.empty((1, 3, 0), np.float32), idx, W, gv, 1, strategy=2)
    assert (gv == 0).all()
    Wd = np.empty((0, 4, 2**40), np.float32)  # no instances, d = 2**40
    _C.superpose_forward(
        np.zeros((0, 2, 1), np.int64),
        np.zeros((0, 2, 1), np.float32),
        Wd,
        np.zeros((0, 4), np.float32),
        np.zeros((0, 2, 4), np.float32),
    )


def test_uand_pair_counts_unsorted_lists():
    # 3 inputs, 2 neurons: neuron 0 fed by inputs 0, 2; its list given descending
    col_ptr, col_idx = np.array([0, 1, 1, 2]), np.array([0, 0])
    nrn_ptr, nrn_idx = np.array([0, 2, 2]), np.array([2, 0])
    counts = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match="nrn_idx: each list must be strictly ascending"):
        _C.uand_pair_counts(col_ptr, col_idx, nrn_ptr, nrn_idx, counts, 1)


def test_uand_intersect_fill_out_shape():
    gates = np.array([[0, 1]])
    col_ptr, col_idx = np.array([0, 1, 2]), np.array([0, 0])
    with pytest.raises(ValueError, match="out: expected shape"):
        _C.uand_intersect_fill(gates, col_ptr, col_idx, np.array([0, 1]), np.zeros((1, 0), np.int64), 1)


def test_uand_intersect_count_empty_col_ptr():
    with pytest.raises(ValueError, match="col_ptr: expected at least one entry"):
        _C.uand_intersect_count(
            np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 1
        )


def test_huge_thread_count_is_capped():
    y = np.array([-1.0, 2.0], np.float32)
    _C.relu_(y, 2**31 - 1)
    assert y.tolist() == [0.0, 2.0]


# ---------------------------------------------------------------- valid calls, one builder per entry point


def _fdt(rng):
    return np.float32 if rng.random() < 0.6 else np.float64


def _dims(rng, count, hi=5):
    return [int(rng.integers(0, hi + 1)) if rng.random() < 0.85 else 0 for _ in range(count)]


def _threads(rng):
    return int(rng.choice([0, 1, 2, 3]))


def _sparse(rng, I, B, k, n, dt):
    idx = rng.integers(-1, max(n, 0), size=(I, B, k)) if n > 0 else np.full((I, B, k), -1)
    return idx.astype(np.int64), rng.standard_normal((I, B, k)).astype(dt)


def b_sparse_encode(rng, name):
    dt = _fdt(rng)
    I, B, k, n, d = _dims(rng, 5)
    idx, val = _sparse(rng, I, B, k, n, dt)
    W = rng.standard_normal((I, n, d)).astype(dt)
    gh = rng.standard_normal((I, B, d)).astype(dt)
    kw = dict(strategy=int(rng.integers(0, 3)))
    if name == "sparse_encode_forward":
        return [idx, val, W, np.empty((I, B, d), dt), _threads(rng)], kw
    if name == "sparse_encode_backward_values":
        return [gh, idx, W, np.empty((I, B, k), dt), _threads(rng)], kw
    if name == "sparse_encode_backward":
        return [gh, idx, val, W, np.empty((I, B, k), dt), np.empty((I, n, d), dt), _threads(rng)], kw
    return [gh, idx, val, np.empty((I, n, d), dt), _threads(rng)], kw


def b_relu(rng, name):
    dt = _fdt(rng)
    I, B, n = _dims(rng, 3)
    y = rng.standard_normal((I, B, n)).astype(dt)
    if name == "relu_":
        return [y, _threads(rng)], {}
    gy = rng.standard_normal((I, B, n)).astype(dt)
    return [gy, y, np.empty_like(y), np.empty((I, n), dt), _threads(rng)], {}


def b_topk(rng, name):
    I, B, n = _dims(rng, 3)
    k = int(rng.integers(0, n + 1)) if rng.random() < 0.7 else int(rng.integers(33, 60))  # both merge paths
    Bt, nt = int(rng.integers(0, B + 1)), int(rng.integers(0, n + 1))
    r0, f0 = int(rng.integers(0, B - Bt + 1)), int(rng.integers(0, n - nt + 1))
    half = name == "topk_merge_half"
    dt = np.float32 if half else _fdt(rng)
    tile = rng.standard_normal((I, Bt, nt)).astype(dt)
    b = rng.standard_normal((I, n)).astype(np.float32)
    b = b.astype(np.float16).view(np.uint16) if half else b.astype(dt)
    vals, idx = np.zeros((I, B, k), dt), np.full((I, B, k), -1, np.int64)
    if half:
        return [tile, b, vals, idx, r0, f0, str(rng.choice(["bfloat16", "float16"])), _threads(rng)], {}
    return [tile, b, vals, idx, r0, f0, _threads(rng)], {}


def b_topk_screen(rng, name):
    B, n, d = _dims(rng, 3)
    if name == "bf16_split":
        x = rng.standard_normal((B, d)).astype(np.float32)
        return [x, np.empty((B, d), np.uint16), np.empty((B, 2), np.float32), _threads(rng)], {}
    k = int(rng.integers(0, n + 1))
    R = int(rng.integers(0, B + 1))
    r0 = int(rng.integers(0, B - R + 1))
    h, W = rng.standard_normal((B, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
    approx = (h[r0 : r0 + R] @ W.T).astype(np.float32).view(np.uint32) >> 16
    rt = np.stack([np.linalg.norm(h, axis=1), np.full(B, 0.01)], 1).astype(np.float32)
    ct = np.stack([np.linalg.norm(W, axis=1), np.full(n, 0.01)], 1).astype(np.float32)
    out = [np.zeros((B, k), np.float32), np.zeros((B, k), np.int64), np.zeros(B, np.uint8)]
    cap = int(rng.integers(k, n + 2))
    b = rng.standard_normal(n).astype(np.float32)
    return [approx.astype(np.uint16), h, W, b, rt, ct, *out, r0, cap, _threads(rng)], {}


def b_superpose(rng, name):
    dt = _fdt(rng)
    I, B, k, n, d = _dims(rng, 5)
    idx, val = _sparse(rng, I, B, k, n, dt)
    W = rng.standard_normal((I, n, d)).astype(dt)
    return [idx, val, W, rng.standard_normal((I, n)).astype(dt), np.empty((I, B, n), dt), _threads(rng)], {}


def _sampler_head(rng):
    I, n = _dims(rng, 2)
    batch = int(rng.integers(0, 5))
    pairs = n // 2
    corr = int(rng.integers(0, pairs + 1))
    anti = int(rng.integers(0, pairs - corr + 1))
    p = rng.random((I, n))
    seeds = None if rng.random() < 0.6 else rng.integers(0, 2**63, size=I).astype(np.uint64)
    return (
        I,
        n,
        batch,
        [int(rng.integers(0, 2**64, dtype=np.uint64)), int(rng.integers(-5, 100)), p, batch, corr, anti],
        seeds,
    )


def b_tms_sample(rng, name):
    I, n, batch, head, seeds = _sampler_head(rng)
    rows = I * batch
    off = np.zeros(rows + 1, np.int64)
    kw = dict(instance_seeds=seeds)
    if name == "tms_sample_count":
        return [*head, off, _threads(rng)], kw
    dt = _fdt(rng)
    if name == "tms_sample_onepass":
        return [
            *head,
            bool(rng.random() < 0.5),
            off,
            np.empty(rows * n, np.int64),
            np.empty(rows * n, dt),
            _threads(rng),
        ], kw
    nnz = _C.tms_sample_count(*head, off, 1, instance_seeds=seeds)
    return [*head, bool(rng.random() < 0.5), off, np.empty(nnz, np.int64), np.empty(nnz, dt), _threads(rng)], kw


def _model(rng, I, n, dt):
    m = int(rng.integers(0, 6)) if rng.random() < 0.9 else int(rng.integers(17, 40))
    E = rng.standard_normal((I, n, m)).astype(dt)
    tied = rng.random() < 0.3
    D = E if tied else rng.standard_normal((I, n, m)).astype(dt)
    gE = np.empty((I, n, m), dt)
    gD = gE if tied else np.empty((I, n, m), dt)
    b, imp = rng.standard_normal((I, n)).astype(dt), rng.random((I, n)).astype(dt)
    return E, D, b, imp, gE, gD, tied


def _flags(rng):
    return [bool(x) for x in rng.random(3) < 0.5]


def b_tms_step(rng, name):
    dt = _fdt(rng)
    if name == "tms_step":
        I, n = _dims(rng, 2)
        I = max(I, 1) if rng.random() < 0.9 else I
        B = int(rng.integers(0, 4))
        counts = rng.integers(0, n + 1, size=I * B) if n > 0 else np.zeros(I * B, np.int64)
        off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = rng.integers(0, max(n, 1), size=int(off[-1])).astype(np.int64)
        val = rng.standard_normal(int(off[-1])).astype(dt)
        E, D, b, imp, gE, gD, _ = _model(rng, I, n, dt)
        gb, loss = np.empty((I, n), dt), np.empty(I)
        return [off, idx, val, E, D, b, imp, gE, gD, gb, loss, *_flags(rng), _threads(rng)], dict(
            dense=int(rng.integers(0, 3))
        )
    I, n, batch, head, seeds = _sampler_head(rng)
    E, D, b, imp, gE, gD, tied = _model(rng, I, n, dt)
    kw = dict(dense=int(rng.integers(0, 3)), lanes=int(rng.integers(0, 3)))
    sv = bool(rng.random() < 0.5)
    if name == "tms_sample_step":
        gb, loss = np.empty((I, n), dt), np.empty(I)
        return [*head, sv, E, D, b, imp, gE, gD, gb, loss, *_flags(rng), _threads(rng), seeds], kw
    mE, vE = np.zeros_like(E), np.zeros_like(E)
    mD, vD = (mE, vE) if tied else (np.zeros_like(E), np.zeros_like(E))
    state = [mE, vE, mD, vD, np.zeros_like(b), np.zeros_like(b)]
    adam = [1e-3, 0.9, 0.999, 1e-8, 0.01, int(rng.integers(1, 5))]
    return [*head, sv, E, D, b, imp, state, np.empty(I), *_flags(rng), *adam, _threads(rng), seeds], kw


def _csr_lists(rng, rows, cols, p=0.4):
    """A random boolean matrix [rows, cols] as CSR (ptr, idx), each row's columns ascending, and its transpose."""
    C = rng.random((rows, cols)) < p
    ptr = np.concatenate([[0], np.cumsum(C.sum(1))]).astype(np.int64)
    idx = np.nonzero(C)[1].astype(np.int64)
    tptr = np.concatenate([[0], np.cumsum(C.sum(0))]).astype(np.int64)
    tidx = np.nonzero(C.T)[1].astype(np.int64)
    return ptr, idx, tptr, tidx


def b_uand(rng, name):
    dt = _fdt(rng)
    m, d = _dims(rng, 2, hi=7)
    col_ptr, col_idx, nrn_ptr, nrn_idx = _csr_lists(rng, m, d)  # by input (S_i), by neuron (L_n)
    B = int(rng.integers(0, 4))
    if name == "uand_forward":
        s = int(rng.integers(0, 4))
        idx = (rng.integers(-1, m, size=(B, s)) if m > 0 else np.full((B, s), -1)).astype(np.int64)
        val = rng.standard_normal((B, s)).astype(dt)
        return [idx, val, col_ptr, col_idx, float(rng.standard_normal()), np.empty((B, d), dt), _threads(rng)], {}
    if name == "uand_pair_counts":
        return [col_ptr, col_idx, nrn_ptr, nrn_idx, np.empty(m * (m - 1) // 2, np.int32), _threads(rng)], {}
    if name in ("uand_intersect_count", "uand_intersect_fill"):
        G, k = int(rng.integers(0, 5)), int(rng.integers(0, 4))
        gates = (rng.integers(0, m, size=(G, k)) if m > 0 else np.zeros((0, k))).astype(np.int64)
        G = gates.shape[0]
        counts = np.empty(G, np.int64)
        if name == "uand_intersect_count":
            return [gates, col_ptr, col_idx, counts, _threads(rng)], {}
        _C.uand_intersect_count(gates, col_ptr, col_idx, counts, 1)
        row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return [gates, col_ptr, col_idx, row_ptr, np.empty(int(row_ptr[-1]), np.int64), _threads(rng)], {}
    if name == "uand_readout":
        G = int(rng.integers(0, 4))
        sizes = rng.integers(0, d + 1, size=G) if d > 0 else np.zeros(G, np.int64)
        row_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        nidx = rng.integers(0, max(d, 1), size=int(row_ptr[-1])).astype(np.int64)
        aT = rng.standard_normal((d, B)).astype(dt)
        return [aT, row_ptr, nidx, np.empty((G, B), dt), _threads(rng)], {}
    # uand_all_pairs
    counts = np.empty(m * (m - 1) // 2, np.int32)
    if m > 0:
        _C.uand_pair_counts(col_ptr, col_idx, nrn_ptr, nrn_idx, counts, 1)
    i0 = int(rng.integers(0, m + 1))
    i1 = int(rng.integers(i0, m + 1))

    def off(i):
        return i * (2 * m - i - 1) // 2

    a = np.maximum(rng.standard_normal((B, d)), 0).astype(dt)
    return [a, nrn_ptr, nrn_idx, counts, m, i0, i1, np.empty((B, off(i1) - off(i0)), dt), _threads(rng)], {}


def b_max_threads(rng, name):
    return [], {}


BUILDERS = {
    "sparse_encode_forward": b_sparse_encode,
    "sparse_encode_backward_values": b_sparse_encode,
    "sparse_encode_backward": b_sparse_encode,
    "sparse_encode_backward_weight": b_sparse_encode,
    "relu_": b_relu,
    "relu_grad": b_relu,
    "topk_merge": b_topk,
    "topk_merge_half": b_topk,
    "topk_screen": b_topk_screen,
    "bf16_split": b_topk_screen,
    "superpose_forward": b_superpose,
    "tms_sample_count": b_tms_sample,
    "tms_sample_fill": b_tms_sample,
    "tms_sample_onepass": b_tms_sample,
    "tms_step": b_tms_step,
    "tms_sample_step": b_tms_step,
    "tms_sample_adamw_step": b_tms_step,
    "uand_forward": b_uand,
    "uand_readout": b_uand,
    "uand_all_pairs": b_uand,
    "uand_intersect_count": b_uand,
    "uand_intersect_fill": b_uand,
    "uand_pair_counts": b_uand,
    "max_threads": b_max_threads,
}


# ---------------------------------------------------------------- mutations

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint16, np.float16, np.bool_, np.uint64]


def _unaligned(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(np.uint8)[: a.nbytes].view(a.dtype) if a.nbytes else raw[1:1].view(np.uint8)
    try:
        out = out.reshape(a.shape)
    except ValueError:
        return a
    out[...] = a
    return out


def _empty_huge(rng, a):
    """An array with no elements but huge other dimensions (numpy allows it: no memory behind them)."""
    nd = max(a.ndim, 1)
    shape = [int(rng.choice([2**20, 2**30, 2**40, 3])) for _ in range(nd)]
    shape[int(rng.integers(0, nd))] = 0
    while int(np.prod([x for x in shape if x], dtype=object)) * a.itemsize >= 2**62:  # numpy's own limit
        shape[int(np.argmax(shape))] //= 2**10
    return np.empty(shape, a.dtype)


def _poison(rng, a):
    a = a.copy()
    if a.size == 0:
        return a
    flat = a.reshape(-1)
    pos = rng.integers(0, a.size, size=int(rng.integers(1, 4)))
    if a.dtype.kind == "f":
        flat[pos] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30])
    elif a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        cands = [info.min, info.max, -1, -2, 0, 1, 2**31, 7, 2**40]
        flat[pos] = np.array([c for c in cands if info.min <= c <= info.max])[
            rng.integers(0, 1 + sum(info.min <= c <= info.max for c in cands) - 1, size=pos.size)
        ].astype(a.dtype)
    return a


def mutate_array(rng, a, others):
    kind = int(rng.integers(0, 9))
    if kind == 0:
        return a.astype(DTYPES[int(rng.integers(0, len(DTYPES)))])
    if kind == 1:  # another shape
        shape = list(a.shape)
        if shape and rng.random() < 0.7:
            j = int(rng.integers(0, len(shape)))
            shape[j] = max(0, shape[j] + int(rng.choice([-1, 1, 2, -shape[j]])))
        elif shape and rng.random() < 0.5:
            shape = shape[:-1]
        else:
            shape = shape + [int(rng.integers(1, 3))]
        if int(np.prod(shape, dtype=object)) > 2**20:  # a dimension of an empty array, now filled: too big
            return a
        return np.zeros(shape, a.dtype)
    if kind == 2 and a.ndim >= 1 and a.size > 1:  # non-contiguous
        return np.asfortranarray(a) if a.ndim > 1 and rng.random() < 0.5 else np.repeat(a, 2, axis=0)[::2]
    if kind == 3:
        a = a.copy()
        a.setflags(write=False)
        return a
    if kind == 4:
        return _unaligned(a)
    if kind == 5:
        return _empty_huge(rng, a)
    if kind == 6 and others:  # aliasing: another argument in its place
        return others[int(rng.integers(0, len(others)))]
    if kind == 7:
        return np.zeros((), a.dtype)
    return _poison(rng, a)


def mutate_scalar(rng, x):
    if isinstance(x, bool):
        return int(rng.choice([2, -1])) if rng.random() < 0.5 else None
    if isinstance(x, int):
        return int(rng.choice(HOSTILE_INTS)) if rng.random() < 0.8 else x + int(rng.integers(-3, 4))
    if isinstance(x, float):
        return float(rng.choice([np.nan, np.inf, -np.inf, -1.0, 0.0, 2.0]))
    if isinstance(x, str):
        return "bogus"
    if x is None:
        return np.zeros(3, np.uint64)
    return None


def mutate(rng, args, kwargs, work=()):
    args = list(args)
    kwargs = dict(kwargs)
    slots = [("a", i) for i in range(len(args))] + [("k", key) for key in kwargs]
    if not slots:
        return args, kwargs
    for _ in range(int(rng.integers(1, 4))):
        where, key = slots[int(rng.integers(0, len(slots)))]
        x = args[key] if where == "a" else kwargs[key]
        arrays = [v for v in args if isinstance(v, np.ndarray)]
        if isinstance(x, np.ndarray):
            y = mutate_array(rng, x, arrays)
        elif isinstance(x, list):  # the AdamW state
            y = list(x)
            j = int(rng.integers(0, len(y) + 1))
            if j == len(y):
                y = y[:-1]
            else:
                y[j] = mutate_array(rng, y[j], arrays)
        elif where == "a" and key in work:
            y = int(rng.choice(WORK_HOSTILE))
        else:
            y = mutate_scalar(rng, x)
        if where == "a":
            args[key] = y
        else:
            kwargs[key] = y
    return args, kwargs


def _entry_points():
    return sorted(name for name in dir(_C) if not name.startswith("_") and name not in NOT_ENTRY_POINTS)


def test_every_entry_point_has_a_builder():
    assert set(_entry_points()) == set(BUILDERS), "add a builder for every supcomp._C entry point"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_fuzz_entry_point(name):
    fn = getattr(_C, name)
    rng = np.random.default_rng([SEED, sorted(BUILDERS).index(name)])
    ok = rejected = 0
    faulthandler.dump_traceback_later(300, exit=True)  # a hang fails the run instead of stalling it
    try:
        for example in range(EXAMPLES):
            args, kwargs = BUILDERS[name](rng, name)
            fn(*args, **kwargs)  # the valid call must succeed
            ok += 1
            for _ in range(3):
                margs, mkwargs = mutate(rng, args, kwargs, WORK_ARGS.get(name, ()))
                try:
                    fn(*margs, **mkwargs)
                    ok += 1
                except ALLOWED:
                    rejected += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert ok >= EXAMPLES and (name == "max_threads" or rejected > 0)
