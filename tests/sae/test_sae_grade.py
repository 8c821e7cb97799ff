"""supcomp.sae.grade on planted cases: a perfect SAE scores 1, a random one near chance."""

import numpy as np
import pytest
import torch

from supcomp.sae import World, WorldConfig
from supcomp.sae.grade import grade, hungarian, plot_matched_cosines, plot_recovery_vs_frequency
from supcomp.sae.models import SAE, SAEConfig


def _orthogonal_world(N=16, D=32, **kw):
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    return World(WorldConfig(n_features=N, d=D, p_max=0.4, p_min=0.05, bias_norm=0.3, **kw), directions=Q[:N])


def _planted(world, kind="topk"):
    N, D = world.n_features, world.config.d
    sae = SAE(SAEConfig(d=D, n=N, kind=kind, k=N, jump_init=1e-3))
    with torch.no_grad():
        sae.W_dec.copy_(world.W)
        sae.W_enc.copy_(world.W)
        sae.b_dec.copy_(world.bias.float())
        sae.b_enc.fill_(-1e-5)  # float32 round-off in x - b_dec must not fire the other latents
    return sae


@pytest.mark.parametrize("kind", ["topk", "relu", "jumprelu"])
def test_perfect_sae_scores_one(kind):
    w = _orthogonal_world()
    g = grade(_planted(w, kind), w, batches=2, batch_size=2048)
    assert g.fvu < 1e-8 and g.recovered_fraction == 1.0
    assert g.mean_precision == pytest.approx(1.0) and g.mean_recall == pytest.approx(1.0)
    assert g.mmcs_true_to_decoder == pytest.approx(1.0) and g.mmcs_decoder_to_true == pytest.approx(1.0)
    assert g.dead_fraction == 0.0 and g.split == 0
    assert torch.equal(g.matched_latent, torch.arange(16))


def test_random_sae_scores_near_chance():
    w = _orthogonal_world(N=64, D=128)
    sae = SAE(SAEConfig(d=128, n=64, k=4), seed=3)
    g = grade(sae, w, batches=1, batch_size=2048)
    assert g.recovered_fraction == 0.0
    assert g.mmcs_true_to_decoder < 0.45  # random unit vectors in 128 dims: max |cos| over 64 ~ 0.25
    assert g.mean_recall < 0.35 and g.fvu > 0.5


def test_hierarchy_absorption_counts_a_silent_parent():
    w = _orthogonal_world(N=13, D=16, roots=1, branching=3, depth=2, exclusive=False)
    sae = _planted(w)
    g = grade(sae, w, batches=1, batch_size=4096)
    assert g.absorbed == 0 and g.absorption_rate == 0.0
    with torch.no_grad():  # kill the root's latent: every child's parent latent is now silent
        sae.b_enc[0] = -100.0
    g = grade(sae, w, batches=1, batch_size=4096)
    assert g.absorbed == 3 and 0 < g.absorption_rate < 1


def test_hungarian_matches_brute_force():
    import itertools

    rng = np.random.default_rng(0)
    for shape in [(4, 4), (3, 5), (5, 3)]:
        c = rng.normal(size=shape)
        r, k = hungarian(c)
        best = (
            min(
                (sum(c[i, j] for i, j in zip(rows, perm)), None)
                for rows in [range(min(shape))]
                for perm in itertools.permutations(range(max(shape)), min(shape))
            )[0]
            if shape[0] <= shape[1]
            else min(
                sum(c[i, j] for i, j in zip(perm, range(shape[1])))
                for perm in itertools.permutations(range(shape[0]), shape[1])
            )
        )
        assert abs(c[r, k].sum() - best) < 1e-9 and len(r) == min(shape)


def test_plots_return_figures():
    w = _orthogonal_world()
    sae = _planted(w)
    g = grade(sae, w, batches=1, batch_size=1024)
    fig = plot_recovery_vs_frequency(g)
    assert fig.axes and fig.axes[0].lines
    from supcomp.utils.figures import new_figure

    fig2, ax = new_figure()
    assert plot_matched_cosines(sae, w, g, ax=ax) is fig2
