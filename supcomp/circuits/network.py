"""``compress``: embed T small circuits in one large L-layer ReLU network; ``SuperposedNetwork.forward``.

The construction is the corrected one of Linsefors & Bushnaq (2025,
"Circuits in Superposition 2"), generalised from their 2-D rotation circuits
to any ``CircuitSet`` (d, L, per-layer weights and biases, ReLU or linear).

Layout of the ``width``-neuron large network (``M = width // (d + 2)``):

====================  ===========================  ==============================================
neurons               what they hold                 why
====================  ===========================  ==============================================
``[0, M)``            indicator, assignment 0        1 on the S positions of every active circuit's
``[M, 2M)``           indicator, assignment 1        assignment (an OR, clamped to 1 at read-in);
                                                     copied unchanged by every layer (identity
                                                     weights, bias 0): they tell each layer which
                                                     neurons belong to active circuits.
``[2M, 2M + M d)``    the circuits' states,          position n, coordinate i at ``2M + n d + i``;
                      position-major                 circuit t's coordinate i sits on the S neurons
                                                     ``A_p[t]`` (p = layer parity) with value
                                                     ``h_i + c``.
``[(d+2) M, width)``  unused                         zero (width not a multiple of d + 2).
====================  ===========================  ==============================================

Two assignments ``A_0, A_1`` (``[T, S]`` each; ``A_1`` is ``A_0`` with the
circuits shuffled) alternate: layer l's states live on ``A_{l mod 2}``. Using
a *different* assignment for a layer's input and output is what keeps the
weight matrix from piling all circuits' self-connections onto the same
neurons (with one assignment every hosted neuron's diagonal entry would sum
~T S / M circuits' weights).

Layer l (1..L) is ``a_l = relu(Wbig_l a_{l-1} + bbig_l)`` with, for each
circuit t, input position n in ``A_in[t]`` and output position m in
``A_out[t]``:

* ``Wbig[state(m, i), state(n, j)] += W[t, l, i, j] / S`` -- the circuit's
  weights, averaged over its S input copies (the read-in of the small
  neuron from its hosts);
* ``Wbig[state(m, i), ind_in(n)] += (b[t, l, i] - c sum_j W[t, l, i, j]) / S``
  -- the circuit's bias, and removal of the offset c carried by the input
  states (the "rotated one-vector" of the reference code), both gated by the
  input indicator so they appear only when some circuit on n is active;
* ``Wbig[state(m, i), ind_out(m)] = c + 1`` and ``bbig[state] = -1`` -- the
  **+2 / -1 offsets** (c = 1): a neuron of an active circuit gets
  ``+2 - 1 = +1`` on top of ``W h + b``, so it holds ``h + 1 >= 0`` and stays in
  the ReLU's linear regime (for states in [-1, 1]); a neuron no active
  circuit uses gets ``-1`` plus interference, which the ReLU cuts to 0 --
  the inactive circuits are silenced at every layer, so their noise does
  not compound with depth (the 2024 post's error).

``c`` is the offset carried by the states: 1 for ``activation="linear"``
circuits (their states can be negative), 0 for ReLU circuits (their states
are >= 0 and the large ReLU then *is* the circuit's ReLU: an active neuron
gets ``W h + b`` and the gate ``+1 - 1 = 0``). The read-out of circuit t at
layer l is ``mean over n in A_l[t] of a_l[state(n, :)] - c ind_l(n)``.

Read-in (``embed``) and read-out are sparse: a scatter of the z active inputs
onto their ``z S`` hosting positions and a gather of them back, run on the
foundation's ``sparse_encode`` op (read-out) and its transpose (read-in: the
op's weight-gradient kernel, which is exactly that scatter) -- C++ on CPU,
Triton on CUDA. The D x D layers are dense (``relu_readout``: GEMM + bias +
ReLU).
"""

from __future__ import annotations

import contextlib

import torch

from ..ops import relu_readout, sparse_encode
from ..ops.sparse_encode import sparse_encode_backward_op
from . import assign
from .circuitset import CircuitSet, _check_sizes, check_active, check_inputs


def scatter_rows(positions: torch.Tensor, rows: torch.Tensor, M: int) -> torch.Tensor:
    """Sparse scatter: ``out[b, positions[b, j, s], :] += rows[b, j, :]`` -> ``[B, M, k]``.

    positions ``[B, z, S]`` int64 (-1 = skip), rows ``[B, z, k]``. This is the
    transpose of ``sparse_encode`` (its weight gradient with values 1), so it
    runs on the same C++ / Triton kernels; duplicates add up.
    """
    B, z, S = positions.shape
    k = rows.shape[-1]
    if B * z * S == 0:
        # Nothing to scatter; also, the op's C++ weight-gradient kernel divides by the instance count
        # when splitting columns, so an empty batch (I = 0) must not reach it.
        return torch.zeros(B, M, k, dtype=rows.dtype, device=rows.device)
    ones = torch.ones(B, z, S, dtype=rows.dtype, device=rows.device)
    # The kernel reads only the shape / dtype / device of its W argument when need_values is False.
    shape_only = torch.empty(B, M, k, dtype=rows.dtype, device=rows.device)
    with _one_thread_if_small(B * M * k):
        _, out = sparse_encode_backward_op(rows.contiguous(), positions.contiguous(), ones, shape_only, False, True)
    return out


@contextlib.contextmanager
def _one_thread_if_small(work: int):
    """Run a small CPU kernel on one thread: the scatter's parallel loop (one item per batch row,
    dynamic schedule) measured 0.3 ms on one thread and 44 ms on two at B=256, M=600 on this shared
    2-core machine (the second core was busy); the work (zeroing B x M x k numbers) is too small to
    split. torch's thread count is process-wide, so it is restored right after."""
    old = torch.get_num_threads()
    if work >= SMALL_WORK or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


SMALL_WORK = 1 << 21  # elements


class SuperposedNetwork(torch.nn.Module):
    """The large network built by :func:`compress`.

    Buffers: ``weight [L, width, width]``, ``bias [L, width]``, ``assignments [2, T, S]`` (int64).
    Attributes: ``T, L, d, S, M, width, offset`` (the c above), ``assignment`` (name).
    """

    def __init__(self, weight, bias, assignments, d: int, offset: float, assignment: str):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("assignments", assignments)
        self.L, self.width = weight.shape[0], weight.shape[1]
        self.T, self.S = assignments.shape[1], assignments.shape[2]
        self.d, self.offset, self.assignment = d, float(offset), assignment
        self.M = self.width // (d + 2)

    def extra_repr(self):
        return (
            f"T={self.T}, L={self.L}, d={self.d}, width={self.width}, M={self.M}, S={self.S}, "
            f"assignment={self.assignment!r}, offset={self.offset}"
        )

    # --- sparse read-in / read-out -------------------------------------------------------------
    def positions(self, active: torch.Tensor, layer: int) -> torch.Tensor:
        """Hosting positions of the active circuits at ``layer``: ``[B, z, S]`` int64 (-1 for padded slots).

        ``active`` holds ``[B, z]`` int64 circuit ids (-1 = padding), already checked.
        """
        A = self.assignments[layer % 2]
        pos = A[active.clamp(min=0)]
        return torch.where((active >= 0).unsqueeze(-1), pos, torch.full((), -1, dtype=pos.dtype, device=pos.device))

    def embed(self, states: torch.Tensor, active: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """Write the active circuits' states onto their hosts: states ``[B, z, d]`` -> ``[B, width]``.

        Indicators: 1 on every position of an active circuit (both assignments); state neurons:
        the sum of the states of the circuits hosted there, plus ``c`` times the indicator. With
        ``layer=0`` this is the read-in of the inputs; at other layers it is the ideal activation
        vector the construction aims for (used by ``measure_interference``). ``states`` is a float
        tensor (cast to the network's dtype), ``active`` int64 or int32 ids ``[B, z]`` (-1 = padding).

        Raises:
            TypeError, ValueError, IndexError: as ``forward`` for bad ``active`` or ``states``.
        """
        active = check_active(active, self.T, "active")
        states = check_inputs(states, active, self.d, "states").to(self.weight.dtype)
        with _one_thread_if_small(active.shape[0] * self.width):
            return self._embed(states, active, layer)

    def _embed(self, states, active, layer):
        B, z = active.shape
        M, d = self.M, self.d
        p_here, p_other = self.positions(active, layer), self.positions(active, layer + 1)
        ones = torch.ones(B, z, 1, dtype=states.dtype, device=states.device)
        here = scatter_rows(p_here, torch.cat([states, ones], -1), M)  # [B, M, d + 1]
        ind_here = here[..., d].clamp(max=1.0)
        ind_other = scatter_rows(p_other, ones, M)[..., 0].clamp(max=1.0)
        state = here[..., :d] + self.offset * ind_here.unsqueeze(-1)
        inds = (ind_here, ind_other) if layer % 2 == 0 else (ind_other, ind_here)
        out = torch.zeros(B, self.width, dtype=states.dtype, device=states.device)
        out[:, :M] = inds[0]
        out[:, M : 2 * M] = inds[1]
        out[:, 2 * M : (d + 2) * M] = state.reshape(B, M * d)
        return out

    def read(self, a: torch.Tensor, active: torch.Tensor, layer: int) -> torch.Tensor:
        """Read the active circuits' states out of an activation (or pre-activation) vector of layer
        ``layer``: a ``[B, width]`` -> ``[B, z, d]``, the mean over the S hosts of ``state - c * indicator``.

        Subtracting the offset where the indicator is on (rather than always) makes a circuit whose
        hosts are all silent read exactly 0; for an active circuit the indicator is 1 on every host,
        so this is ``mean - c``. Padded slots read 0. ``a`` has the network's float dtype; ``active`` is
        int64 or int32 ``[B, z]`` (-1 = padding).

        Raises:
            TypeError, ValueError, IndexError: as ``forward`` for a bad ``active``.
        """
        active = check_active(active, self.T, "active")
        with _one_thread_if_small(active.shape[0] * self.width):
            return self._read(a, active, layer)

    def _read(self, a, active, layer):
        B, z = active.shape
        M, d, S = self.M, self.d, self.S
        if B * z == 0:  # sparse_encode's instance axis cannot be empty
            return a.new_zeros(B, z, d)
        pos = self.positions(active, layer)
        vals = ((active >= 0).to(a.dtype) / S).unsqueeze(-1).expand(B, z, S).contiguous()
        states = a[:, 2 * M : (d + 2) * M].reshape(B, M, d)
        if self.offset:
            p = layer % 2
            states = states - self.offset * a[:, p * M : (p + 1) * M].unsqueeze(-1)
        return sparse_encode(pos, vals, states.contiguous())  # [B, z, d]: instance axis = batch row

    # --- dense layers --------------------------------------------------------------------------
    def layer(self, a: torch.Tensor, l: int) -> torch.Tensor:
        """Layer ``l`` (1..L): ``relu(a @ weight[l-1].T + bias[l-1])``, a ``[B, width]`` in the network's dtype."""
        return relu_readout(a, self.weight[l - 1], self.bias[l - 1])

    def preactivation(self, a: torch.Tensor, l: int) -> torch.Tensor:
        """Layer ``l``'s pre-activation ``a @ weight[l-1].T + bias[l-1]``: ``[B, width]`` -> ``[B, width]``.

        ``a`` has the network's float dtype (no checks: the building block of ``forward``).
        """
        return torch.addmm(self.bias[l - 1], a, self.weight[l - 1].T)

    def activations(self, x: torch.Tensor, active: torch.Tensor) -> list[torch.Tensor]:
        """All activation vectors ``[a_0 (read-in), a_1, ..., a_L]``, each ``[B, width]``.

        ``x`` ``[B, z, d]`` float inputs, ``active`` ``[B, z]`` int64 or int32 ids; the activations have
        the network's dtype. Bad arguments raise as in ``forward``.
        """
        a = self.embed(x, active, 0)
        out = [a]
        for l in range(1, self.L + 1):
            a = self.layer(a, l)
            out.append(a)
        return out

    def forward(self, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Run the active circuits in superposition.

        Args:
            x: ``[B, z, d]`` inputs of the active circuits (cast to the network's dtype).
            active: ``[B, z]`` circuit ids, -1 for padding (rows may have fewer than z circuits).

        Returns:
            ``[B, z, d]``: each active circuit's output after L layers, read out of the large
            network (0 in padded slots), in the network's dtype.

        Raises:
            TypeError: ``x`` is not a float tensor or ``active`` not an int64/int32 tensor.
            ValueError: ``x`` is not ``[B, z, d]`` matching ``active``, is on another device, or holds NaN/inf.
            IndexError: a circuit id outside ``[-1, T)``.
        """
        active = check_active(active, self.T, "active")
        check_inputs(x, active, self.d, "x")
        a = self.embed(x, active, 0)
        for l in range(1, self.L + 1):
            a = self.layer(a, l)
        return self.read(a, active, self.L)


def compress(
    circuits: CircuitSet, width: int, neurons_per_unit: int = 5, assignment: str = "overlap1", seed: int = 0
) -> SuperposedNetwork:
    """Embed ``circuits`` (T circuits, L layers, width d) in one large network of ``width`` neurons per layer.

    Args:
        circuits: the small circuits.
        width: D, neurons per layer of the large network; ``M = width // (d + 2)`` positions per
            block (``M`` is the "D/d" of the theory: d + 2 counts the two indicator neurons).
        neurons_per_unit: S, large neurons hosting each small neuron (1 <= S <= M).
        assignment: ``"overlap1"`` (arithmetic progressions, two circuits share <= 1 position) or
            ``"random"``.
        seed: seeds the random assignment and the circuit shuffle between the two assignments.

    Returns:
        :class:`SuperposedNetwork` with ``weight [L, width, width]``, ``bias [L, width]``, in the
        circuits' dtype and on their device. See the module docstring for the construction.

    Raises:
        TypeError: ``circuits`` is not a CircuitSet.
        ValueError: an unknown ``assignment``, ``width < d + 2``, or ``neurons_per_unit`` outside
            ``[1, width // (d + 2)]``.
    """
    if not isinstance(circuits, CircuitSet):
        raise TypeError(f"circuits: expected a CircuitSet, got {type(circuits).__name__}")
    _check_sizes(width=width, neurons_per_unit=neurons_per_unit)
    if assignment not in assign.ASSIGNMENTS:
        raise ValueError(f"assignment: expected one of {assign.ASSIGNMENTS}, got {assignment!r}")
    T, L, d = circuits.T, circuits.L, circuits.d
    S = neurons_per_unit
    M = width // (d + 2)
    if M < 1:
        raise ValueError(
            f"width: must be at least d + 2 = {d + 2} (two indicator blocks and d state blocks), got {width}"
        )
    if S > M:
        raise ValueError(f"neurons_per_unit: S={S} exceeds the {M} positions per block of width {width}")
    g = torch.Generator().manual_seed(int(seed))
    A0 = assign.overlap1(T, M, S) if assignment == "overlap1" else assign.random_assignment(T, M, S, g)
    if assignment == "overlap1":
        A1 = A0[torch.randperm(T, generator=g)]
    else:
        A1 = assign.random_assignment(T, M, S, g)
    c = 1.0 if circuits.activation == "linear" else 0.0
    W64 = circuits.weights.detach().double().cpu()
    b64 = circuits.biases.detach().double().cpu()
    dt, dev = circuits.weights.dtype, circuits.weights.device
    weight = torch.empty(L, width, width, dtype=dt)  # built layer by layer in float64, stored in dt
    bias = torch.zeros(L, width, dtype=torch.float64)
    ar_M = torch.arange(M)
    state0 = 2 * M
    i_idx = torch.arange(d)
    for l in range(1, L + 1):
        A_in, A_out = (A0, A1)[(l - 1) % 2], (A0, A1)[l % 2]
        Wl = torch.zeros(width, width, dtype=torch.float64)
        Wl[ar_M, ar_M] = 1.0  # indicators copied
        Wl[M + ar_M, M + ar_M] = 1.0
        out_ind = (l % 2) * M + ar_M  # gate: +(c + 1) from the output assignment's indicator
        st = state0 + ar_M[:, None] * d + i_idx[None, :]  # [M, d]
        Wl[st.reshape(-1), out_ind.repeat_interleave(d)] = c + 1.0
        bias[l - 1, state0 : state0 + M * d] = -1.0
        # circuit weights: rows state(m, i) for m in A_out[t], cols state(n, j) for n in A_in[t]
        w = W64[:, l - 1] / S  # [T, d, d]
        m = A_out[:, :, None, None, None]  # [T, S_out, 1, 1, 1]
        n = A_in[:, None, :, None, None]  # [T, 1, S_in, 1, 1]
        ii = i_idx[None, None, None, :, None]
        jj = i_idx[None, None, None, None, :]
        rows = (state0 + m * d + ii).expand(T, S, S, d, d)
        cols = (state0 + n * d + jj).expand(T, S, S, d, d)
        vals = w[:, None, None].expand(T, S, S, d, d)
        Wl.index_put_((rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1), accumulate=True)
        # bias and offset removal, gated by the input indicator
        in_ind = ((l - 1) % 2) * M
        bvec = (b64[:, l - 1] - c * W64[:, l - 1].sum(-1)) / S  # [T, d]
        rows = (state0 + A_out[:, :, None, None] * d + i_idx[None, None, None, :]).expand(T, S, S, d)
        cols = (in_ind + A_in[:, None, :, None]).expand(T, S, S, d)
        vals = bvec[:, None, None, :].expand(T, S, S, d)
        Wl.index_put_((rows.reshape(-1), cols.reshape(-1)), vals.reshape(-1), accumulate=True)
        weight[l - 1] = Wl
    return SuperposedNetwork(weight.to(dev), bias.to(dt).to(dev), torch.stack([A0, A1]).to(dev), d, c, assignment)
