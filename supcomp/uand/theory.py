"""Predicted error of the U-AND read-out ("Mathematical Models of Computation in Superposition", Hänni, Mendel & Vaintrob 2024).

Set-up: a gate of ``fan_in = k`` inputs, an input vector with exactly ``s``
distinct active inputs, of which ``on`` belong to the gate. C has iid
Bernoulli(p) entries, the bias is -(k - 1), and the estimate is the mean
activation over the c = |∩ S_i| neurons fed by every gate input.

For a neuron n in the read-out set, the ``r = s - on`` active inputs outside the
gate feed it independently with probability p (C's entries are independent, and
membership in the set only fixes the gate's own columns), so with
H ~ Bin(r, p):

    a_n = relu(on + H - (k - 1)),   error = mean_n a_n - [on == k]

* **Mean error, exact** (any d, given c >= 1): E[(on + H - k + 1)^+] - [on == k].
  For k = 2 this is (s - 2) p when both inputs are on, (s - 1) p when one is on
  (the paper's formulas, exact), and s p - 1 + (1 - p)^s when none is
  on, whose leading term C(s, 2) p^2 is the post's "quadruple intersection"
  term (that closed form is the approximation; ``mean_approx``).
* **Spread, exact**: the a_n of distinct neurons are iid given c, so
  Var(estimate) = Var(a_n) E[1/c | c >= 1] with c ~ Bin(d, p^k). With ``d``
  given, E[1/c | c >= 1] is summed exactly over the binomial pmf (``std``);
  ``std_approx`` uses 1/(d p^k). These are spreads over random constructions
  and inputs; one fixed C and gate has its own (random) bias around the mean.
* Not covered: inputs in superposition (``input_embedding``) add interference
  of order sqrt(p m s / d0) per neuron that these formulas leave out; the
  targeted-subset construction has a different (non-iid) C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _binom_pmf(n: int, q: float):
    """pmf of Bin(n, q) as a list (log-space, stable for large n)."""
    if q >= 1.0:
        return [0.0] * n + [1.0]
    if q <= 0.0:
        return [1.0] + [0.0] * n
    lq, l1q = math.log(q), math.log1p(-q)
    return [
        math.exp(math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1) + c * lq + (n - c) * l1q)
        for c in range(n + 1)
    ]


def inv_count_mean(d: int, q: float) -> float:
    """E[1/c | c >= 1] for c ~ Bin(d, q): the mean inverse size of a non-empty read-out set."""
    pmf = _binom_pmf(d, q)
    nz = 1.0 - pmf[0]
    if nz <= 0:
        return math.inf
    return sum(pmf[c] / c for c in range(1, d + 1)) / nz


@dataclass
class UAndTheory:
    """Predicted error of one AND estimate, keyed by ``on`` = number of the gate's inputs that are active.

    Attributes (dicts over ``on`` in 0..fan_in, only where ``on <= s``):
        mean: exact expected error (estimate - AND).
        var_neuron: exact variance of one neuron's activation in the read-out set.
        std: exact standard deviation of the estimate's error (needs ``d``; else None).
        mean_approx: the closed forms of the post: (s - k) p, (s - k + 1) p, C(s - on, k - on) p^(k - on).
        std_approx: sqrt(var_neuron / (d p^k)) (needs ``d``; else None).
    """

    p: float
    s: int
    fan_in: int
    d: int | None
    mean: dict = field(default_factory=dict)
    var_neuron: dict = field(default_factory=dict)
    std: dict | None = None
    mean_approx: dict = field(default_factory=dict)
    std_approx: dict | None = None

    def case(self, name: str) -> int:
        """'both' / 'one' / 'none' (fan-in 2 names; 'all' = every input on) -> the ``on`` key.

        Raises:
            KeyError: an unknown name (or 'both' for a fan-in other than 2).
        """
        table = {"all": self.fan_in, "both": 2, "one": self.fan_in - 1, "none": 0}
        if name not in table or (name == "both" and self.fan_in != 2):
            raise KeyError(f"case: expected one of 'all', 'one', 'none' (and 'both' for fan_in 2), got {name!r}")
        return table[name]


def theory(p: float, s: int, fan_in: int = 2, d: int | None = None) -> UAndTheory:
    """Predicted mean error and spread of U-AND estimates with ``s`` active inputs.

    Args:
        p: connection probability, in (0, 1].
        s: number of active inputs (distinct), >= 0.
        fan_in: gate size k >= 2 (bias -(k - 1)).
        d: number of neurons; needed for the spread (``std``, ``std_approx``).

    Returns:
        UAndTheory (``mean[on]``, ``std[on]``, ...). For fan-in 2: ``mean[2]`` = both on
        = (s - 2) p, ``mean[1]`` = one on = (s - 1) p, ``mean[0]`` = none on = s p - 1 + (1 - p)^s.

    Raises:
        ValueError: ``p`` outside (0, 1], ``s < 0``, ``fan_in < 2`` or ``d < 1`` (naming the argument).
    """
    check_p(p)
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
        raise ValueError(f"s: expected a non-negative int (number of active inputs), got {s!r}")
    check_fan_in(fan_in)
    if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
        raise ValueError(f"d: expected a positive int (number of neurons) or None, got {d!r}")
    k = fan_in
    out = UAndTheory(p=p, s=s, fan_in=k, d=d)
    einv = inv_count_mean(d, p**k) if d is not None else None
    if d is not None:
        out.std, out.std_approx = {}, {}
    for on in range(0, min(k, s) + 1):
        r = s - on
        pmf = _binom_pmf(r, p)
        act = [max(0, on + h - (k - 1)) for h in range(r + 1)]
        m1 = sum(w * x for w, x in zip(pmf, act))
        m2 = sum(w * x * x for w, x in zip(pmf, act))
        out.mean[on] = m1 - (1.0 if on == k else 0.0)
        out.var_neuron[on] = max(0.0, m2 - m1 * m1)
        need = k - on  # other active inputs a neuron needs to fire (beyond the first one when on == k)
        out.mean_approx[on] = r * p if on >= k - 1 else math.comb(r, need) * p**need
        if d is not None:
            out.std[on] = math.sqrt(out.var_neuron[on] * einv)
            out.std_approx[on] = math.sqrt(out.var_neuron[on] / (d * p**k))
    return out


def suggest_p(n_neurons: int, fan_in: int = 2, overlap: float = 20.0) -> float:
    """p with an expected read-out set size d p^k = ``overlap`` (the paper suggests d p^2 >~ 10-20), capped at 1.

    This is the finite-size rule p ~ d^(-1/k); the asymptotic p = log^2(m) / d^(1/k) is above 1 at
    practical sizes.

    Raises:
        ValueError: ``n_neurons < 1``, ``fan_in < 2`` or ``overlap <= 0``.
    """
    check_fan_in(fan_in)
    if isinstance(n_neurons, bool) or not isinstance(n_neurons, int) or n_neurons < 1:
        raise ValueError(f"n_neurons: expected a positive int, got {n_neurons!r}")
    if not (overlap > 0):
        raise ValueError(f"overlap: expected a positive expected set size, got {overlap!r}")
    return min(1.0, (overlap / n_neurons) ** (1.0 / fan_in))


def check_p(p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 < float(p) <= 1.0):
        raise ValueError(f"p: expected a connection probability in (0, 1], got {p!r}")


def check_fan_in(fan_in):
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 2:
        raise ValueError(f"fan_in: expected an int >= 2 (inputs per AND gate), got {fan_in!r}")
