"""``measure_interference``: the errors of a superposed network, layer by layer, against theory.

Notation: circuit t active among z (drawn uniformly, distinct), ``h_l`` the
circuit's exact state at layer l (``CircuitSet.run``), ``g_l = W_l h_{l-1} + b_l``
its exact pre-activation, ``read_l(a)`` the read-out of an activation or
pre-activation vector of layer l (mean over the S hosts, minus the offset c),
``embed_l(h)`` the ideal activation vector of layer l that holds the given
states of the given circuits (``SuperposedNetwork.embed``). All MSEs average
over samples, active slots and the d coordinates.

Measured, per layer l = 0..L (tensors ``[L + 1]``):

* ``total[l]``: ``(read_l(a_l) - h_l)^2`` with ``a_l`` the actual activations of
  the large network running all z circuits: the end-to-end error against the
  circuits run alone.
* ``read_out[l]``: ``(read_l(embed_l(h_l of all z)) - h_l)^2``: the error of
  reading a circuit out of a *perfect* layer, caused by the other active
  circuits' values on the shared hosts. Exactly 0 for z = 1.
* ``read_in[l]`` (l >= 1; ``read_in[0] = 0``): ``(read_l(pre_l(embed_{l-1}(all z)))
  - read_l(pre_l(embed_{l-1}(t alone))))^2``: the error in the hosted small
  neurons' pre-activations (averaged over their S hosts) caused by the other
  active circuits, with a perfect previous layer. Exactly 0 for z = 1.
* ``alone[l]``: ``total`` with every circuit run by itself (z = 1): the
  construction's own error, from all T circuits' weights sharing the large
  weight matrix (a circuit v that shares an input and an output host with t
  routes t's state through v's weights). Independent of z.

Predicted (``predicted[key]``, same shapes), from the assignment's overlap
counts ``P[t, u] = |A_l[t] & A_l[u]|`` (layer l's assignment, diagonal S) and
``Q`` (layer l-1's), and moments of the exact states:

* ``read_out = ((z-1) k1 E[h^2] + (z-1)(z-2) k2 E[h]^2) / S^2`` with ``k1`` the mean of
  ``P[t,u]^2`` and ``k2`` of ``P[t,u] P[t,u']`` over distinct t, u, u'. For overlap-1
  ``k1 ~ S^2 / M``: ``read_out ~ (z-1) E[h^2] / M`` -- the ``(z-1) const / (D/d)`` of the
  2025 post, with ``M = D / (d + 2)`` (its D/d counts the indicator neurons in d). For the
  random assignment the shared count is hypergeometric, ``k1 ~ S^2/M + S^4/M^2``:
  ``read_out ~ (z-1) E[h^2] (1/M + S^2/M^2)`` -- the "Circuits in Superposition" paper's ``(z-1) d sigma^2 / D`` plus the
  multi-collision term that the overlap-1 construction removes.
* ``read_in = (z-1) / S^4 [ S^2 k1 E[g^2] + (G - S^2 k1) sigma^2 ]``, ``G`` the mean over
  t != u of ``sum_v P[t,v]^2 Q[v,u]^2`` and ``sigma^2 = E_v[tr(W_v E[h h^T] W_v^T) + |b_v|^2] / d``
  (circuit v's weights applied to another circuit's state). Terms: v = u is the other
  circuit's own pre-activation on shared output hosts, v = t is t's weights applied to the
  other circuit's value on shared input hosts, any other v (active or not) routes the other
  circuit's state from a shared input host to a shared output host. For overlap-1
  ``G ~ 2 S^4 / M + T S^4 / M^2``: ``read_in ~ (z-1) sigma^2 (2/M + T/M^2)``; the T / M^2 part,
  which the (z-1)/M scaling leaves out, dominates once T > 2 M (random assignment: the same with
  each ``1/M`` factor raised by its multi-collision term, ``1/M + S^2/M^2``).
* ``read_out_closed``, ``read_in_closed``: the same with the overlap counts replaced by their
  large-T values, ``k1 / S^2 -> kappa`` = ``1/M`` (overlap-1) or ``1/M + S^2/M^2`` (random), ``k2 / S^2
  -> kappa^2``, ``G / S^4 -> 2 kappa + T kappa^2``: ``read_out ~ (z-1) kappa E[h^2]``, ``read_in ~ (z-1)
  (kappa E[g^2] + (kappa + T kappa^2) sigma^2)`` (plus ``(z-1)(z-2) kappa^2 E[h]^2`` in read_out).
* ``alone``: per layer ``eta = phi sigma^2 sum_t sum_{v != t} P[t,v]^2 Q[v,t]^2 / (T S^4)``
  (``phi`` the fraction of pre-activations ``g > 0``: the ReLU passes errors only there;
  1 for linear circuits), accumulated as ``alone_l = rho_l alone_{l-1} + eta_l`` with
  ``rho_l = E[sum_i [g_i > 0] |W_{t,l,i,:}|^2] / d`` (an isotropic error through the circuit)
  -- or, *our choice*, coherently in amplitude (``sqrt`` adds) when every circuit has the
  same weights at every layer (rotations): the same v's then push the error the same way
  each layer and it grows ~ l^2.
* ``total = alone + cross`` with ``cross_0 = read_out_0`` and ``cross_l = rho_l cross_{l-1}
  + phi (read_in_l - (z-1) k1(Q) sigma^2 / S^2)`` (the v = t part of read_in is the
  previous read-out error propagated, already in ``cross_{l-1}``).

Gaps (our choices, documented): the sources' exact formulas were not available;
these are our derivations. They neglect cross terms between different routes,
which vanish for zero-mean states and weights (rotations, random signs) but not
for ReLU circuits' non-negative states (there ``read_in`` and ``total`` are
estimates); they assume every active host stays in the ReLU's linear range and
every inactive one is silenced (true while the interference stays below 1).
"""

from __future__ import annotations

import math

import torch

from . import assign
from .circuitset import CircuitSet
from .network import SuperposedNetwork


def _overlap_stats(A: torch.Tensor, M: int):
    O = assign.overlaps(A.cpu(), M)
    T = O.shape[0]
    S = float(O[0, 0])
    off = O - torch.diag(torch.diag(O))
    k1 = float((off**2).sum()) / max(1, T * (T - 1))
    rs = off.sum(1)
    k2 = float((rs**2 - (off**2).sum(1)).sum()) / max(1, T * (T - 1) * (T - 2))
    return O, S, k1, k2


def _route_stats(P: torch.Tensor, Q: torch.Tensor, S: float):
    """G = mean_{t != u} sum_v P[t,v]^2 Q[v,u]^2 and the self sum mean_t sum_{v != t} P[t,v]^2 Q[v,t]^2."""
    T = P.shape[0]
    P2, Q2 = P**2, Q**2
    same = float((P2 * Q2.T).sum())  # t = u terms, v = t included
    G = (float((P2.sum(0) * Q2.sum(1)).sum()) - same) / max(1, T * (T - 1))
    self_ = (same - T * S**4) / T
    return G, self_


def measure_interference(
    net: SuperposedNetwork, circuits: CircuitSet, z: int, n_samples: int, seed: int = 0, batch_size: int = 256
) -> dict:
    """Measure the read-in, read-out, total and z = 1 errors of ``net`` at every layer; compare with theory.

    Args:
        net: a network built by ``compress(circuits, ...)``.
        circuits: the small circuits it holds.
        z: number of active circuits per sample (1 <= z <= T).
        n_samples: number of samples (active sets and unit-norm inputs, ``CircuitSet.sample``).
        seed: seeds the samples.
        batch_size: samples per forward pass (memory only).

    Returns:
        dict of float64 tensors ``[L + 1]`` (index = layer, 0 = read-in): ``total``, ``read_out``,
        ``read_in``, ``alone`` (measured MSEs), ``*_se`` (their standard errors over samples), and
        ``predicted``: a dict with the same four keys plus ``read_out_closed`` / ``read_in_closed``
        (closed-form scalings). Definitions in the module docstring.

    Raises:
        TypeError: ``net`` is not a SuperposedNetwork or ``circuits`` not a CircuitSet.
        ValueError: ``circuits`` is not the set ``net`` was built from (sizes differ), ``n_samples < 2``,
            or ``z`` outside ``[1, T]``.
    """
    if not isinstance(net, SuperposedNetwork):
        raise TypeError(f"net: expected a SuperposedNetwork, got {type(net).__name__}")
    if not isinstance(circuits, CircuitSet):
        raise TypeError(f"circuits: expected a CircuitSet, got {type(circuits).__name__}")
    if (circuits.T, circuits.L, circuits.d) != (net.T, net.L, net.d):
        raise ValueError(
            f"circuits: T, L, d = {(circuits.T, circuits.L, circuits.d)} do not match net's {(net.T, net.L, net.d)}"
        )
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples: expected an int >= 2, got {n_samples!r}")
    if not isinstance(z, int) or not 1 <= z <= net.T:
        raise ValueError(f"z: expected an int in [1, T={net.T}], got {z!r}")
    L, d = net.L, net.d
    dt, dev = net.weight.dtype, net.weight.device
    circ = circuits.to(device=dev, dtype=dt)
    active_all, x_all = circuits.sample(n_samples, z, seed=seed, dtype=dt)
    keys = ("total", "read_out", "read_in", "alone")
    per_sample = {k: [] for k in keys}  # [n, L+1] per-sample MSEs, for standard errors
    h2, h1, hh, g2, gpos, rho_num = [], [], [], [], [], []
    with torch.no_grad():
        for s0 in range(0, n_samples, batch_size):
            act = active_all[s0 : s0 + batch_size].to(dev)
            x = x_all[s0 : s0 + batch_size].to(dev)
            B = act.shape[0]
            h = circ.run(x, act)  # [L+1, B, z, d]
            # each slot alone: row (b, j) keeps only slot j
            eye = torch.eye(z, dtype=torch.bool, device=dev)
            act1 = torch.where(eye[None], act[:, None, :], torch.full((), -1, device=dev)).reshape(B * z, z)
            x1 = x[:, None].expand(B, z, z, d).reshape(B * z, z, d)
            a = net.activations(x, act)
            a1 = net.activations(x1, act1)
            rows = {k: [] for k in keys}
            for l in range(L + 1):
                hl = h[l]
                rows["total"].append(((net.read(a[l], act, l) - hl) ** 2).mean((1, 2)))
                r1 = net.read(a1[l], act1, l).reshape(B, z, z, d).diagonal(0, 1, 2).transpose(1, 2)
                rows["alone"].append(((r1 - hl) ** 2).mean((1, 2)))
                rows["read_out"].append(((net.read(net.embed(hl, act, l), act, l) - hl) ** 2).mean((1, 2)))
                if l == 0:
                    rows["read_in"].append(torch.zeros(B, dtype=torch.float64, device=dev))
                else:
                    prev = h[l - 1]
                    p_all = net.read(net.preactivation(net.embed(prev, act, l - 1), l), act, l)
                    prev1 = prev[:, None].expand(B, z, z, d).reshape(B * z, z, d)
                    p1 = net.read(net.preactivation(net.embed(prev1, act1, l - 1), l), act1, l)
                    p1 = p1.reshape(B, z, z, d).diagonal(0, 1, 2).transpose(1, 2)
                    rows["read_in"].append(((p_all - p1) ** 2).mean((1, 2)))
            for k in keys:
                per_sample[k].append(torch.stack(rows[k], 1).double().cpu())
            # moments of the exact states and pre-activations, per layer
            hd = h.double().cpu()
            h2.append((hd**2).sum((1, 2, 3)))
            h1.append(hd.sum((1, 2)))  # [L+1, d]
            hh.append(torch.einsum("lbzi,lbzj->lij", hd, hd))
            Wt = circ.weights.double().cpu()[act.cpu()]  # [B, z, L, d, d]
            bt = circ.biases.double().cpu()[act.cpu()]
            g = torch.einsum("bzlij,lbzj->lbzi", Wt, hd[:-1]) + bt.permute(2, 0, 1, 3)  # [L, B, z, d]
            g2.append((g**2).sum((1, 2, 3)))
            pos = (g > 0) if circuits.activation == "relu" else torch.ones_like(g, dtype=torch.bool)
            gpos.append(pos.double().sum((1, 2, 3)))
            rho_num.append(torch.einsum("lbzi,bzlij->l", pos.double(), Wt**2))
    out = {}
    for k in keys:
        ps = torch.cat(per_sample[k])  # [n, L+1]
        out[k] = ps.mean(0)
        out[k + "_se"] = ps.std(0) / math.sqrt(ps.shape[0])
    cnt = n_samples * z  # slots
    m2 = torch.stack(h2).sum(0) / (cnt * d)  # [L+1]
    mu2 = ((torch.stack(h1).sum(0) / cnt) ** 2).mean(-1)  # [L+1]
    Sig = torch.stack(hh).sum(0) / cnt  # [L+1, d, d]
    Eg2 = torch.stack(g2).sum(0) / (cnt * d)  # [L]
    phi = torch.stack(gpos).sum(0) / (cnt * d)  # [L]
    rho = torch.stack(rho_num).sum(0) / (cnt * d)  # [L]
    W64, b64 = circuits.weights.double().cpu(), circuits.biases.double().cpu()
    # sigma^2_l = E_v[tr(W_v Sigma_{l-1} W_v^T) + |b_v|^2] / d
    sigma2 = torch.stack(
        [
            (torch.einsum("vij,jk,vik->", W64[:, l], Sig[l], W64[:, l]) + (b64[:, l] ** 2).sum()) / (circuits.T * d)
            for l in range(L)
        ]
    )
    O0, S, k1_0, k2_0 = _overlap_stats(net.assignments[0], net.M)
    O1, _, k1_1, k2_1 = _overlap_stats(net.assignments[1], net.M)
    k1, k2 = (k1_0, k1_1), (k2_0, k2_1)
    G = {}
    for p in (0, 1):  # output parity p: P = O_p, Q = O_{1-p}
        G[p] = _route_stats((O0, O1)[p], (O0, O1)[1 - p], S)
    pred = {k: torch.zeros(L + 1, dtype=torch.float64) for k in keys}
    for l in range(L + 1):
        p = l % 2
        pred["read_out"][l] = ((z - 1) * k1[p] * m2[l] + (z - 1) * (z - 2) * k2[p] * mu2[l]) / S**2
    coherent = circuits.activation == "linear" and bool((W64 == W64[:, :1]).all()) and bool((b64 == 0).all())
    cross = pred["read_out"][0].item()
    alone = 0.0
    for l in range(1, L + 1):
        p = l % 2
        Gl, self_l = G[p]
        s2 = sigma2[l - 1].item()
        pred["read_in"][l] = (z - 1) / S**4 * (S**2 * k1[p] * Eg2[l - 1].item() + (Gl - S**2 * k1[p]) * s2)
        eta = phi[l - 1].item() * s2 * self_l / S**4
        r = rho[l - 1].item()
        alone = (math.sqrt(r * alone) + math.sqrt(eta)) ** 2 if coherent else r * alone + eta
        own = (z - 1) * k1[1 - p] * s2 / S**2
        cross = r * cross + phi[l - 1].item() * max(0.0, pred["read_in"][l].item() - own)
        pred["alone"][l] = alone
        pred["total"][l] = alone + cross
    pred["total"][0] = pred["read_out"][0]
    # closed forms: overlap counts replaced by their large-T values, k1 / S^2 -> kappa
    M = net.M
    kappa = 1.0 / M if net.assignment == "overlap1" else 1.0 / M + S**2 / M**2
    pred["read_out_closed"] = (z - 1) * kappa * m2 + (z - 1) * (z - 2) * kappa**2 * mu2
    closed_in = torch.zeros(L + 1, dtype=torch.float64)
    for l in range(1, L + 1):
        closed_in[l] = (z - 1) * (kappa * Eg2[l - 1] + (kappa + circuits.T * kappa**2) * sigma2[l - 1])
    pred["read_in_closed"] = closed_in
    out["predicted"] = pred
    return out
