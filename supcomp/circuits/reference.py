"""Dense torch versions of the superposed network: a slow loop-built reference (tests) and
``DenseNetwork``, the same large network with dense read-in / read-out matrices (benchmark peer).
"""

from __future__ import annotations

import torch

from .circuitset import CircuitSet
from .network import SuperposedNetwork


def slow_weights(circuits: CircuitSet, assignments: torch.Tensor, width: int):
    """Build ``(weight [L, width, width], bias [L, width])`` entry by entry with Python loops, float64.

    Written from the construction's description (not from ``compress``), for small tests only.
    """
    T, L, d = circuits.T, circuits.L, circuits.d
    S = assignments.shape[2]
    M = width // (d + 2)
    c = 1.0 if circuits.activation == "linear" else 0.0
    W = torch.zeros(L, width, width, dtype=torch.float64)
    b = torch.zeros(L, width, dtype=torch.float64)

    def state(n, i):
        return 2 * M + n * d + i

    for l in range(1, L + 1):
        A_in, A_out = assignments[(l - 1) % 2].tolist(), assignments[l % 2].tolist()
        ind_in, ind_out = ((l - 1) % 2) * M, (l % 2) * M
        for n in range(2 * M):
            W[l - 1, n, n] = 1.0
        for m in range(M):
            for i in range(d):
                W[l - 1, state(m, i), ind_out + m] = c + 1.0
                b[l - 1, state(m, i)] = -1.0
        for t in range(T):
            w = circuits.weights[t, l - 1].double()
            bt = circuits.biases[t, l - 1].double()
            for m in A_out[t]:
                for n in A_in[t]:
                    for i in range(d):
                        W[l - 1, state(m, i), ind_in + n] += (bt[i] - c * w[i].sum()) / S
                        for j in range(d):
                            W[l - 1, state(m, i), state(n, j)] += w[i, j] / S
    return W, b


def slow_forward(
    circuits: CircuitSet, assignments: torch.Tensor, width: int, x: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """Loop-by-loop forward of the large network built by :func:`slow_weights`: -> ``[B, z, d]`` float64."""
    W, b = slow_weights(circuits, assignments, width)
    L, d = circuits.L, circuits.d
    S = assignments.shape[2]
    M = width // (d + 2)
    c = 1.0 if circuits.activation == "linear" else 0.0
    B, z = active.shape
    out = torch.zeros(B, z, d, dtype=torch.float64)
    for r in range(B):
        a = torch.zeros(width, dtype=torch.float64)
        ids = [int(t) for t in active[r] if t >= 0]
        for p in (0, 1):
            for t in ids:
                for n in assignments[p, t].tolist():
                    a[p * M + n] = 1.0
        for j, t in enumerate(active[r].tolist()):
            if t < 0:
                continue
            for n in assignments[0, t].tolist():
                for i in range(d):
                    a[2 * M + n * d + i] += float(x[r, j, i])
        for n in range(M):
            for i in range(d):
                a[2 * M + n * d + i] += c * a[n]
        for l in range(L):
            a = torch.relu(W[l] @ a + b[l])
        p = L % 2
        for j, t in enumerate(active[r].tolist()):
            if t < 0:
                continue
            for n in assignments[p, t].tolist():
                for i in range(d):
                    out[r, j, i] += (a[2 * M + n * d + i] - c * a[p * M + n]) / S
    return out


class DenseNetwork(torch.nn.Module):
    """The same large network as ``net`` with dense read-in and read-out (the benchmark peer).

    Read-in: a dense ``[B, T (d + 1)]`` code (each active circuit's inputs and a 1 for its
    indicator) times a ``[T (d + 1), width]`` embedding matrix, indicators clamped to 1; read-out:
    the final activations times a ``[width, T d]`` matrix, then the active circuits' columns. All
    plain torch (matmuls), no supcomp kernels.
    """

    def __init__(self, net: SuperposedNetwork):
        super().__init__()
        T, d, M, S, D = net.T, net.d, net.M, net.S, net.width
        dt, dev = net.weight.dtype, net.weight.device
        A0, A1 = net.assignments[0].cpu(), net.assignments[1].cpu()
        E = torch.zeros(T, d + 1, D, dtype=dt)
        t = torch.arange(T)[:, None]
        for i in range(d):
            E[t, i, 2 * M + A0 * d + i] = 1.0
        E[t, d, A0] = 1.0
        E[t, d, M + A1] = 1.0
        p = net.L % 2
        Ap = (A0, A1)[p]
        R = torch.zeros(D, T, d, dtype=dt)
        for i in range(d):
            R[2 * M + Ap * d + i, t, i] = 1.0 / S
            R[p * M + Ap, t, i] -= net.offset / S
        self.register_buffer("embedding", E.reshape(T * (d + 1), D).to(dev))
        self.register_buffer("readout", R.reshape(D, T * d).to(dev))
        self.register_buffer("weight", net.weight)
        self.register_buffer("bias", net.bias)
        self.T, self.d, self.M, self.offset = T, d, M, net.offset

    def forward(self, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """x ``[B, z, d]``, active ``[B, z]`` (-1 padding) -> ``[B, z, d]``."""
        B, z = active.shape
        T, d, M = self.T, self.d, self.M
        valid = active >= 0
        ids = active.clamp(min=0)
        code = torch.zeros(B, T, d + 1, dtype=x.dtype, device=x.device)
        vals = torch.cat([x, torch.ones(B, z, 1, dtype=x.dtype, device=x.device)], -1) * valid.unsqueeze(-1)
        code.scatter_add_(1, ids.unsqueeze(-1).expand(B, z, d + 1), vals)
        a = code.reshape(B, -1) @ self.embedding
        a[:, : 2 * M] = a[:, : 2 * M].clamp(max=1.0)
        a[:, 2 * M : (d + 2) * M] += self.offset * a[:, :M].repeat_interleave(d, 1)
        for l in range(self.weight.shape[0]):
            a = torch.relu(torch.addmm(self.bias[l], a, self.weight[l].T))
        y = (a @ self.readout).reshape(B, T, d)
        return torch.gather(y, 1, ids.unsqueeze(-1).expand(B, z, d)) * valid.unsqueeze(-1)


def torch_index_forward(net: SuperposedNetwork, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The superposed forward in plain torch: read-in with ``index_put_`` (accumulate), read-out with
    advanced-index gathers, layers ``relu(addmm)`` -- the benchmark's peer for the sparse steps
    (no supcomp kernel). x ``[B, z, d]``, active ``[B, z]`` (-1 padding) -> ``[B, z, d]``."""
    B, z = active.shape
    M, d, S, c = net.M, net.d, net.S, net.offset
    valid = active >= 0
    rows = torch.arange(B, device=x.device)[:, None, None].expand(B, z, S)
    a = torch.zeros(B, net.width, dtype=net.weight.dtype, device=x.device)
    one = valid.unsqueeze(-1).expand(B, z, S).to(a.dtype)
    for p in (0, 1):
        pos = net.assignments[p][active.clamp(min=0)]  # [B, z, S]
        a.index_put_((rows, p * M + pos), one, accumulate=True)
    a[:, : 2 * M].clamp_(max=1.0)
    pos = net.assignments[0][active.clamp(min=0)]
    cols = 2 * M + pos[..., None] * d + torch.arange(d, device=x.device)  # [B, z, S, d]
    vals = (x * valid.unsqueeze(-1)).unsqueeze(2).expand(B, z, S, d).to(a.dtype)
    a.index_put_((rows[..., None].expand(B, z, S, d), cols), vals, accumulate=True)
    a[:, 2 * M : (d + 2) * M] += c * a[:, :M].repeat_interleave(d, 1)
    for l in range(net.L):
        a = torch.relu(torch.addmm(net.bias[l], a, net.weight[l].T))
    p = net.L % 2
    pos = net.assignments[p][active.clamp(min=0)]  # [B, z, S]
    b_idx = torch.arange(B, device=x.device)[:, None, None, None]
    st = a[b_idx, 2 * M + pos[..., None] * d + torch.arange(d, device=x.device)]  # [B, z, S, d]
    ind = a[b_idx[..., 0], p * M + pos]  # [B, z, S]
    out = (st - c * ind.unsqueeze(-1)).mean(2)
    return out * valid.unsqueeze(-1)
