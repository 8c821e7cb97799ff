"""Toy models of superposition, training level: train() (fused and reference, CPU and the device-sampler
branch), the model's save / load, the config's validation. The fused step itself is tested in
tests/ops/test_tms_step.py, the samplers in tests/ops/test_tms_sample.py."""

import importlib

import pytest
import torch
from utils import small_tms_config as small_config

from supcomp.tms import BatchSampler, ToyModel, ToyModelConfig, train
from supcomp.tms.train import FusedAdamW, fused_sampled_adamw_step


def test_train_fused_on_cpu_equals_its_step_loop():
    """train(backend="fused") on CPU is the loop of fused_sampled_adamw_step (same init, batches, update)."""
    cfg = small_config("relu_hidden")
    got = train(cfg, steps=6, batch_size=33, seed=4, progress=False, lr=1e-2)
    model = ToyModel(cfg, seed=4)
    sampler, opt = BatchSampler(cfg, 33, seed=4), FusedAdamW(model, lr=1e-2)
    losses = [fused_sampled_adamw_step(model, sampler, k, opt) for k in range(6)]
    assert torch.equal(got.W, model.W) and torch.equal(got.b, model.b)
    assert torch.equal(got.loss_history, torch.stack(losses))
    # and the dynamics experiment's loop, which also keeps snapshots of W
    from supcomp.tms.analysis import train_with_snapshots

    snap_model, taken, snaps, _ = train_with_snapshots(
        cfg, 6, [0, 3, 6], batch_size=33, seed=4, lr=1e-2, progress=False
    )
    assert taken == [0, 3, 6] and torch.equal(snaps[-1], got.W) and torch.equal(snap_model.b, got.b)


def test_first_steps_agree_and_final_losses_statistically_equal():
    cfg = ToyModelConfig(
        20,
        5,
        n_instances=8,
        feature_probability=(20 ** -torch.linspace(0, 1, 8))[:, None],
        importance=0.7 ** torch.arange(20.0),
    )
    a = train(cfg, steps=5, batch_size=256, seed=2, backend="fused", progress=False, dtype=torch.float64)
    b = train(cfg, steps=5, batch_size=256, seed=2, backend="reference", progress=False, dtype=torch.float64)
    assert torch.allclose(a.loss_history, b.loss_history, rtol=1e-6)
    assert torch.allclose(a.W, b.W, atol=1e-10) and torch.allclose(a.b, b.b, atol=1e-10)
    # float32, longer: the runs drift apart numerically but must end at the same loss level
    a = train(cfg, steps=250, batch_size=128, seed=2, backend="fused", progress=False)
    b = train(cfg, steps=250, batch_size=128, seed=2, backend="reference", progress=False)
    la, lb = a.final_loss(50), b.final_loss(50)
    assert (a.loss_history[-1] < a.loss_history[0]).all()
    assert torch.allclose(la, lb, rtol=0.1, atol=1e-4), (la, lb)


def test_abs_kind_learns():
    cfg = ToyModelConfig(3, 6, n_instances=2, feature_probability=0.5, kind="abs")
    model = train(cfg, steps=300, batch_size=256, progress=False, lr=1e-2)
    assert model.W_out is not None  # the abs kind is untied
    assert (model.loss_history[-20:].mean(0) < 0.5 * model.loss_history[:5].mean(0)).all()


def test_train_off_cpu_path_uses_device_sampler(monkeypatch):
    """train()'s GPU branch (device sampler + dense einsum step), forced on the CPU: same weights as the reference."""
    T = importlib.import_module("supcomp.tms.train")
    cfg = ToyModelConfig(7, 3, n_instances=2, feature_probability=0.3)
    ref = T.train(cfg, steps=5, batch_size=16, seed=3, progress=False, backend="reference")
    calls = []

    class Spy(T.DeviceBatchSampler):
        def sample(self, step):
            calls.append(step)
            return super().sample(step)

    monkeypatch.setattr(T, "DeviceBatchSampler", Spy)
    monkeypatch.setattr(T, "_draws_on_device", lambda device: True)
    got = T.train(cfg, steps=5, batch_size=16, seed=3, progress=False)
    assert calls == [0, 1, 2, 3, 4]
    torch.testing.assert_close(got.W, ref.W, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    cfg = small_config("relu_hidden", feature_probability=torch.tensor([[0.5], [0.2], [0.05]]))
    model = train(cfg, steps=3, batch_size=16, progress=False)
    model.save(str(tmp_path / "m"))
    back = ToyModel.load(str(tmp_path / "m"))
    assert back.config.to_dict() == cfg.to_dict()  # (== on the dataclass is ambiguous for tensor fields)
    assert isinstance(back.config.feature_probability, torch.Tensor)  # the type round-trips too
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    assert torch.equal(back.loss_history, model.loss_history) and back.loss_steps == model.loss_steps
    assert not list(tmp_path.joinpath("m").glob(".*tmp"))  # no temporary file left behind


def test_save_load_untied_model(tmp_path):
    cfg = ToyModelConfig(5, 2, n_instances=2, feature_probability=0.5, kind="abs")
    model = train(cfg, steps=2, batch_size=8, progress=False, dtype=torch.float64)
    model.save(str(tmp_path / "abs"))
    back = ToyModel.load(str(tmp_path / "abs"))
    assert back.W.dtype == torch.float64 and back.W_out is not None
    assert torch.equal(back.W_out, model.W_out) and torch.equal(back.W, model.W)


@pytest.mark.parametrize(
    "kwargs,exc,text",
    [
        (dict(feature_probability=0.0), ValueError, "feature_probability: every probability must lie in (0, 1]"),
        (dict(feature_probability=1.5), ValueError, "feature_probability"),
        (dict(importance=-1.0), ValueError, "importance: every importance must be finite and >= 0"),
        (dict(importance=[1.0, 2.0]), ValueError, "importance: expected"),
        (dict(feature_probability=[0.1, 0.2, 0.3]), ValueError, "feature_probability: expected"),
        (dict(kind="quadratic"), ValueError, "kind: expected one of"),
        (dict(n_hidden=0), ValueError, "n_hidden: expected a positive int"),
        (dict(correlated_pairs=3), ValueError, "correlated_pairs, anticorrelated_pairs"),
    ],
)
def test_bad_configs_rejected(kwargs, exc, text):
    args = dict(n_features=5, n_hidden=2, n_instances=2)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        ToyModelConfig(**args)
    assert text in str(info.value)


def test_config_round_trip_and_tied():
    cfg = small_config("abs", feature_probability=torch.tensor([[0.5], [0.2], [0.05]]))
    assert ToyModelConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert not cfg.tied and all(small_config(k).tied for k in ("linear", "relu_output", "relu_hidden"))


def test_wide_hidden_layer_allowed():
    cfg = ToyModelConfig(4, 10, feature_probability=0.5)  # n_hidden >= n_features is fine
    model = train(cfg, steps=2, batch_size=8, progress=False)
    assert model.W.shape == (1, 4, 10)


def test_train_argument_errors():
    cfg = ToyModelConfig(4, 2)
    with pytest.raises(ValueError, match="backend: expected one of"):
        train(cfg, steps=1, backend="jax")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        train(cfg, steps=1, batch_size=0)
