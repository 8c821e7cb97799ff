"""measure_interference: the z = 1 exact cases and the measured errors against the formulas."""

from __future__ import annotations

import pytest
import torch

from supcomp.circuits import CircuitSet, compress, measure_interference


def _close(meas, se, pred, rel):
    """Within 4 standard errors plus a relative model tolerance."""
    return bool(((meas - pred).abs() <= 4 * se + rel * pred.abs() + 1e-12).all())


@pytest.fixture(scope="module")
def rot():
    cs = CircuitSet.rotations(500, 2, seed=0)
    return cs, compress(cs, 800, 5)  # M = 200, S = 5, overlap-1 (capacity 519)


@pytest.fixture(scope="module")
def relu():
    cs = CircuitSet.random(300, 2, 3, seed=0)
    return cs, compress(cs, 600, 5, assignment="random")  # M = 120


def test_z1_interference_vanishes_and_error_is_the_constructions(rot):
    cs, net = rot
    r = measure_interference(net, cs, 1, 250, seed=1)
    assert float(r["read_in"].abs().max()) < 1e-10 and float(r["read_out"].abs().max()) < 1e-10
    torch.testing.assert_close(r["total"], r["alone"])
    p = r["predicted"]["alone"]
    assert float(r["total"][0]) < 1e-10  # the read-in alone is exact
    # layer 1: the weight-sharing error eta, then a bound at depth (coherent accumulation over-estimates)
    assert _close(r["total"][1], r["total_se"][1], p[1], 0.1), (r["total"], p)
    assert bool((r["total"][1:] <= 1.3 * p[1:] + 4 * r["total_se"][1:]).all()), (r["total"], p)
    assert bool((r["total"][1:] >= 0.5 * p[1:]).all()), (r["total"], p)
    # and the output is the small circuits' within that error
    act, x = cs.sample(64, 1, seed=5)
    err = ((net(x, act) - cs.run(x, act)[-1]) ** 2).mean()
    assert 0 < float(err) < 2 * float(p[-1])


@pytest.mark.parametrize("which", ["rot", "relu"])
def test_interference_matches_formulas(which, request):
    cs, net = request.getfixturevalue(which)
    r = measure_interference(net, cs, 3, 250, seed=2)
    pred = r["predicted"]
    assert _close(r["read_out"], r["read_out_se"], pred["read_out"], 0.05), (r["read_out"], pred["read_out"])
    assert _close(r["read_in"], r["read_in_se"], pred["read_in"], 0.05), (r["read_in"], pred["read_in"])
    assert _close(r["alone"][1], r["alone_se"][1], pred["alone"][1], 0.1)
    assert _close(r["total"][1], r["total_se"][1], pred["total"][1], 0.15), (r["total"], pred["total"])
    # the closed forms ((z-1) const / M and the T / M^2 routing term) agree to the large-T approximation
    for key in ("read_out", "read_in"):
        closed, meas = pred[key + "_closed"][1:], r[key][1:]
        assert bool(((closed - meas).abs() <= 0.25 * meas + 4 * r[key + "_se"][1:]).all()), (key, closed, meas)
    # the interference is real: more active circuits, more error
    assert float(r["read_out"].min()) > 0 and float(r["read_in"][1:].min()) > 0
    assert bool((r["total"] > r["alone"]).all())


def test_measure_interference_rejects_bad_arguments(rot):
    cs, net = rot
    with pytest.raises(ValueError, match="z"):
        measure_interference(net, cs, 0, 10)
    with pytest.raises(ValueError, match="n_samples"):
        measure_interference(net, cs, 2, 1)
    with pytest.raises(ValueError, match="circuits"):
        measure_interference(net, CircuitSet.rotations(500, 3), 2, 10)
    with pytest.raises(TypeError, match="net"):
        measure_interference(cs, cs, 2, 10)
