"""The U-AND construction ("Mathematical Models of Computation in Superposition", Hänni, Mendel & Vaintrob 2024).

One ReLU layer of d neurons, ``a = relu(C x - (k - 1))`` with C in {0,1}^{d x m},
whose activations let a linear read-out recover the AND of any k of the m
sparse boolean inputs: the estimate of AND(x_i : i in gate) is the mean
activation over R_gate = ∩_{i in gate} S_i, S_i the neurons fed by input i.

C is stored sparsely, by input (``col_ptr``/``col_idx``: S_i) and by neuron
(``nrn_ptr``/``nrn_idx``: L_n, the inputs feeding neuron n), both sorted:
memory O(p d m), never d x m.

This file holds one class, ``UAnd``, whose construction, forward and read-outs share the sparse
C; it runs past 400 lines because splitting it would split one object's methods across files.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..ops import checks
from ..ops import uand as uand_ops
from ..ops.sparse_encode import sparse_encode
from ..ops.uand import pair_gates, pair_offset
from .theory import check_fan_in, check_p

_SAMPLE_TILE = 1 << 22  # Bernoulli draws per sampling step: bounded memory (16 MB of floats) at any m, d


def _check_int(x, name, lo=1):
    if isinstance(x, bool) or not isinstance(x, int) or x < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {x!r}")


def _csr_from_pairs(rows: torch.Tensor, cols: torch.Tensor, n_rows: int):
    """(row, col) entries sorted by row then col -> (ptr [n_rows + 1], cols)."""
    ptr = torch.zeros(n_rows + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    return ptr, cols.contiguous()


def sample_connections(n_inputs: int, n_neurons: int, p: float, generator: torch.Generator):
    """iid Bernoulli(p) C, by input: (col_ptr [m + 1], col_idx [nnz]), neurons ascending per input.

    Drawn in tiles of inputs (at most ``_SAMPLE_TILE`` draws at once), so sampling memory is bounded.
    """
    tile = max(1, _SAMPLE_TILE // max(n_neurons, 1))
    rows, cols = [], []
    for i0 in range(0, n_inputs, tile):
        i1 = min(n_inputs, i0 + tile)
        hit = torch.rand(i1 - i0, n_neurons, generator=generator) < p
        r, c = hit.nonzero(as_tuple=True)  # row-major: inputs ascending, neurons ascending within
        rows.append(r + i0)
        cols.append(c)
    rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    cols = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    return _csr_from_pairs(rows, cols, n_inputs)


def transpose_csr(ptr: torch.Tensor, idx: torch.Tensor, n_cols: int):
    """CSR by input -> CSR by neuron (inputs ascending per neuron, by a stable sort)."""
    rows = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr[1:] - ptr[:-1])
    order = torch.sort(idx, stable=True).indices
    return _csr_from_pairs(idx[order], rows[order], n_cols)


class UAnd:
    """U-AND layer: ``a = relu(C x - (fan_in - 1))``, read-out = mean activation over ∩ S_i.

    Args:
        n_inputs: m, number of boolean inputs.
        n_neurons: d, number of ReLU neurons.
        p: connection probability in (0, 1] (see ``supcomp.uand.suggest_p``: d p^k ~ 20 works at
            practical sizes; the post's asymptotic rule is p ~ log^2(m) d^(-1/k)).
        fan_in: k >= 2, inputs per gate; bias -(k - 1).
        seed: seed of C (and of F with an input embedding).
        input_embedding: None (inputs arrive as their indices), an int d0 (inputs arrive in
            superposition as z = F^T x in R^{d0}, F [m, d0] with random unit rows; the first
            layer is C F), or a float tensor F [m, d0] to use as is.
        dtype: float dtype of the activations (float32 or float64 on the C++ backend).
        device: where the connection lists live (CUDA: Triton kernels).

    Shapes: ``forward(indices [..., s]) -> a [..., d]``; ``read(a [..., d], gates [G, k]) -> [..., G]``;
    ``read_all_pairs(a [B, d]) -> [B, m (m - 1) / 2]`` (fan-in 2 only). Input ids are int64 or int32;
    activations and estimates have the model's ``dtype``.

    Raises:
        ValueError: a size, ``p``, ``fan_in`` or ``seed`` out of range (naming it), or an
            ``input_embedding`` tensor of the wrong shape.
        TypeError: ``dtype`` is not float32 or float64, or ``input_embedding`` is not a float tensor.
    """

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        p: float,
        fan_in: int = 2,
        seed: int = 0,
        input_embedding=None,
        dtype=torch.float32,
        device="cpu",
        _connections=None,
    ):
        _check_int(n_inputs, "n_inputs")
        _check_int(n_neurons, "n_neurons")
        check_fan_in(fan_in)
        if p is not None:
            check_p(p)
        _check_int(seed, "seed", lo=0)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.m, self.d, self.p, self.fan_in, self.seed = n_inputs, n_neurons, p, fan_in, seed
        self.bias = -(fan_in - 1.0)
        # The resolved device ("cuda" -> "cuda:0"), so that it compares equal to the device of its tensors.
        self.dtype, self.device = dtype, torch.empty(0, device=device).device
        g = torch.Generator().manual_seed(seed)
        if _connections is None:
            if p is None:
                raise ValueError("p: expected a connection probability in (0, 1], got None")
            col_ptr, col_idx = sample_connections(n_inputs, n_neurons, p, g)
        else:
            col_ptr, col_idx = _connections
        nrn_ptr, nrn_idx = transpose_csr(col_ptr, col_idx, n_neurons)
        self.col_ptr, self.col_idx = col_ptr.to(self.device), col_idx.to(self.device)
        self.nrn_ptr, self.nrn_idx = nrn_ptr.to(self.device), nrn_idx.to(self.device)
        self.F = None
        if input_embedding is not None:
            if isinstance(input_embedding, torch.Tensor):
                checks.check_float(input_embedding, "input_embedding")
                if input_embedding.dim() != 2 or input_embedding.shape[0] != n_inputs:
                    raise ValueError(
                        f"input_embedding: expected shape [n_inputs={n_inputs}, d0], "
                        f"got {checks.shape_str(input_embedding)}"
                    )
                F = input_embedding.detach()
            else:
                _check_int(input_embedding, "input_embedding")
                F = torch.randn(n_inputs, input_embedding, generator=g, dtype=torch.float64)
                F = F / F.norm(dim=1, keepdim=True)
            self.F = F.to(dtype=dtype, device=self.device).contiguous()
        self._pair_counts = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def targeted(cls, n_inputs: int, n_neurons: int, gates, neurons_per_gate: int, seed: int = 0, **kw):
        """Targeted-subset construction: only the requested gates.

        Each gate [E, k] gets a uniformly random set of ``neurons_per_gate`` neurons; S_i is the
        union of the sets of the gates that use input i. Read-out as usual (mean over ∩ S_i ⊇ the
        gate's own set). ``p`` of the result is None (C is not iid). ``gates`` is an int64 (or int32)
        tensor ``[E, k]`` of distinct input ids per row; ``**kw`` go to the constructor.

        Raises:
            ValueError: a size out of range, ``neurons_per_gate > n_neurons``, or ``gates`` of the
                wrong shape or with repeated ids in a row.
            TypeError: ``gates`` is not an integer tensor.
            IndexError: a gate id outside ``[0, n_inputs)``.
        """
        _check_int(n_inputs, "n_inputs")
        _check_int(n_neurons, "n_neurons")
        _check_int(neurons_per_gate, "neurons_per_gate")
        if neurons_per_gate > n_neurons:
            raise ValueError(f"neurons_per_gate: {neurons_per_gate} is more than n_neurons = {n_neurons}")
        gates = _check_gates(gates, n_inputs, None, "gates")
        E, k = gates.shape
        g = torch.Generator().manual_seed(seed)
        # A random subset per gate: the first entries of a random permutation, in tiles of gates.
        sets = []
        tile = max(1, _SAMPLE_TILE // n_neurons)
        for e0 in range(0, E, tile):
            r = torch.rand(min(E, e0 + tile) - e0, n_neurons, generator=g)
            sets.append(torch.topk(r, neurons_per_gate, dim=1).indices)
        sets = torch.cat(sets) if sets else torch.zeros(0, neurons_per_gate, dtype=torch.int64)
        gcpu = gates.cpu()
        inp = gcpu[:, :, None].expand(E, k, neurons_per_gate).reshape(-1)
        nrn = sets[:, None, :].expand(E, k, neurons_per_gate).reshape(-1)
        key = torch.unique(inp * n_neurons + nrn)  # sorted: input, then neuron
        col_ptr, col_idx = _csr_from_pairs(key // n_neurons, key % n_neurons, n_inputs)
        kw.setdefault("fan_in", k)
        return cls(n_inputs, n_neurons, None, seed=seed, _connections=(col_ptr, col_idx), **kw)

    # ------------------------------------------------------------------ structure
    @property
    def nnz(self) -> int:
        """Number of connections (ones in C)."""
        return int(self.col_idx.numel())

    @property
    def n_pairs(self) -> int:
        """Number of input pairs i < j, m (m - 1) / 2: the width of ``read_all_pairs``."""
        return pair_offset(self.m, self.m)

    def connection_matrix(self) -> torch.Tensor:
        """Dense C [d, m] (0/1, ``dtype``): for small models and dense peers only."""
        C = torch.zeros(self.d, self.m, dtype=self.dtype, device=self.device)
        cols = torch.repeat_interleave(torch.arange(self.m, device=self.device), self.col_ptr[1:] - self.col_ptr[:-1])
        C[self.col_idx, cols] = 1
        return C

    def first_layer(self) -> torch.Tensor:
        """The dense first-layer weight: C [d, m], or C F [d, d0] with an input embedding."""
        C = self.connection_matrix()
        return C @ self.F if self.F is not None else C

    def pair_index(self, i, j):
        """Position of pair (i, j), i < j, in ``read_all_pairs`` output (tensors or ints)."""
        return i * (2 * self.m - i - 1) // 2 + j - i - 1

    def pairs(self, i0: int = 0, i1: int | None = None) -> torch.Tensor:
        """The pairs of rows i0 <= i < i1 in ``read_all_pairs`` order: [W, 2] int64."""
        return pair_gates(self.m, i0, self.m if i1 is None else i1, self.device)

    # ------------------------------------------------------------------ forward
    def _indices(self, indices, name="indices"):
        indices = checks.check_indices(indices, name)
        if indices.device != self.device:
            raise ValueError(f"{name}: on device {indices.device} but the model is on {self.device}")
        return indices

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Activations for boolean inputs given as active ids: indices [..., s] (-1 = empty) -> a [..., d].

        x = sum of e_i over the slots (a repeated id counts twice). With an input embedding the
        inputs are first superposed, z = F^T x, and the layer sees C F z (``forward_embedded``).
        """
        indices = self._indices(indices)
        batch, s = indices.shape[:-1], indices.shape[-1]
        if self.F is not None:
            return self.forward_embedded(self.embed(indices))
        flat = indices.reshape(math.prod(batch), s).contiguous()  # explicit rows: s may be 0
        backend = uand_ops.IMPLS.backend(self.device, self.dtype)
        if backend != "cpp":
            checks.check_index_range(flat, self.m)
        values = torch.ones(flat.shape, dtype=self.dtype, device=self.device)
        a = uand_ops.IMPLS.get(backend).forward(flat, values, self.col_ptr, self.col_idx, self.bias, self.d)
        return a.reshape(*batch, self.d)

    __call__ = forward

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Inputs in superposition: z = F^T x = sum of the rows F[i] of the active ids: [..., s] -> [..., d0].

        ``indices`` are int64 (or int32) ids, ``-1`` = empty; ``z`` has the model's float ``dtype``.

        Raises:
            ValueError: the model has no input embedding, or ``indices`` is on another device.
        """
        if self.F is None:
            raise ValueError("input_embedding: this model has none (construct with input_embedding=d0)")
        indices = self._indices(indices)
        return sparse_encode(indices, torch.ones(indices.shape, dtype=self.dtype, device=self.device), self.F)

    def forward_embedded(self, z: torch.Tensor) -> torch.Tensor:
        """Activations for inputs in superposition: z [..., d0] -> a = relu(C F z + bias) [..., d].

        Computed as C (F z): the dense [.., m] read-in u = F z, then the sparse gather-sum of
        the forward kernel with every input as a slot weighted by u (never the dense C F). ``z`` is a
        float tensor (cast to the model's ``dtype``); ``a`` has the model's ``dtype``.

        Raises:
            ValueError: the model has no input embedding, or ``z``'s last dimension is not d0.
            TypeError: ``z`` is not a float tensor.
        """
        if self.F is None:
            raise ValueError("input_embedding: this model has none (construct with input_embedding=d0)")
        checks.check_float(z, "z")
        if z.shape[-1] != self.F.shape[1]:
            raise ValueError(f"z: expected shape [..., d0={self.F.shape[1]}], got {checks.shape_str(z)}")
        batch = z.shape[:-1]
        u = (z.reshape(-1, z.shape[-1]).to(self.dtype) @ self.F.T).contiguous()  # [B, m]
        idx = torch.arange(self.m, device=self.device).expand(u.shape[0], self.m).contiguous()
        a = uand_ops.IMPLS.impl_for(u).forward(idx, u, self.col_ptr, self.col_idx, self.bias, self.d)
        return a.reshape(*batch, self.d)

    # ------------------------------------------------------------------ read-out
    def _a(self, a, name="a"):
        checks.check_float(a, name)
        if a.dim() < 1 or a.shape[-1] != self.d:
            raise ValueError(f"{name}: expected shape [..., d={self.d}], got {checks.shape_str(a)}")
        if a.device != self.device:
            raise ValueError(f"{name}: on device {a.device} but the model is on {self.device}")
        return a

    def check_gates(self, gates) -> torch.Tensor:
        """Validate gates [G, fan_in] (ints in [0, m), distinct within a gate) -> int64 on the model's device."""
        return _check_gates(gates, self.m, self.fan_in, "gates").to(self.device)

    def intersections(self, gates) -> tuple[torch.Tensor, torch.Tensor]:
        """Read-out sets R_g = ∩ S_i of gates [G, k] in CSR: (row_ptr [G + 1], neuron ids [nnz_R])."""
        gates = self.check_gates(gates)
        impl = uand_ops.IMPLS.impl(self.device, self.dtype)
        return impl.intersect(gates.contiguous(), self.col_ptr, self.col_idx, self.d)

    def readout_matrix(self, gates, on_empty: str = "raise") -> torch.Tensor:
        """Sparse read-out matrix R [G, d] (torch sparse CSR): R[g, n] = 1 / |R_g| for n in R_g.

        ``estimates = a @ R.T``. An empty read-out set raises (``on_empty="raise"``) or leaves its
        row empty (``on_empty="mask"``; the row then reads 0).
        """
        row_ptr, nidx = self.intersections(gates)
        sizes = row_ptr[1:] - row_ptr[:-1]
        _empty_check(sizes, on_empty, "gates")
        vals = (1.0 / sizes.clamp(min=1).to(self.dtype)).repeat_interleave(sizes)
        with warnings.catch_warnings():  # torch's "sparse CSR is beta" notice
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(row_ptr, nidx, vals, size=(sizes.numel(), self.d), check_invariants=False)

    def read(self, a: torch.Tensor, gates, on_empty: str = "raise"):
        """AND estimates: a [..., d], gates [G, k] -> est [..., G], the mean of a over each R_g.

        on_empty: "raise" (default) raises ValueError naming the unreadable gates (empty
        intersection); "mask" returns ``(est, readable [G] bool)`` with est = 0 where unreadable.
        """
        a = self._a(a)
        row_ptr, nidx = self.intersections(gates)
        sizes = row_ptr[1:] - row_ptr[:-1]
        readable = _empty_check(sizes, on_empty, "gates")
        batch = a.shape[:-1]
        flat = a.reshape(math.prod(batch), self.d).contiguous()
        est = uand_ops.IMPLS.impl_for(flat).readout(flat, row_ptr, nidx).reshape(*batch, sizes.numel())
        return (est, readable) if on_empty == "mask" else est

    def read_xor(self, a: torch.Tensor, gates, indices: torch.Tensor, on_empty: str = "raise"):
        """XOR from AND: est = x_i + x_j - 2 AND_ij, gates [G, 2] -> [..., G].

        x_i is read from ``indices`` [..., s] (the active ids); with an input embedding it is read
        linearly from the residual stream, x_i ~ F[i] . z. ``a`` is float (the model's ``dtype``),
        ``gates`` and ``indices`` are int64 (or int32). ``on_empty`` as in ``read``.

        Raises:
            ValueError: the model's fan-in is not 2, or ``a``/``gates`` have the wrong shape (as in ``read``).
        """
        if self.fan_in != 2:
            raise ValueError(f"gates: read_xor needs fan-in 2 gates, this model has fan_in = {self.fan_in}")
        gates = self.check_gates(gates)
        est_and = self.read(a, gates, on_empty)
        and_, mask = est_and if on_empty == "mask" else (est_and, None)
        xi = self.input_values(indices)
        x = xi[..., gates[:, 0]] + xi[..., gates[:, 1]]
        out = x.to(and_.dtype) - 2 * and_
        return (out, mask) if mask is not None else out

    def input_values(self, indices: torch.Tensor) -> torch.Tensor:
        """x [..., m]: the inputs (counts of each id) or, with an input embedding, their linear read F z.

        ``indices`` [..., s] are int64 (or int32) ids, ``-1`` = empty; ``x`` has the model's ``dtype``.
        An id outside ``[-1, m)`` raises IndexError.
        """
        indices = self._indices(indices)
        if self.F is not None:
            return self.embed(indices) @ self.F.T
        checks.check_index_range(indices, self.m)
        x = torch.zeros(*indices.shape[:-1], self.m + 1, dtype=self.dtype, device=self.device)
        x.scatter_add_(-1, torch.where(indices < 0, self.m, indices), torch.ones_like(x[..., : indices.shape[-1]]))
        return x[..., : self.m]

    # ------------------------------------------------------------------ all pairs
    def pair_counts(self) -> torch.Tensor:
        """|S_i ∩ S_j| for all pairs in ``read_all_pairs`` order: [m (m - 1) / 2] int32 (cached)."""
        if self._pair_counts is None:
            impl = uand_ops.IMPLS.impl(self.device, self.dtype)
            self._pair_counts = impl.pair_counts(self.col_ptr, self.col_idx, self.nrn_ptr, self.nrn_idx, self.m)
        return self._pair_counts

    def read_all_pairs(self, a: torch.Tensor, on_empty: str = "raise", out: torch.Tensor | None = None):
        """AND estimates of every pair i < j: a [B, d] -> est [B, m (m - 1) / 2] (``pair_index`` order).

        Output format: dense, batch-major, pairs row-major over the upper triangle (the position of
        (i, j) is ``pair_index(i, j)``). Beside the output the kernel holds O(m^2) bytes of cached
        pair sizes and a per-thread buffer of O(d + active entries); it never forms the [P, d]
        read-out matrix. For m too large for a [B, P] result use ``iter_all_pairs``.
        on_empty: as in ``read`` (pairs with an empty intersection read 0 under "mask").
        ``out`` (optional [B, P] tensor) is filled and returned. ``a`` is float32 or float64; the
        estimates have its dtype.

        Raises:
            ValueError: the model's fan-in is not 2, ``a`` is not ``[B, d]`` or on another device, or
                (``on_empty="raise"``) a pair's read-out set is empty.
            TypeError: ``a`` is not a float tensor.
        """
        if self.fan_in != 2:
            raise ValueError(f"read_all_pairs: needs a fan-in 2 model, this one has fan_in = {self.fan_in}")
        a = self._a(a)
        if a.dim() != 2:
            raise ValueError(f"a: expected shape [B, d={self.d}], got {checks.shape_str(a)}")
        readable = _empty_check(self.pair_counts(), on_empty, "pairs")
        est = self._pairs_block(a.contiguous(), 0, self.m, out)
        return (est, readable) if on_empty == "mask" else est

    def iter_all_pairs(self, a: torch.Tensor, block_pairs: int = 1 << 18, on_empty: str = "raise"):
        """Blockwise all-pairs read-out: yields ``(p0, p1, est [B, p1 - p0])`` for consecutive pair ranges.

        Each block holds whole rows i (all j > i), about ``block_pairs`` pairs, so peak memory is
        B * block_pairs values plus the kernel's buffers, whatever m. Pairs p0..p1-1 are
        ``self.pairs()[p0:p1]``. Under on_empty="mask" yields ``(p0, p1, est, readable)``. ``a`` is
        float32 or float64; the estimates have its dtype.

        Raises:
            ValueError: the model's fan-in is not 2, ``block_pairs < 1``, ``a`` is not ``[B, d]``, or
                (``on_empty="raise"``) a pair's read-out set is empty.
            TypeError: ``a`` is not a float tensor.
        """
        if self.fan_in != 2:
            raise ValueError(f"iter_all_pairs: needs a fan-in 2 model, this one has fan_in = {self.fan_in}")
        _check_int(block_pairs, "block_pairs")
        a = self._a(a)
        if a.dim() != 2:
            raise ValueError(f"a: expected shape [B, d={self.d}], got {checks.shape_str(a)}")
        readable = _empty_check(self.pair_counts(), on_empty, "pairs")
        a = a.contiguous()
        i = 0
        while i < self.m - 1:
            i1 = i + 1
            while i1 < self.m and pair_offset(i1 + 1, self.m) - pair_offset(i, self.m) <= block_pairs:
                i1 += 1
            p0, p1 = pair_offset(i, self.m), pair_offset(i1, self.m)
            est = self._pairs_block(a, i, i1, None)
            yield (p0, p1, est, readable[p0:p1]) if on_empty == "mask" else (p0, p1, est)
            i = i1

    def _pairs_block(self, a, i0, i1, out):
        counts = self.pair_counts()
        return uand_ops.IMPLS.impl_for(a).all_pairs(
            a, self.col_ptr, self.col_idx, self.nrn_ptr, self.nrn_idx, counts, self.m, i0, i1, out=out
        )

    # ------------------------------------------------------------------ ground truth
    def true_and(self, indices: torch.Tensor, gates) -> torch.Tensor:
        """The boolean AND of each gate: indices [..., s], gates [G, k] -> [..., G] (0./1.)."""
        gates = self.check_gates(gates)
        indices = self._indices(indices)
        checks.check_index_range(indices, self.m)
        on = torch.zeros(*indices.shape[:-1], self.m + 1, dtype=torch.bool, device=self.device)
        on.scatter_(-1, torch.where(indices < 0, self.m, indices), True)
        return on[..., gates].all(-1).to(self.dtype)

    def __repr__(self):
        emb = f", input_embedding={self.F.shape[1]}" if self.F is not None else ""
        return (
            f"UAnd(n_inputs={self.m}, n_neurons={self.d}, p={self.p}, fan_in={self.fan_in}, seed={self.seed}"
            f"{emb}, nnz={self.nnz})"
        )


def _check_gates(gates, m: int, k, name: str) -> torch.Tensor:
    checks.check_tensor(gates, name)
    if gates.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected int64 or int32 input ids, got {gates.dtype}")
    if gates.dim() != 2 or (k is not None and gates.shape[1] != k):
        want = f"[G, fan_in={k}]" if k is not None else "[G, k]"
        raise ValueError(f"{name}: expected shape {want}, got {checks.shape_str(gates)}")
    gates = gates.long()
    if gates.numel():
        bad = (gates < 0) | (gates >= m)
        if bool(bad.any()):
            pos = int(bad.reshape(-1).nonzero()[0])
            raise IndexError(
                f"{name}: input index {int(gates.reshape(-1)[pos])} at flat position {pos} is out of "
                f"range: expected 0 <= index < n_inputs = {m}"
            )
        srt = torch.sort(gates, dim=1).values
        dup = (srt[:, 1:] == srt[:, :-1]).any(1)
        if bool(dup.any()):
            g = int(dup.nonzero()[0])
            raise ValueError(
                f"{name}: gate {g} repeats an input ({gates[g].tolist()}); the inputs of a gate must be distinct"
            )
    return gates


def _empty_check(sizes: torch.Tensor, on_empty: str, what: str) -> torch.Tensor:
    """readable [G] bool; raises under on_empty='raise' when a read-out set is empty."""
    if on_empty not in ("raise", "mask"):
        raise ValueError(f"on_empty: expected 'raise' or 'mask', got {on_empty!r}")
    readable = sizes > 0
    if on_empty == "raise" and not bool(readable.all()):
        bad = (~readable).nonzero().reshape(-1)
        first = bad[:5].tolist()
        raise ValueError(
            f"{what}: {bad.numel()} read-out set(s) are empty (no neuron is fed by every input of "
            f"the gate), first at positions {first}; they cannot be read. Use more neurons or a "
            f"larger p (expected set size d p^k), or on_empty='mask'"
        )
    return readable


def expected_set_size(n_neurons: int, p: float, fan_in: int = 2) -> float:
    """d p^k: expected size of a read-out set."""
    return n_neurons * p**fan_in


def empty_probability(n_neurons: int, p: float, fan_in: int = 2) -> float:
    """P(read-out set empty) = (1 - p^k)^d."""
    return math.exp(n_neurons * math.log1p(-(p**fan_in))) if p < 1 else 0.0
