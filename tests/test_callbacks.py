"""Training callbacks (supcomp.utils.callbacks): what the trainers pass, the TensorBoard and W&B adapters."""

import logging
import math
import sys
import types

import pytest
import torch

from supcomp.cc import CCConfig
from supcomp.cc import train as cc_train
from supcomp.tms import ToyModelConfig
from supcomp.tms.train import train as tms_train
from supcomp.utils.callbacks import (
    CallbackList,
    LoggingCallback,
    TensorBoardCallback,
    TrainingCallback,
    WandbCallback,
    loss_metrics,
)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, step, loss, metrics):
        self.calls.append((step, loss, metrics))


def _check_plain(calls, n_instances):
    for step, loss, metrics in calls:
        assert type(step) is int and type(loss) is float
        assert all(type(v) is float for v in metrics.values()), metrics
        assert {"lr", "loss_min", "loss_max"} | {f"loss/{i}" for i in range(n_instances)} == set(metrics)
        per = [metrics[f"loss/{i}"] for i in range(n_instances)]
        assert math.isclose(loss, sum(per) / n_instances, rel_tol=1e-12)
        assert metrics["loss_min"] == min(per) and metrics["loss_max"] == max(per)


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_tms_trainer_calls_back_every_log_every_steps(backend):
    cfg = ToyModelConfig(5, 2, n_instances=3, feature_probability=0.3)
    rec = Recorder()
    model = tms_train(cfg, steps=10, batch_size=8, lr=2e-3, progress=False, log_every=4, callback=rec, backend=backend)
    assert [c[0] for c in rec.calls] == [0, 4, 8, 9] == model.loss_steps
    _check_plain(rec.calls, 3)
    assert all(c[2]["lr"] == 2e-3 for c in rec.calls)
    for (_, _, metrics), row in zip(rec.calls, model.loss_history):
        assert torch.allclose(torch.tensor([metrics[f"loss/{i}"] for i in range(3)], dtype=row.dtype), row)
    # what train returns carries no autograd graph
    assert model.loss_history.grad_fn is None and not model.loss_history.requires_grad
    assert model.final_loss().grad_fn is None


def test_cc_trainer_calls_back_with_the_cosine_lr():
    cfg = CCConfig(n_features=8, d_embed=16, d_mlp=4, feature_probability=0.3, n_instances=2)
    rec = Recorder()
    model = cc_train(cfg, steps=9, batch_size=8, lr=1e-2, progress=False, log_every=3, callback=rec)
    assert [c[0] for c in rec.calls] == [0, 3, 6, 8] == model.loss_steps
    _check_plain(rec.calls, 2)
    assert [c[2]["lr"] for c in rec.calls] == [1e-2 * 0.5 * (1 + math.cos(math.pi * s / 9)) for s in (0, 3, 6, 8)]


def test_a_raising_callback_stops_the_run():
    def stop(step, loss, metrics):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tms_train(ToyModelConfig(4, 2), steps=10, batch_size=4, progress=False, callback=stop)
    with pytest.raises(TypeError, match="callback"):
        tms_train(ToyModelConfig(4, 2), steps=1, batch_size=4, progress=False, callback=3)


def test_loss_metrics_from_a_tensor_with_grad():
    w = torch.tensor([1.0, 3.0], requires_grad=True)
    loss, metrics = loss_metrics(w * 2, 0.5)
    assert loss == 4.0 and metrics == {"lr": 0.5, "loss_min": 2.0, "loss_max": 6.0, "loss/0": 2.0, "loss/1": 6.0}


class FakeWriter:
    def __init__(self):
        self.scalars, self.closed, self.flushed = [], False, False

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        self.flushed = True

    def close(self):
        self.closed = True


def test_tensorboard_adapter_writes_every_metric():
    w = FakeWriter()
    with TensorBoardCallback(writer=w, prefix="tms") as cb:
        assert isinstance(cb, TrainingCallback)
        tms_train(ToyModelConfig(4, 2, n_instances=2), steps=3, batch_size=4, progress=False, callback=cb)
    tags = {t for t, _, _ in w.scalars}
    assert tags == {"tms/loss", "tms/lr", "tms/loss_min", "tms/loss_max", "tms/loss/0", "tms/loss/1"}
    assert sorted({s for _, _, s in w.scalars}) == [0, 1, 2]
    assert w.flushed and w.closed


def test_tensorboard_adapter_with_real_event_files(tmp_path):
    """With the tensorboard package: event files that TensorBoard's own reader reads back."""
    pytest.importorskip("tensorboard", reason="optional: pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cb = TensorBoardCallback(log_dir=str(tmp_path))
    tms_train(ToyModelConfig(4, 2), steps=3, batch_size=4, progress=False, callback=cb)
    cb.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1, 2]


def test_wandb_adapter_offline_with_a_fake_module(monkeypatch):
    calls = {}

    class Run:
        def __init__(self):
            self.rows, self.finished = [], False

        def log(self, row, step):
            self.rows.append((step, row))

        def finish(self):
            self.finished = True

    def init(**kwargs):
        calls["init"] = kwargs
        calls["run"] = Run()
        return calls["run"]

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    with WandbCallback(project="p", config={"lr": 1e-3}) as cb:
        tms_train(ToyModelConfig(4, 2), steps=2, batch_size=4, progress=False, callback=cb)
    assert calls["init"]["mode"] == "offline" and calls["init"]["project"] == "p"
    run = calls["run"]
    assert [s for s, _ in run.rows] == [0, 1] and set(run.rows[0][1]) == {
        "loss",
        "lr",
        "loss_min",
        "loss_max",
        "loss/0",
    }
    assert run.finished


def test_wandb_adapter_needs_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ImportError, match="pip install wandb"):
        WandbCallback()


def test_callback_list_and_logging_callback(caplog):
    a, b = Recorder(), Recorder()
    cb = CallbackList(a, None, b, LoggingCallback())
    with caplog.at_level(logging.INFO, logger="supcomp.train"):
        cb(3, 0.25, {"lr": 0.1})
    assert a.calls == b.calls == [(3, 0.25, {"lr": 0.1})]
    assert "step 3 loss 0.25 lr 0.1" in caplog.text
    with pytest.raises(TypeError, match="callables"):
        CallbackList(1)


def test_wandb_adapter_with_real_wandb_offline(tmp_path, monkeypatch):
    """With the wandb package: an offline run on disk, nothing sent over the network."""
    pytest.importorskip("wandb", reason="optional: pip install wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with WandbCallback(project="supcomp-test", dir=str(tmp_path)) as cb:
        tms_train(ToyModelConfig(4, 2), steps=3, batch_size=4, progress=False, callback=cb)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
