"""The bad-input table: for each public function, what invalid input gets.

One row per (function, invalid input): ``Bad(function, what, call, exception, fragment)``.
``tests/test_bad_input.py`` checks every row on every backend (the exception type, the message
fragment, and that the message is the same whichever backend would have run) and that the block
of docs/guarantees.md between the ``bad-input-table`` markers equals ``render()`` -- regenerate it with

    .venv/bin/python tools/update_bad_input_table.py

Adding a module (e.g. ``supcomp.uand``): append rows to ``ROWS`` (or build them in a
function and extend ``ROWS``); the docs block and its check follow automatically.

The file is long because it is one table: a row per (function, invalid input), nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

import supcomp.metrics as M
from supcomp.nn import ReLUReadout, SparseEncoder, TiedSuperposition
from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend
from supcomp.sparse import dense_to_padded, padded_to_dense, random_sparse
from supcomp.tms import ToyModelConfig, train
from supcomp.tms.data import BatchSampler
from supcomp.tms.model import ToyModel
from supcomp.tms.train import FusedAdamW, fused_sampled_adamw_step, fused_sampled_loss_and_grad


@dataclasses.dataclass
class Bad:
    function: str  # public name, as a user calls it
    what: str  # the invalid input, in words
    call: Callable  # () -> raises
    exc: type  # expected exception type
    fragment: str  # text the message must contain (names the argument)
    ops: bool = False  # a supcomp op: checked on every backend (reference, cpp, triton)


def forced_cpp(call: Callable) -> Callable:
    """``call`` run under ``use_backend("cpp")``."""

    def run():
        with use_backend("cpp"):
            return call()

    return run


n, d = 10, 4
W = torch.randn(n, d)
b = torch.zeros(n)
idx = torch.tensor([[0, 3, -1]])
val = torch.ones(1, 3)
h = torch.randn(2, d)
nan = float("nan")
cfg = dict(n_features=5, n_hidden=2)

ROWS: list[Bad] = [
    # ---- sparse_encode
    Bad(
        "sparse_encode",
        "index >= n_features",
        lambda: sparse_encode(torch.tensor([[0, 10]]), torch.ones(1, 2), W),
        IndexError,
        "indices: index 10",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "negative index other than -1",
        lambda: sparse_encode(torch.tensor([[0, -2]]), torch.ones(1, 2), W),
        IndexError,
        "indices: index -2",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "float indices",
        lambda: sparse_encode(idx.float(), val, W),
        TypeError,
        "indices: expected int64 or int32",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "int16 indices",
        lambda: sparse_encode(idx.short(), val, W),
        TypeError,
        "indices: expected int64 or int32",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "values not a tensor",
        lambda: sparse_encode(idx, [[1.0, 1.0, 1.0]], W),
        TypeError,
        "values: expected a torch.Tensor",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "values dtype != W dtype",
        lambda: sparse_encode(idx, val.double(), W),
        TypeError,
        "values: dtype torch.float64 does not match W",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "values shape != indices shape",
        lambda: sparse_encode(idx, torch.ones(1, 2), W),
        ValueError,
        "values: shape [1, 2] does not match indices",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "W 1-d",
        lambda: sparse_encode(idx, val, torch.randn(n)),
        ValueError,
        "W: expected [n_features, d]",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "W integer",
        lambda: sparse_encode(idx, val, W.to(torch.int32)),
        TypeError,
        "W: expected a floating dtype",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "instance axis size mismatch",
        lambda: sparse_encode(idx, val, torch.randn(2, n, d)),
        ValueError,
        "indices: leading (instance) size 1",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "tensors on different devices",
        lambda: sparse_encode(idx, val.to("meta"), W),
        ValueError,
        "values: on device meta",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "0-d indices",
        lambda: sparse_encode(torch.tensor(1), torch.tensor(1.0), W),
        ValueError,
        "indices: expected shape [..., k]",
        ops=True,
    ),
    # ---- relu_readout
    Bad(
        "relu_readout",
        "h last dim != d",
        lambda: relu_readout(torch.randn(2, d + 1), W, b),
        ValueError,
        "h: last dimension 5 does not match W's d = 4",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "h 0-d",
        lambda: relu_readout(torch.tensor(1.0), W, b),
        ValueError,
        "h: expected shape [..., d]",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "b wrong shape",
        lambda: relu_readout(h, W, torch.zeros(n + 1)),
        ValueError,
        "b: expected shape [10]",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "b dtype != W dtype",
        lambda: relu_readout(h, W, b.double()),
        TypeError,
        "b: dtype torch.float64 does not match W",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "h dtype != W dtype",
        lambda: relu_readout(h.double(), W, b),
        TypeError,
        "h: dtype torch.float64 does not match W",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "W 4-d",
        lambda: relu_readout(h, torch.randn(1, 1, n, d), b),
        ValueError,
        "W: expected [n_features, d] or [n_instances, n_features, d]",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "h on another device",
        lambda: relu_readout(h.to("meta"), W, b),
        ValueError,
        "h: on device meta",
        ops=True,
    ),
    # ---- relu_readout_topk
    Bad(
        "relu_readout_topk",
        "k > n_features",
        lambda: relu_readout_topk(h, W, b, n + 1),
        ValueError,
        "k: expected 0 <= k <= n_features = 10, got 11",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k < 0",
        lambda: relu_readout_topk(h, W, b, -1),
        ValueError,
        "k: expected 0 <= k <= n_features",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a float",
        lambda: relu_readout_topk(h, W, b, 2.0),
        TypeError,
        "k: expected an int",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a bool",
        lambda: relu_readout_topk(h, W, b, True),
        TypeError,
        "k: expected an int",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a bool tensor",
        lambda: relu_readout_topk(h, W, b, torch.tensor(True)),
        TypeError,
        "k: expected an int or a 0-d integer tensor",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a 1-d tensor",
        lambda: relu_readout_topk(h, W, b, torch.tensor([2])),
        TypeError,
        "k: expected an int or a 0-d integer tensor",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a numpy float",
        lambda: relu_readout_topk(h, W, b, np.float64(2.0)),
        TypeError,
        "k: expected an int",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "k a numpy bool",
        lambda: relu_readout_topk(h, W, b, np.bool_(True)),
        TypeError,
        "k: expected an int",
        ops=True,
    ),
    Bad(
        "relu_readout_topk",
        "h bfloat16, W float32",
        lambda: relu_readout_topk(h.bfloat16(), W, b, 2),
        TypeError,
        "h: dtype torch.bfloat16 does not match W dtype torch.float32",
        ops=True,
    ),
    # ---- superpose
    Bad(
        "superpose",
        "index >= n_features",
        lambda: superpose(torch.tensor([[11]]), torch.ones(1, 1), W, b),
        IndexError,
        "indices: index 11",
        ops=True,
    ),
    Bad(
        "superpose",
        "b wrong shape",
        lambda: superpose(idx, val, W, torch.zeros(2, n)),
        ValueError,
        "b: expected shape [10]",
        ops=True,
    ),
    Bad(
        "superpose",
        "values dtype != W dtype",
        lambda: superpose(idx, val.half(), W, b),
        TypeError,
        "values: dtype torch.float16 does not match W",
        ops=True,
    ),
    Bad(
        "superpose",
        "float16 under use_backend('cpp')",
        forced_cpp(lambda: superpose(idx, val.half(), W.half(), b.half())),
        TypeError,
        "superpose: use_backend('cpp') forces the C++ kernels",
    ),
    Bad(
        "superpose",
        "complex (conjugate) values",
        lambda: superpose(idx, val.to(torch.complex64).conj(), W, b),
        TypeError,
        "values: expected a floating dtype",
        ops=True,
    ),
    Bad(
        "sparse_encode",
        "float16 under use_backend('cpp')",
        forced_cpp(lambda: sparse_encode(idx, val.half(), W.half())),
        TypeError,
        "sparse_encode: use_backend('cpp') forces the C++ kernels",
    ),
    Bad(
        "sparse_encode",
        "complex (conjugate) W",
        lambda: sparse_encode(idx, val, W.to(torch.complex64).conj()),
        TypeError,
        "W: expected a floating dtype",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "float16 under use_backend('cpp')",
        forced_cpp(lambda: relu_readout(h.half(), W.half(), b.half())),
        TypeError,
        "relu_readout: use_backend('cpp') forces the C++ kernels",
    ),
    Bad(
        "relu_readout",
        "h bfloat16, W float32",
        lambda: relu_readout(h.bfloat16(), W, b),
        TypeError,
        "h: dtype torch.bfloat16 does not match W dtype torch.float32",
        ops=True,
    ),
    Bad(
        "relu_readout",
        "complex (conjugate) h",
        lambda: relu_readout(h.to(torch.complex64).conj(), W, b),
        TypeError,
        "h: expected a floating dtype",
        ops=True,
    ),
    # ---- supcomp.sparse
    Bad(
        "dense_to_padded",
        "a row with more than k nonzeros",
        lambda: dense_to_padded(torch.ones(2, 5), k=3),
        ValueError,
        "k: a row of x has 5 nonzero entries",
    ),
    Bad(
        "dense_to_padded",
        "negative k",
        lambda: dense_to_padded(torch.ones(2, 5), k=-1),
        ValueError,
        "k: expected a non-negative int",
    ),
    Bad(
        "dense_to_padded",
        "integer x",
        lambda: dense_to_padded(torch.ones(2, 5, dtype=torch.int64)),
        TypeError,
        "x: expected a floating dtype",
    ),
    Bad(
        "padded_to_dense",
        "index >= n_features",
        lambda: padded_to_dense(torch.tensor([[7]]), torch.ones(1, 1), 5),
        IndexError,
        "indices: index 7",
    ),
    Bad(
        "padded_to_dense",
        "negative n_features",
        lambda: padded_to_dense(idx, val, -1),
        ValueError,
        "n_features: expected a non-negative int",
    ),
    Bad(
        "random_sparse",
        "probability outside [0, 1]",
        lambda: random_sparse(4, 5, 1.5),
        ValueError,
        "p: expected probabilities in [0, 1]",
    ),
    # ---- supcomp.nn
    Bad(
        "SparseEncoder",
        "negative n_features",
        lambda: SparseEncoder(-1, 4),
        ValueError,
        "n_features: expected a non-negative int",
    ),
    Bad(
        "ReLUReadout",
        "k > n_features",
        lambda: ReLUReadout(5, 4, k=6),
        ValueError,
        "k: expected None or an int with 0 <= k <= n_features = 5",
    ),
    Bad(
        "ReLUReadout",
        "k a float",
        lambda: ReLUReadout(5, 4, k=2.0),
        TypeError,
        "k: expected an int",
    ),
    Bad(
        "ReLUReadout",
        "k a bool",
        lambda: ReLUReadout(5, 4, k=True),
        TypeError,
        "k: expected an int",
    ),
    Bad(
        "ReLUReadout",
        "bfloat16 input into a float32 module",
        lambda: ReLUReadout(5, 4)(torch.ones(2, 4, dtype=torch.bfloat16)),
        TypeError,
        "h: dtype torch.bfloat16 does not match W dtype torch.float32",
    ),
    Bad(
        "SparseEncoder",
        "float64 values into a float32 module",
        lambda: SparseEncoder(5, 4)(torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.float64)),
        TypeError,
        "values: dtype torch.float64 does not match W dtype torch.float32",
    ),
    Bad(
        "TiedSuperposition",
        "d not an int",
        lambda: TiedSuperposition(5, 2.5),
        ValueError,
        "d: expected a non-negative int",
    ),
    # ---- supcomp.metrics
    Bad(
        "metrics.feature_dimensionality",
        "W 1-d",
        lambda: M.feature_dimensionality(torch.ones(3)),
        ValueError,
        "W: expected shape [n_features, m]",
    ),
    Bad(
        "metrics.feature_dimensionality",
        "NaN eps",
        lambda: M.feature_dimensionality(torch.ones(3, 2), eps=nan),
        ValueError,
        "eps: expected a finite number >= 0",
    ),
    Bad(
        "metrics.interference",
        "W integer",
        lambda: M.interference(torch.ones(3, 2, dtype=torch.int64)),
        TypeError,
        "W: expected a floating dtype",
    ),
    Bad("metrics.geometry", "negative tol", lambda: M.geometry(torch.ones(3, 2), tol=-1.0), ValueError, "tol:"),
    # ---- supcomp.tms
    Bad(
        "ToyModelConfig",
        "n_features = 0",
        lambda: ToyModelConfig(0, 2),
        ValueError,
        "n_features: expected a positive int",
    ),
    Bad(
        "ToyModelConfig",
        "NaN feature_probability",
        lambda: ToyModelConfig(**cfg, feature_probability=nan),
        ValueError,
        "feature_probability: every probability must lie in (0, 1]",
    ),
    Bad(
        "ToyModelConfig",
        "negative importance",
        lambda: ToyModelConfig(**cfg, importance=-1.0),
        ValueError,
        "importance: every importance must be finite and >= 0",
    ),
    Bad(
        "ToyModelConfig",
        "unknown kind",
        lambda: ToyModelConfig(**cfg, kind="tanh"),
        ValueError,
        "kind: expected one of",
    ),
    Bad(
        "BatchSampler",
        "batch_size = 0",
        lambda: BatchSampler(ToyModelConfig(**cfg), 0),
        ValueError,
        "batch_size: expected a positive int",
    ),
    Bad(
        "tms.train",
        "negative steps",
        lambda: train(ToyModelConfig(**cfg), steps=-1, progress=False),
        ValueError,
        "steps: expected a non-negative int",
    ),
    Bad(
        "tms.fused_sampled_loss_and_grad",
        "sampler of another dtype",
        lambda: fused_sampled_loss_and_grad(
            ToyModel(ToyModelConfig(**cfg)), BatchSampler(ToyModelConfig(**cfg), 4, dtype=torch.float64), 0
        ),
        TypeError,
        "sampler: dtype torch.float64 does not match the model's torch.float32",
    ),
    Bad(
        "tms.train",
        "NaN lr",
        lambda: train(ToyModelConfig(**cfg), steps=1, lr=nan, progress=False),
        ValueError,
        "lr: expected a positive learning rate",
    ),
    Bad(
        "tms.FusedAdamW",
        "beta2 = 1",
        lambda: FusedAdamW(ToyModel(ToyModelConfig(**cfg)), betas=(0.9, 1.0)),
        ValueError,
        "betas: expected two values in [0, 1)",
    ),
    Bad(
        "tms.fused_sampled_adamw_step",
        "optimizer made for another model",
        lambda: fused_sampled_adamw_step(
            ToyModel(ToyModelConfig(**cfg)),
            BatchSampler(ToyModelConfig(**cfg), 4),
            0,
            FusedAdamW(ToyModel(ToyModelConfig(**{**cfg, "n_hidden": cfg["n_hidden"] + 1}))),
        ),
        ValueError,
        "opt: a FusedAdamW made for another model",
    ),
]


# ---- the constructions and sweeps (supcomp.uand, supcomp.circuits, supcomp.cc, supcomp.sweep)
def _construction_rows() -> list[Bad]:
    from supcomp.cc import CCConfig
    from supcomp.cc import train as cc_train
    from supcomp.circuits import CircuitSet, compress, measure_interference
    from supcomp.sweep import Grid, run_sweep
    from supcomp.uand import UAnd, theory

    u = UAnd(20, 50, 0.3, seed=0)
    a = u.forward(torch.tensor([[0, 1]]))
    cs = CircuitSet.rotations(6, 2, seed=0)
    net = compress(cs, 4 * 30, 3)
    small_cc = dict(n_features=5, d_mlp=2, d_embed=10)
    return [
        Bad(
            "UAnd",
            "p outside (0, 1]",
            lambda: UAnd(20, 50, 1.5),
            ValueError,
            "p: expected a connection probability in (0, 1]",
        ),
        Bad("UAnd", "fan_in < 2", lambda: UAnd(20, 50, 0.3, fan_in=1), ValueError, "fan_in: expected an int >= 2"),
        Bad("UAnd", "n_inputs < 1", lambda: UAnd(0, 50, 0.3), ValueError, "n_inputs: expected an int >= 1"),
        Bad(
            "UAnd.forward",
            "input index >= n_inputs",
            lambda: u.forward(torch.tensor([[0, 20]])),
            IndexError,
            "indices: index 20",
        ),
        Bad(
            "UAnd.read",
            "gate input index out of range",
            lambda: u.read(a, torch.tensor([[0, 25]])),
            IndexError,
            "gates: input index 25",
        ),
        Bad(
            "UAnd.read",
            "gates of the wrong width",
            lambda: u.read(a, torch.tensor([[0, 1, 2]])),
            ValueError,
            "gates: expected shape [G, fan_in=2]",
        ),
        Bad("theory", "s < 0", lambda: theory(0.1, -1), ValueError, "s: expected a non-negative int"),
        Bad("CircuitSet.random", "T < 1", lambda: CircuitSet.random(0, 2, 3), ValueError, "T: expected a positive int"),
        Bad(
            "compress",
            "unknown assignment",
            lambda: compress(cs, 120, 3, assignment="bogus"),
            ValueError,
            "assignment: expected one of",
        ),
        Bad(
            "compress",
            "more circuits than overlap-1 fits",
            lambda: compress(CircuitSet.rotations(400, 2), 120, 5),
            ValueError,
            "the overlap-1 assignment fits at most",
        ),
        Bad(
            "SuperposedNetwork.forward",
            "circuit id >= T",
            lambda: net(torch.zeros(1, 1, 2), torch.tensor([[6]])),
            IndexError,
            "active: circuit id 6 is out of range",
        ),
        Bad(
            "measure_interference",
            "z > T",
            lambda: measure_interference(net, cs, 7, 8),
            ValueError,
            "z: expected an int in [1, T=6]",
        ),
        Bad("CCConfig", "unknown model", lambda: CCConfig(model="bogus"), ValueError, "model: expected one of"),
        Bad(
            "CCConfig",
            "feature_probability outside (0, 1]",
            lambda: CCConfig(feature_probability=1.5),
            ValueError,
            "feature_probability: every probability must lie in (0, 1]",
        ),
        Bad(
            "CCConfig",
            "residual model with another mixing",
            lambda: CCConfig(model="residual", mixing="none"),
            ValueError,
            "mixing: model='residual' implies mixing='embedding'",
        ),
        Bad(
            "supcomp.cc.train",
            "steps < 0",
            lambda: cc_train(CCConfig(**small_cc), steps=-1, progress=False),
            ValueError,
            "steps: expected an int >= 0",
        ),
        Bad(
            "Grid",
            "a parameter both fixed and swept",
            lambda: Grid("tms", fixed=dict(seed=0), axes=dict(seed=[1, 2])),
            ValueError,
            "axes: ['seed'] also in fixed",
        ),
        Bad(
            "run_sweep",
            "unknown experiment",
            lambda: run_sweep(Grid("bogus"), out="unused.jsonl", progress=False),
            ValueError,
            "experiment: unknown 'bogus'",
        ),
    ]


ROWS.extend(_construction_rows())


def _c_core_rows() -> list[Bad]:
    """The compiled core called directly (``supcomp._C``): it checks its own arguments."""
    import numpy as np

    from supcomp import _C

    f32, i64 = np.float32, np.int64
    p = np.full((1, 4), 0.5)
    return [
        Bad(
            "supcomp._C.topk_merge",
            "row offset + tile rows past the batch (r0 = 2**63 - 1)",
            lambda: _C.topk_merge(
                np.ones((1, 2, 5), f32),
                np.zeros((1, 8), f32),
                np.zeros((1, 4, 3), f32),
                np.zeros((1, 4, 3), i64),
                2**63 - 1,
                0,
            ),
            ValueError,
            "r0: row block out of range",
        ),
        Bad(
            "supcomp._C.tms_sample_count",
            "batch_size near 2**62 (rows overflow int64)",
            lambda: _C.tms_sample_count(0, 0, np.full((2, 3), 0.5), 2**62, 0, 0, np.zeros(7, i64), 1),
            ValueError,
            "batch_size: size 2 * 4611686018427387904 overflows int64",
        ),
        Bad(
            "supcomp._C.tms_sample_fill",
            "offsets not a CSR pointer into the buffers",
            lambda: _C.tms_sample_fill(
                0, 0, p, 2, 0, 0, False, np.array([0, 2**40, 3]), np.zeros(8, i64), np.zeros(8, f32), 1
            ),
            ValueError,
            "offsets: must be non-decreasing",
        ),
        Bad(
            "supcomp._C.tms_sample_count",
            "NaN probability",
            lambda: _C.tms_sample_count(0, 0, np.array([[0.5, float("nan")]]), 2, 0, 0, np.zeros(3, i64), 1),
            ValueError,
            "p: probabilities must lie in [0, 1]",
        ),
        Bad(
            "supcomp._C.relu_",
            "unaligned array",
            lambda: _C.relu_(np.zeros(25, np.uint8)[1:].view(f32)),
            ValueError,
            "y: data is not aligned",
        ),
    ]


ROWS.extend(_c_core_rows())


def message(row: Bad) -> str:
    """The message the row's call raises (its first line)."""
    try:
        row.call()
    except row.exc as e:  # noqa: PERF203
        return str(e).splitlines()[0] if str(e) else ""
    raise AssertionError(f"{row.function} ({row.what}): no {row.exc.__name__} raised")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The markdown table (the block of docs/guarantees.md between the markers)."""
    lines = ["| function | invalid input | exception | message |", "|---|---|---|---|"]
    for row in ROWS:
        lines.append(f"| `{row.function}` | {_cell(row.what)} | `{row.exc.__name__}` | {_cell(message(row))} |")
    return "\n".join(lines)
