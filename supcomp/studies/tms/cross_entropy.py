"""Cross-entropy vs. squared error with one neuron and four tokens: why cross-entropy favours
polysemantic neurons ("Toy Models of Superposition", Elhage et al. 2022). Plain torch, exact expectations."""

from __future__ import annotations

import math
import time

import torch

from ...tms.analysis import binary_code_losses
from ...utils.threads import single_threaded
from .common import DEFAULT_OUT, finish

TOKENS = "ABCD"


@single_threaded
def cross_entropy(
    steps=None,
    seed=0,
    out_dir=DEFAULT_OUT,
    progress=True,
    quick=False,
    *,
    restarts=None,
    lr=None,
    weight_decay=0.01,
    verbose=True,
):
    """One neuron, four features A-D, each predicting its own token: cross-entropy vs. squared error.

    Setup (plain torch; exact expectation, no sampling): a token t in {A, B, C, D} is drawn uniformly;
    the input is the one-hot x = e_t; one ReLU neuron h = relu(w . x + c) (w in R^4, c in R); the
    outputs are z = u h + beta (u, beta in R^4). Trained (AdamW, ``weight_decay``, full batch of the 4
    tokens, ``restarts`` random inits batched) with

    * cross-entropy ``-log softmax(z)_t``, and
    * squared error ``||z - e_t||^2`` (the TMS loss with a linear read-out of the one-hot target).

    Analytic references (:func:`~supcomp.tms.analysis.binary_code_losses`): a neuron with one firing
    level on k tokens costs CE ``(3/4) ln 3 = 0.824`` (monosemantic, k=1) vs. ``ln 2 = 0.693``
    (polysemantic, k=2), and squared error 1/2 for every k. With free magnitudes the neuron can also
    fire at *different* levels on different tokens (a magnitude code): the read-out's 4 lines in h can
    then put a different token on top at each level, so CE -> 0 as the weights grow (weight decay stops
    this), while squared error stays at exactly 1/2 for any non-constant neuron (a scalar explains 1/4
    of the targets' variance 3/4 whatever it codes, the target covariance being isotropic on the
    contrasts). So cross-entropy pushes the neuron to fire on several tokens (polysemantic), squared
    error is indifferent.

    The neuron's code is read from its activations a_t = relu(w_t + c): it "fires" on t if
    a_t > 0.01 max a; the code is named by the tokens and their relative levels.

    ``progress`` is accepted for a uniform signature; these runs take seconds and show no bar.

    Defaults: 64 restarts (quick 16), lr 0.02, 4,000 steps (quick 1,500).
    """
    t0 = time.time()
    R = restarts or (16 if quick else 64)
    steps = steps if steps is not None else (1500 if quick else 4000)
    lr = lr or 0.02
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(4)
    X = torch.eye(4, dtype=torch.float64)
    res = dict(steps=steps, restarts=R, lr=lr, weight_decay=weight_decay)
    analytic = {k: binary_code_losses(k) for k in range(5)}
    res["analytic"] = analytic
    init = [
        torch.randn(R, 4, generator=g, dtype=torch.float64) * 0.5,
        torch.randn(R, generator=g, dtype=torch.float64) * 0.1 + 0.5,  # c > 0: few dead neurons
        torch.randn(R, 4, generator=g, dtype=torch.float64) * 0.5,
        torch.zeros(R, 4, dtype=torch.float64),
    ]
    lines = [
        f"TMS cross-entropy vs. squared error: one ReLU neuron, 4 one-hot tokens; {R} restarts, {steps} steps, "
        f"AdamW lr {lr:g}, wd {weight_decay:g}",
        "analytic, neuron firing at one level on k tokens: "
        + ", ".join(f"k={k}: CE {analytic[k]['ce']:.4f} MSE {analytic[k]['mse']:.3f}" for k in range(5)),
        f"  monosemantic (k=1): CE (3/4) ln 3 = {0.75 * math.log(3):.4f}; polysemantic (k=2): CE ln 2 = "
        f"{math.log(2):.4f}; MSE 1/2 for both",
        f"{'loss':<5} {'best':>8} {'median':>8} {'worst':>8}  {'codes of the restarts (fires on)':<40} "
        "best restart: activations A..D",
    ]
    for loss_name in ("ce", "mse"):
        w, c, u, beta = (t.clone().requires_grad_(True) for t in init)
        opt = torch.optim.AdamW([w, c, u, beta], lr=lr, weight_decay=weight_decay)

        def losses_fn():
            h = torch.relu(torch.einsum("tf,rf->rt", X, w) + c[:, None])  # [R, 4 tokens]
            z = h[:, :, None] * u[:, None, :] + beta[:, None, :]  # [R, t, 4 outputs]
            if loss_name == "ce":
                return torch.nn.functional.cross_entropy(z.reshape(-1, 4), targets.repeat(R), reduction="none").reshape(
                    R, 4
                ).mean(-1), h
            return ((z - X[None]) ** 2).sum(-1).mean(-1), h

        for _ in range(steps):
            opt.zero_grad()
            L, _ = losses_fn()
            L.sum().backward()
            opt.step()
        with torch.no_grad():
            L, h = losses_fn()
        fires = h > 0.01 * h.max(-1, keepdim=True).values.clamp_min(1e-12)
        k = fires.sum(-1)
        codes = []
        for r in range(R):
            on = [TOKENS[t] for t in range(4) if fires[r, t]]
            lv = h[r][fires[r]]
            distinct = len(on) > 1 and float(lv.max() / lv.min()) > 1.1
            codes.append("".join(on) + ("*" if distinct else ""))
        best = int(L.argmin())
        tally = {}
        for cd in codes:
            tally[cd] = tally.get(cd, 0) + 1
        tally_s = " ".join(f"{cd or '-'}:{v}" for cd, v in sorted(tally.items(), key=lambda kv: -kv[1]))
        acts = " ".join(f"{float(a):.2f}" for a in h[best])
        lines.append(
            f"{loss_name:<5} {float(L.min()):>8.4f} {float(L.median()):>8.4f} {float(L.max()):>8.4f}  "
            f"{tally_s:<40} {acts} ({codes[best]})"
        )
        res[loss_name] = dict(
            losses=L,
            activations=h,
            n_fires=k,
            codes=codes,
            best=best,
            w=w.detach(),
            c=c.detach(),
            u=u.detach(),
            beta=beta.detach(),
        )
    lines.append(
        "codes: the tokens the neuron fires on; * = at clearly different levels (a magnitude code); - = dead neuron"
    )
    res["binary"] = _binary_neurons(steps, targets, X)
    binary = res["binary"]
    lines.append("binary neuron (fires at one level on k tokens; read-out trained):")
    lines.append(f"{'k':>3} {'CE analytic':>12} {'CE trained':>11} {'MSE analytic':>13} {'MSE trained':>12}")
    for k in range(5):
        lines.append(
            f"{k:>3} {analytic[k]['ce']:>12.4f} {float(binary['ce'][k]):>11.4f} {analytic[k]['mse']:>13.4f} "
            f"{float(binary['mse'][k]):>12.4f}"
        )
    res["train_s"] = time.time() - t0
    from . import plots

    return finish(res, lines, plots.plot_cross_entropy, out_dir, "tms_cross_entropy.png", t0, verbose)


def _binary_neurons(steps, targets, X) -> dict:
    """The neuron fixed to fire at level 1 on a subset S of the tokens (all 16 subsets), only the read-out
    trained (Adam, lr 0.05): the mean trained loss per subset size k = 0..4, ``{"ce", "mse"} -> [5]``.
    Checks the analytic values of :func:`~supcomp.tms.analysis.binary_code_losses`."""
    subsets = [[t for t in range(4) if (mask >> t) & 1] for mask in range(16)]
    H = torch.tensor([[1.0 if t in S else 0.0 for t in range(4)] for S in subsets], dtype=torch.float64)
    sizes = torch.tensor([len(S) for S in subsets])
    binary = {}
    for loss_name in ("ce", "mse"):
        u = torch.zeros(16, 4, dtype=torch.float64, requires_grad=True)
        beta = torch.zeros(16, 4, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([u, beta], lr=0.05)

        def bl():
            z = H[:, :, None] * u[:, None, :] + beta[:, None, :]
            if loss_name == "ce":
                return (
                    torch.nn.functional.cross_entropy(z.reshape(-1, 4), targets.repeat(16), reduction="none")
                    .reshape(16, 4)
                    .mean(-1)
                )
            return ((z - X[None]) ** 2).sum(-1).mean(-1)

        for _ in range(steps):
            opt.zero_grad()
            bl().sum().backward()
            opt.step()
        with torch.no_grad():
            Lb = bl()
        binary[loss_name] = torch.tensor([float(Lb[sizes == k].mean()) for k in range(5)])
    return binary
