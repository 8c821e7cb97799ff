"""An interrupted SAE run resumed from its checkpoint gives the uninterrupted run's SAE bit for bit."""

import pytest
import torch

from supcomp.sae import SAE, SAEConfig, World, WorldConfig, train_sae


class Stop(Exception):
    pass


def _run(tmp_path, **kw):
    w = World(WorldConfig(n_features=40, d=10, p_max=0.15, p_min=0.02, seed=2))
    args = dict(steps=9, batch_size=64, lr=3e-3, log_every=3, progress=False, lr_warmup=2, lr_decay_from=0.5)
    args.update(kw)
    return w, args


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_resume_is_bitwise(tmp_path, one_thread):
    cfg = SAEConfig(d=10, n=40, k=3, k_aux=8, dead_tokens=128)
    w, args = _run(tmp_path)
    full = train_sae(w, cfg, **args)

    def stop_at_6(step, loss, metrics):
        if step == 6:
            raise Stop  # the checkpoint of step 3 is the last one written

    with pytest.raises(Stop):
        train_sae(w, cfg, checkpoint=str(tmp_path / "ck"), callback=stop_at_6, **args)
    assert SAE.load(str(tmp_path / "ck")).training_state["step"] == 3
    resumed = train_sae(w, resume_from=str(tmp_path / "ck"), checkpoint=str(tmp_path / "ck"), **args)
    for name, t in full.state_dict().items():
        assert torch.equal(t, resumed.state_dict()[name]), name
    assert [h[0] for h in resumed.history] == [h[0] for h in full.history] == [0, 3, 6, 8]
    assert resumed.history[-1][1] == full.history[-1][1]
    with pytest.raises(ValueError, match="resume_from: saved with"):
        train_sae(w, resume_from=str(tmp_path / "ck"), **{**args, "lr": 1e-3})
    with pytest.raises(ValueError, match="exactly one"):
        train_sae(w, cfg, resume_from=str(tmp_path / "ck"), **args)
