"""The checkpoint format (supcomp.utils.checkpoint): round trips, damaged and foreign files, resumed runs
equal to uninterrupted ones, concurrent savers, and writers killed mid-save."""

import json
import os
import struct
import subprocess
import sys
import threading

import pytest
import torch

from supcomp.cc import CCConfig
from supcomp.cc import train as cc_train
from supcomp.cc.model import CCModel
from supcomp.tms import ToyModel, ToyModelConfig
from supcomp.tms.train import train as tms_train
from supcomp.utils.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointNotFoundError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

HERE = os.path.dirname(os.path.abspath(__file__))
CC_SMALL = dict(n_features=8, d_embed=16, d_mlp=4, feature_probability=0.3)


def tms_cfg(kind="relu_output"):
    p = torch.tensor([0.5, 0.2, 0.1])[:, None].expand(3, 6).clone()  # [I, n]: one density per instance
    return ToyModelConfig(6, 3, n_instances=3, feature_probability=p, kind=kind)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["folder", "file.safetensors"])
def test_toy_model_round_trip_keeps_everything(tmp_path, name):
    model = tms_train(tms_cfg(), steps=6, batch_size=8, seed=4, lr=2e-3, progress=False, log_every=2)
    written = model.save(tmp_path / name)
    assert os.listdir(os.path.dirname(written)) == [os.path.basename(written)]  # one file, no temporary left
    back = ToyModel.load(tmp_path / name)
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert torch.equal(back.loss_history, model.loss_history) and back.loss_steps == model.loss_steps == [0, 2, 4, 5]
    # the config keeps its types: a tensor stays a tensor (not a list)
    assert isinstance(back.config.feature_probability, torch.Tensor)
    assert torch.equal(back.config.feature_probability, model.config.feature_probability)
    st = back.training_state
    assert (st["steps_done"], st["seed"], st["lr"], st["batch_size"], st["dtype"]) == (6, 4, 2e-3, 8, "float32")
    md = read_metadata(written)
    assert md["format_version"] == FORMAT_VERSION and md["kind"] == "tms.ToyModel"
    import supcomp

    assert md["supcomp_version"] == supcomp.__version__
    assert set(back.optimizer_state) == {
        "optim.exp_avg.W",
        "optim.exp_avg_sq.W",
        "optim.exp_avg.b",
        "optim.exp_avg_sq.b",
    }


def test_load_draws_no_initialisation_and_repr_shows_sizes(tmp_path, monkeypatch):
    model = ToyModel(tms_cfg("abs"), seed=1, dtype=torch.float64)
    model.save(tmp_path / "m")

    def boom(*a, **k):
        raise AssertionError("load drew a random initialisation")

    monkeypatch.setattr(ToyModel, "_init_weights", staticmethod(boom))
    back = ToyModel.load(tmp_path / "m")
    assert back.W.dtype == torch.float64 and torch.equal(back.W_out, model.W_out)
    assert set(back.__dict__) >= set(model.__dict__) - {"training_state", "optimizer_state"}
    assert "n_features=6" in repr(back) and "n_hidden=3" in repr(back) and "kind='abs'" in repr(back)


def test_cc_round_trip(tmp_path):
    cfg = CCConfig(model="mlp", mixing="symmetric", sigma=[0.0, 0.2], n_instances=2, **CC_SMALL)
    m = cc_train(cfg, steps=4, batch_size=8, progress=False, seed=3)
    m.save(tmp_path / "m")
    back = CCModel.load(tmp_path / "m")
    assert back.config == cfg and back.seed == 3 and back.loss_steps == m.loss_steps
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert back.training_state["steps_done"] == 4 and "d_mlp=4" in repr(back)
    assert set(back.__dict__) >= set(m.__dict__)  # every attribute __init__ sets, load sets too


def test_cc_load_draws_no_initialisation(tmp_path, monkeypatch):
    import supcomp.cc.model as cc_model

    m = CCModel(CCConfig(**CC_SMALL), seed=5)
    m.save(tmp_path / "m")

    def boom(*a, **k):
        raise AssertionError("load built the fixed matrices / initial weights")

    monkeypatch.setattr(cc_model.mixing, "build", boom)
    monkeypatch.setattr(cc_model.mixing, "instance_generator", boom)
    back = CCModel.load(tmp_path / "m")
    assert torch.equal(back.W_E, m.W_E) and torch.equal(back.W_in, m.W_in) and back.seed == 5


# ---------------------------------------------------------------- damaged, truncated, foreign files
@pytest.fixture
def saved(tmp_path):
    path = ToyModel(tms_cfg(), seed=0).save(tmp_path / "m")
    with open(path, "rb") as f:
        return path, f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("cut", [0, 3, 8, 40, -200, -1])
def test_truncated_file_raises_checkpoint_error(saved, cut):
    path, data = saved
    _write(path, data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(CheckpointError):
        ToyModel.load(path)


def test_damaged_tensor_bytes_are_detected(saved):
    path, data = saved
    bad = bytearray(data)
    bad[-5] ^= 0xFF  # a byte of the last tensor's data
    _write(path, bytes(bad))
    with pytest.raises(CheckpointError, match="damaged"):
        ToyModel.load(path)


def test_damaged_header_is_detected(saved):
    path, data = saved
    bad = bytearray(data)
    bad[12] = ord("}")  # breaks the JSON header
    _write(path, bytes(bad))
    with pytest.raises(CheckpointError):
        ToyModel.load(path)


def test_foreign_files_are_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"W": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a supcomp checkpoint"):
        ToyModel.load(tmp_path / "other.safetensors")
    _write(tmp_path / "junk.safetensors", b"hello world, not a checkpoint at all")
    with pytest.raises(CheckpointError):
        ToyModel.load(tmp_path / "junk.safetensors")
    cc = CCModel(CCConfig(**CC_SMALL)).save(tmp_path / "cc.safetensors")
    with pytest.raises(CheckpointError, match="cc.CCModel"):
        ToyModel.load(cc)


def test_missing_checkpoint_is_its_own_error(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as e:
        ToyModel.load(tmp_path / "nothing")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CheckpointError)


def test_newer_format_version_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "x.safetensors", "tms.ToyModel", {"a": torch.zeros(1)}, {})
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"]["format_version"] = str(FORMAT_VERSION + 1)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (n - len(raw)) if len(raw) <= n else b""
    assert len(raw) == n
    _write(path, data[:8] + raw + data[8 + n :])
    with pytest.raises(CheckpointError, match="newer supcomp"):
        load_checkpoint(path)


def test_tensors_that_do_not_fit_the_config_are_rejected(tmp_path):
    model = ToyModel(tms_cfg(), seed=0)
    model.W = torch.nn.Parameter(torch.zeros(3, 6, 4))  # n_hidden 4 where the config says 3
    model.save(tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"tensor W has shape \[3, 6, 4\], the config implies \[3, 6, 3\]"):
        ToyModel.load(tmp_path / "m")


def test_strict_json_metadata():
    with pytest.raises(ValueError, match="meta"):
        save_checkpoint("unused.safetensors", "x", {}, {"lr": float("nan")})


def test_old_two_file_layout_still_loads(tmp_path):
    from safetensors.torch import save_file

    model = ToyModel(tms_cfg("abs"), seed=2)
    folder = tmp_path / "old"
    folder.mkdir()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["loss_history"], tensors["loss_steps"] = torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)
    save_file(tensors, str(folder / "model.safetensors"))
    cfg = model.config.to_dict()
    (folder / "config.json").write_text(json.dumps({"config": cfg, "format": "supcomp.tms.ToyModel/1"}))
    back = ToyModel.load(folder)
    assert torch.equal(back.W, model.W) and torch.equal(back.W_out, model.W_out)


# ---------------------------------------------------------------- resumed runs equal uninterrupted ones
@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("kind", ["relu_output", "abs"])
def test_tms_resume_equals_one_run_bitwise(tmp_path, backend, kind):
    """40 steps in one go == 20 steps, checkpoint, load, 20 more: weights and logged losses bit for bit."""
    cfg = tms_cfg(kind)
    kw = dict(steps=40, batch_size=16, seed=2, progress=False, backend=backend, log_every=3)
    one = tms_train(cfg, **kw)
    half = tms_train(cfg, **dict(kw, steps=20))
    half.save(tmp_path / "half")
    resumed = tms_train(cfg, **kw, resume_from=tmp_path / "half")
    for k, v in one.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert torch.equal(one.loss_history, resumed.loss_history) and one.loss_steps == resumed.loss_steps
    assert resumed.training_state["steps_done"] == 40
    again = tms_train(cfg, **kw, resume_from=resumed)  # nothing left to do: the same model, history intact
    assert again.loss_steps == one.loss_steps and torch.equal(again.loss_history, one.loss_history)


@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("model", ["residual", "mlp"])
def test_cc_resume_equals_one_run_bitwise(tmp_path, backend, model):
    """The cosine schedule depends on the total steps: the checkpoint is written mid-run ({step} path)."""
    kw = dict(steps=30, batch_size=16, seed=2, progress=False, backend=backend, log_every=4, threads=1)
    cfg = CCConfig(model=model, n_instances=2, **CC_SMALL)
    one = cc_train(cfg, **kw)
    cc_train(cfg, **kw, checkpoint=str(tmp_path / "s{step}.safetensors"), checkpoint_every=15)
    assert sorted(os.listdir(tmp_path)) == ["s15.safetensors", "s30.safetensors"]
    resumed = cc_train(cfg, **kw, resume_from=tmp_path / "s15.safetensors")
    assert torch.equal(one.W_in, resumed.W_in) and torch.equal(one.W_out, resumed.W_out)
    assert torch.equal(one.loss_history, resumed.loss_history) and one.loss_steps == resumed.loss_steps


def test_resume_with_other_settings_is_refused(tmp_path):
    cfg = tms_cfg()
    tms_train(cfg, steps=4, batch_size=8, progress=False).save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"lr=0.001 \(this call: 0.01\)"):
        tms_train(cfg, steps=8, batch_size=8, lr=0.01, progress=False, resume_from=tmp_path / "m")
    with pytest.raises(ValueError, match="steps"):
        tms_train(cfg, steps=2, batch_size=8, progress=False, resume_from=tmp_path / "m")
    ToyModel(cfg).save(tmp_path / "untrained")
    with pytest.raises(ValueError, match="no training state"):
        tms_train(cfg, steps=8, batch_size=8, progress=False, resume_from=tmp_path / "untrained")
    with pytest.raises(CheckpointNotFoundError):
        tms_train(cfg, steps=8, batch_size=8, progress=False, resume_from=tmp_path / "missing")


# ---------------------------------------------------------------- concurrent savers, killed writers
def test_two_savers_into_one_folder_do_not_clobber(tmp_path):
    """Each save has its own temporary name (a fixed name let one saver rename the other's half file)."""
    a = CCModel(CCConfig(**CC_SMALL), seed=1)
    b = CCModel(CCConfig(model="mlp", mixing="none", **CC_SMALL), seed=2)
    errors = []

    def loop(m):
        try:
            for _ in range(30):
                m.save(tmp_path)
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(m,)) for m in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    back = CCModel.load(tmp_path)
    ref = a if back.config == a.config else b
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in back.state_dict().items())
    assert os.listdir(tmp_path) == ["model.safetensors"]


def _kill_run(tmp_path, kills, seed):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "checkpoint_kill_driver.py"),
            str(tmp_path / "ck"),
            str(kills),
            str(seed),
            "80",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.stdout.strip(), out.stderr[-2000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and "error" not in counts, counts
    assert counts["A"] + counts["B"] + counts["none"] == kills
    assert counts["A"] > 0 and counts["B"] > 0  # both versions were seen after kills
    assert counts["mid_write"] >= kills // 10, counts  # the kills did land inside saves
    return counts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks its writers (POSIX)")
def test_writer_killed_mid_save_leaves_old_or_new_checkpoint(tmp_path):
    """150 SIGKILLs at random moments of a save loop (A, B, A, ...): every load is exactly A or B (or no
    file yet), never a mix or a damaged file (~10 s)."""
    _kill_run(tmp_path, 150, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks its writers (POSIX)")
@pytest.mark.skipif(not os.environ.get("SUPCOMP_LONG_TESTS"), reason="long variant: set SUPCOMP_LONG_TESTS=1")
def test_writer_killed_mid_save_long(tmp_path):
    _kill_run(tmp_path, 1000, seed=1)
