"""``CircuitSet``: T small L-layer MLPs of width d, each with its own weights.

Circuit t maps its input ``h_0 = x`` (``[d]``) through L layers::

    h_l = act(W[t, l-1] @ h_{l-1} + b[t, l-1])      l = 1..L

with ``act`` = ReLU (``activation="relu"``, an ordinary MLP) or the identity
(``activation="linear"``, e.g. the 2-D rotation circuits of Linsefors &
Bushnaq 2025). The superposed network of :func:`supcomp.circuits.compress`
computes the same ``h_l`` approximately for any few active circuits at once.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = ("relu", "linear")


class CircuitSet:
    """T small circuits: ``weights [T, L, d, d]`` (out x in), ``biases [T, L, d]``, one ``activation``.

    Args:
        weights: ``[T, L, d, d]`` float; ``weights[t, l]`` maps layer l's input to its output.
        biases: ``[T, L, d]`` float, or None for zeros.
        activation: ``"relu"`` or ``"linear"`` (no nonlinearity; the superposed network then keeps
            the states shifted by +1 so that they stay in the ReLU's linear range, see ``compress``).

    Raises:
        TypeError: ``weights`` or ``biases`` is not a tensor, or not floating (or their dtypes differ).
        ValueError: wrong shapes, an empty size, NaN or inf entries, or an unknown ``activation``.
    """

    def __init__(self, weights: torch.Tensor, biases: torch.Tensor | None = None, activation: str = "relu"):
        if not isinstance(weights, torch.Tensor):
            raise TypeError(f"weights: expected a torch.Tensor, got {type(weights).__name__}")
        if not weights.is_floating_point():
            raise TypeError(f"weights: expected a floating dtype, got {weights.dtype}")
        if weights.dim() != 4 or weights.shape[2] != weights.shape[3]:
            raise ValueError(f"weights: expected shape [T, L, d, d], got {list(weights.shape)}")
        T, L, d, _ = weights.shape
        if T < 1 or L < 1 or d < 1:
            raise ValueError(f"weights: T, L and d must be positive, got shape {list(weights.shape)}")
        if biases is None:
            biases = weights.new_zeros(T, L, d)
        if not isinstance(biases, torch.Tensor):
            raise TypeError(f"biases: expected a torch.Tensor or None, got {type(biases).__name__}")
        if tuple(biases.shape) != (T, L, d):
            raise ValueError(f"biases: expected shape [{T}, {L}, {d}] to match weights, got {list(biases.shape)}")
        if biases.dtype != weights.dtype or biases.device != weights.device:
            raise TypeError(
                f"biases: dtype/device {biases.dtype}/{biases.device} does not match weights "
                f"{weights.dtype}/{weights.device}"
            )
        if not (torch.isfinite(weights).all() and torch.isfinite(biases).all()):
            raise ValueError("weights / biases: NaN or inf entries are not allowed")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        self.weights, self.biases, self.activation = weights, biases, activation

    T = property(lambda self: self.weights.shape[0], doc="number of circuits")
    L = property(lambda self: self.weights.shape[1], doc="number of layers")
    d = property(lambda self: self.weights.shape[2], doc="width of each circuit")

    def __repr__(self):
        return f"CircuitSet(T={self.T}, L={self.L}, d={self.d}, activation={self.activation!r})"

    def to(self, *args, **kwargs) -> CircuitSet:
        """A copy with weights and biases moved / cast like ``Tensor.to``."""
        return CircuitSet(self.weights.to(*args, **kwargs), self.biases.to(*args, **kwargs), self.activation)

    @staticmethod
    def random(T: int, L: int, d: int, seed: int = 0, bias_scale: float = 0.1, dtype=torch.float32) -> CircuitSet:
        """T random ReLU MLPs: ``W ~ N(0, 2/d)`` (He scale, so ``|h|`` stays of order ``|x|``),
        ``b ~ N(0, bias_scale^2)``; weights ``[T, L, d, d]``, biases ``[T, L, d]``."""
        _check_sizes(T=T, L=L, d=d)
        g = torch.Generator().manual_seed(int(seed))
        W = torch.randn(T, L, d, d, generator=g, dtype=torch.float64) * math.sqrt(2.0 / d)
        b = torch.randn(T, L, d, generator=g, dtype=torch.float64) * float(bias_scale)
        return CircuitSet(W.to(dtype), b.to(dtype), "relu")

    @staticmethod
    def rotations(T: int, L: int, seed: int = 0, dtype=torch.float32) -> CircuitSet:
        """T 2-D rotation circuits (Linsefors & Bushnaq 2025): circuit t rotates its state by one
        angle ``theta_t ~ U[0, 2 pi)`` at every layer; linear, no bias, d = 2."""
        _check_sizes(T=T, L=L)
        g = torch.Generator().manual_seed(int(seed))
        theta = torch.rand(T, generator=g, dtype=torch.float64) * 2 * math.pi
        c, s = torch.cos(theta), torch.sin(theta)
        r = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [T, 2, 2]
        return CircuitSet(r[:, None].expand(T, L, 2, 2).contiguous().to(dtype), None, "linear")

    def run(self, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Run the active circuits alone (exactly): x ``[B, z, d]``, active ``[B, z]`` ids (-1 = padding)
        -> states ``[L + 1, B, z, d]`` (layer 0 is x; padded slots are 0). ``x`` is a float tensor, ``active``
        int64 or int32; the states have the circuits' dtype.

        Raises:
            TypeError: ``x`` is not a float tensor or ``active`` not an integer tensor.
            ValueError: shapes that do not match, or NaN/inf inputs.
            IndexError: a circuit id outside ``[-1, T)``.
        """
        active = check_active(active, self.T, "active")
        x = check_inputs(x, active, self.d, "x")
        valid = (active >= 0).unsqueeze(-1)
        ids = active.clamp(min=0)
        W = self.weights.to(x.dtype)[ids]  # [B, z, L, d, d]
        b = self.biases.to(x.dtype)[ids]
        h = torch.where(valid, x, torch.zeros((), dtype=x.dtype))
        out = [h]
        for l in range(self.L):
            h = torch.einsum("bzij,bzj->bzi", W[:, :, l], h) + b[:, :, l]
            if self.activation == "relu":
                h = torch.relu(h)
            h = torch.where(valid, h, torch.zeros((), dtype=x.dtype))
            out.append(h)
        return torch.stack(out)

    def sample(self, n: int, z: int, seed: int = 0, dtype=torch.float32):
        """Random active sets and inputs: ``(active [n, z]`` distinct ids uniform over the T circuits,
        ``x [n, z, d]`` uniform on the unit sphere) -- unit norm keeps every rotation state in [-1, 1].

        ``active`` is int64, ``x`` has ``dtype``.

        Raises:
            ValueError: ``n < 1`` or ``z`` outside ``[1, T]``.
        """
        _check_sizes(n=n)
        if not isinstance(z, int) or z < 1 or z > self.T:
            raise ValueError(f"z: expected an int in [1, T={self.T}], got {z!r}")
        g = torch.Generator().manual_seed(int(seed))
        if z * 8 < self.T:  # rejection of rows with a repeated id: cheap when z << T
            active = torch.randint(0, self.T, (n, z), generator=g)
            while True:
                s = active.sort(-1).values
                bad = (s[:, 1:] == s[:, :-1]).any(-1)
                if not bad.any():
                    break
                active[bad] = torch.randint(0, self.T, (int(bad.sum()), z), generator=g)
        else:
            active = torch.rand(n, self.T, generator=g).argsort(-1)[:, :z]
        x = torch.randn(n, z, self.d, generator=g, dtype=torch.float64)
        x = x / x.norm(dim=-1, keepdim=True)
        return active, x.to(dtype)


def _check_sizes(**sizes):
    for name, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")


def check_active(active, T: int, name: str = "active") -> torch.Tensor:
    """active ``[B, z]`` int ids in [-1, T) (-1 = padding) -> int64."""
    if not isinstance(active, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of circuit ids, got {type(active).__name__}")
    if active.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected int64 or int32 circuit ids, got {active.dtype}")
    if active.dim() != 2:
        raise ValueError(f"{name}: expected shape [B, z], got {list(active.shape)}")
    if active.numel() and (bool((active < -1).any()) or bool((active >= T).any())):
        bad = active[(active < -1) | (active >= T)][0].item()
        raise IndexError(f"{name}: circuit id {bad} is out of range: expected -1 (padding) or 0 <= id < T={T}")
    return active.long()


def check_inputs(x, active: torch.Tensor, d: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
    want = (*active.shape, d)
    if tuple(x.shape) != want:
        raise ValueError(f"{name}: expected shape [B, z, d] = {list(want)} to match active, got {list(x.shape)}")
    if x.device != active.device:
        raise ValueError(f"{name}: on device {x.device} but active is on {active.device}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: NaN or inf inputs are not allowed")
    return x
