"""ARENA's and the TMS notebook's conventions in supcomp.tms: shapes by torch broadcasting, explicit batch
layouts, init= and optimizer= choices, converters, and the loss and gradient of a plain-torch model
written in ARENA's conventions (issue 22; docs/coming-from-arena.md)."""

import importlib
import json
import math

import pytest
import torch
from torch import nn

from supcomp.ops.tms_sample import DenseSampler, SparseBatch
from supcomp.tms import BatchSampler, ToyModel, ToyModelConfig, per_instance, train
from supcomp.tms.convert import (
    config_from_arena,
    config_from_notebook,
    from_arena,
    from_notebook,
    to_arena,
    to_notebook,
)
from supcomp.tms.data import DeviceBatchSampler, from_instance_major, to_instance_major
from supcomp.tms.train import dense_loss_and_grad, fused_loss_and_grad, reference_loss_and_grad, resolve_weight_decay

TRAIN = importlib.import_module("supcomp.tms.train")

# ---------------------------------------------------------------- plain-torch models in the references' conventions


class ArenaToyModel(nn.Module):
    """ARENA's superposition ToyModel, written out: W [I, m, n], b_final [I, n], batches [B, I, n];
    ``hidden_relu`` gives its NeuronModel."""

    def __init__(self, I, n, m, feature_probability, importance, hidden_relu=False):
        super().__init__()
        self.feature_probability = torch.as_tensor(feature_probability).broadcast_to((I, n))
        self.importance = torch.as_tensor(importance).broadcast_to((I, n))
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty((I, m, n))))
        self.b_final = nn.Parameter(torch.zeros((I, n)))
        self.hidden_relu = hidden_relu

    def forward(self, features):
        h = torch.einsum("...if,ihf->...ih", features, self.W)
        if self.hidden_relu:
            h = torch.relu(h)
        return torch.relu(torch.einsum("...ih,ihf->...if", h, self.W) + self.b_final)

    def calculate_loss(self, out, batch):
        return (self.importance * (batch - out) ** 2).mean(0).mean(-1).sum()  # mean over batch, feats; sum inst


class ArenaComputationModel(nn.Module):
    """ARENA's NeuronComputationModel: W1 [I, m, n], W2 [I, n, m], target |x| for x on [-1, 1]."""

    def __init__(self, I, n, m, feature_probability, importance):
        super().__init__()
        self.feature_probability = torch.as_tensor(feature_probability).broadcast_to((I, n))
        self.importance = torch.as_tensor(importance).broadcast_to((I, n))
        self.W1 = nn.Parameter(nn.init.kaiming_uniform_(torch.empty((I, m, n))))
        self.W2 = nn.Parameter(nn.init.kaiming_uniform_(torch.empty((I, n, m))))
        self.b_final = nn.Parameter(torch.zeros((I, n)))

    def forward(self, features):
        h = torch.relu(torch.einsum("...if,ihf->...ih", features, self.W1))
        return torch.relu(torch.einsum("...ih,ifh->...if", h, self.W2) + self.b_final)

    def calculate_loss(self, out, batch):
        return (self.importance * (batch.abs() - out) ** 2).mean(0).mean(-1).sum()


class NotebookModel(nn.Module):
    """The TMS notebook's Model: W [I, n, m] (xavier_normal_), b_final [I, n], batches [B, I, n]."""

    def __init__(self, I, n, m, feature_probability, importance):
        super().__init__()
        self.W = nn.Parameter(torch.empty((I, n, m)))
        nn.init.xavier_normal_(self.W)
        self.b_final = nn.Parameter(torch.zeros((I, n)))
        self.feature_probability, self.importance = torch.as_tensor(feature_probability), torch.as_tensor(importance)

    def forward(self, features):
        hidden = torch.einsum("...if,ifh->...ih", features, self.W)
        return torch.relu(torch.einsum("...ih,ifh->...if", hidden, self.W) + self.b_final)


I, N, M = 6, 6, 2  # I == n on purpose: the case where a 1-D value could be read either way
DENS = 20 ** -torch.linspace(0, 1, I, dtype=torch.float64)
IMP = 0.9 ** torch.arange(N, dtype=torch.float64)


# ---------------------------------------------------------------- shapes: torch broadcasting against [I, n]


@pytest.mark.parametrize(
    "value",
    [0.3, torch.tensor(0.3), IMP.clamp(max=1), IMP[None, :].clamp(max=1), DENS[:, None], DENS[:, None] * IMP[None, :]],
    ids=["float", "0-d", "[n]", "[1,n]", "[I,1]", "[I,n]"],
)
def test_values_broadcast_as_in_torch(value):
    cfg = ToyModelConfig(N, M, I, feature_probability=value, importance=value)
    want = torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), (I, N))
    assert torch.equal(cfg.probabilities(), want) and torch.equal(cfg.importances(), want)


def test_one_dimensional_value_is_per_feature_even_when_I_equals_n():
    """ARENA's meaning: with I == n a 1-D tensor is still one value per feature, never per instance."""
    cfg = ToyModelConfig(N, M, I, feature_probability=DENS)
    assert torch.equal(cfg.probabilities(), DENS[None, :].expand(I, N))
    per_inst = ToyModelConfig(N, M, I, feature_probability=per_instance(DENS))
    assert torch.equal(per_inst.probabilities(), DENS[:, None].expand(I, N))
    assert torch.equal(per_instance(DENS), DENS[:, None])
    # the ARENA model's stored tensors mean the same as the config's
    arena = ArenaToyModel(I, N, M, DENS[:, None], IMP[None, :])
    cfg = config_from_arena(arena)
    assert torch.equal(cfg.probabilities(), arena.feature_probability) and torch.equal(
        cfg.importances(), arena.importance
    )


def test_shapes_that_do_not_broadcast_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"feature_probability: .* got shape \[4\]; a 1-D value is one per feature"):
        ToyModelConfig(5, 2, 4, feature_probability=torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"importance: expected at most 2 dimensions"):
        ToyModelConfig(5, 2, 4, importance=torch.ones(4, 5, 1))
    with pytest.raises(ValueError, match=r"importance: expected a shape that broadcasts"):
        ToyModelConfig(5, 2, 4, importance=torch.ones(3, 5))
    with pytest.raises(ValueError, match="values: expected one value per instance"):
        per_instance(torch.ones(2, 2))


def test_version_1_dicts_read_a_1d_probability_per_instance():
    """Configs written before broadcasting (no "version") meant one probability per instance by a 1-D list."""
    old = dict(n_features=N, n_hidden=M, n_instances=I, feature_probability=DENS.tolist(), importance=IMP.tolist())
    old.update(kind="relu_output", correlated_pairs=0, anticorrelated_pairs=0)
    cfg = ToyModelConfig.from_dict(old)
    assert torch.equal(cfg.probabilities(), DENS[:, None].expand(I, N)) and cfg.init == "supcomp"
    assert torch.equal(cfg.importances(), IMP[None, :].expand(I, N))
    d = cfg.to_dict()
    assert d["version"] == 2 and ToyModelConfig.from_dict(d).to_dict() == d
    # version 2: a 1-D list is per feature
    assert torch.equal(ToyModelConfig.from_dict({**old, "version": 2}).probabilities(), DENS[None, :].expand(I, N))
    with pytest.raises(ValueError, match="version: expected an int from 1 to 2"):
        ToyModelConfig.from_dict({**old, "version": 3})


def test_old_checkpoint_loads_with_its_meaning(tmp_path):
    cfg = ToyModelConfig(N, M, I, feature_probability=per_instance(DENS))
    model = ToyModel(cfg, seed=1)
    model.save(str(tmp_path / "m"))
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("version", "init")}
    old["feature_probability"] = DENS.tolist()  # what version 1 wrote
    with open(tmp_path / "m" / "config.json", "w") as f:
        json.dump({"config": old, "format": "supcomp.tms.ToyModel/1"}, f)
    back = ToyModel.load(str(tmp_path / "m"))
    assert torch.equal(back.config.probabilities(), cfg.probabilities()) and torch.equal(back.W, model.W)


# ---------------------------------------------------------------- batch layouts: named, never inferred


def test_layout_keyword_on_forward_sparse_batch_and_samplers():
    cfg = ToyModelConfig(N, M, I, feature_probability=per_instance(DENS.clamp(min=0.3)), importance=IMP)
    model = ToyModel(cfg, seed=2, dtype=torch.float64)
    sb = BatchSampler(cfg, I, seed=3, dtype=torch.float64).sample(0)  # B == I: sizes cannot tell the layouts apart
    x_ibn, x_bin = sb.to_dense(), sb.to_dense(layout="BIn")
    assert torch.equal(x_bin, x_ibn.transpose(0, 1)) and x_bin.is_contiguous()
    assert torch.equal(model(x_bin, layout="BIn"), model(x_ibn).transpose(0, 1))
    assert not torch.equal(model(x_bin), model(x_ibn))  # the default layout is IBn whatever the sizes
    for layout, x in (("IBn", x_ibn), ("BIn", x_bin)):
        back = SparseBatch.from_dense(x, layout=layout)
        assert torch.equal(back.offsets, sb.offsets) and torch.equal(back.indices, sb.indices)
        assert torch.equal(back.values, sb.values)
        assert torch.equal(to_instance_major(x, layout), x_ibn) and torch.equal(from_instance_major(x_ibn, layout), x)
    dense = DeviceBatchSampler(cfg, I, seed=3, dtype=torch.float64, device="cpu")
    assert torch.equal(dense.sample(0, layout="BIn"), x_bin) and torch.equal(dense.sample(0), x_ibn)
    la = dense_loss_and_grad(model, x_bin, layout="BIn")
    ga = model.W.grad.clone()
    lb = dense_loss_and_grad(model, x_ibn)
    assert torch.equal(la, lb) and torch.equal(ga, model.W.grad)


def test_bad_layouts_rejected():
    cfg = ToyModelConfig(5, 2, 3)
    model = ToyModel(cfg)
    x = torch.zeros(4, 3, 5)
    with pytest.raises(ValueError, match="layout: expected one of"):
        model(x, layout="bin")
    with pytest.raises(ValueError, match="x: layout='IBn' puts the instances on axis 0, of size 4"):
        model(x)  # a [B, I, n] batch without layout="BIn"
    with pytest.raises(ValueError, match="x: expected a 3-D"):
        model(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="x: expected 5 features"):
        model(torch.zeros(3, 4, 6))
    with pytest.raises(ValueError, match="layout: expected one of"):
        SparseBatch.from_dense(x, layout="nBI")
    with pytest.raises(TypeError, match="x: expected a floating-point batch"):
        SparseBatch.from_dense(torch.zeros(3, 4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="layout: expected one of"):
        DenseSampler(cfg.probabilities(), 4).sample(0, layout="BnI")


# ---------------------------------------------------------------- init=


def _std(W):
    return float(W.detach().double().std())


@pytest.mark.parametrize("kind", ["relu_output", "abs"])
def test_reference_inits_are_the_references_draws(kind):
    """init="arena" / "notebook" with seed s: the weights ARENA's / the notebook's model draws on CPU after
    torch.manual_seed(s), bit for bit."""
    I_, n, m = 4, 7, 3
    torch.manual_seed(11)
    ref = ArenaComputationModel(I_, n, m, 0.5, 1.0) if kind == "abs" else ArenaToyModel(I_, n, m, 0.5, 1.0)
    ours = ToyModel(ToyModelConfig(n, m, I_, kind=kind, init="arena"), seed=11)
    got = to_arena(ours)
    for k, v in got.items():
        assert torch.equal(v, getattr(ref, k).detach()), k
    if kind == "relu_output":
        torch.manual_seed(11)
        nb = NotebookModel(I_, n, m, 1.0, 1.0)
        ours = ToyModel(ToyModelConfig(n, m, I_, init="notebook"), seed=11, dtype=torch.float64)
        assert torch.equal(ours.W, nb.W.detach().double()) and not ours.b.any()


@pytest.mark.parametrize(
    "init,kind,std",
    [
        ("supcomp", "relu_output", lambda I, n, m: math.sqrt(2 / (n + m))),
        ("notebook", "relu_output", lambda I, n, m: math.sqrt(2 / (n * m + I * m))),
        ("arena", "relu_output", lambda I, n, m: math.sqrt(2 / (m * n + I * n))),
        ("arena", "abs", lambda I, n, m: math.sqrt(6 / (n * m)) / math.sqrt(3)),  # uniform on +-sqrt(6 / fan_in)
    ],
)
def test_init_statistics_match_each_reference(init, kind, std):
    I_, n, m = 20, 40, 10  # 8000 weights: the sample std is within ~0.8% (1 sigma) of the true one
    model = ToyModel(ToyModelConfig(n, m, I_, kind=kind, init=init), seed=5)
    for W in [model.W] + ([model.W_out] if kind == "abs" else []):
        assert abs(_std(W) / std(I_, n, m) - 1) < 0.04, (_std(W), std(I_, n, m))
        assert abs(float(W.detach().double().mean())) < 4 * std(I_, n, m) / math.sqrt(W.numel())
    assert not model.b.any()
    if kind == "abs":
        bound = math.sqrt(6 / (n * m))
        top = float(model.W.detach().abs().max())
        assert 0.95 * bound < top <= bound


def test_init_errors():
    with pytest.raises(ValueError, match="init: expected one of"):
        ToyModelConfig(4, 2, init="xavier")
    with pytest.raises(ValueError, match="instance_seeds: init='arena' scales the weights"):
        ToyModel(ToyModelConfig(4, 2, 2, init="arena"), instance_seeds=[1, 2])


# ---------------------------------------------------------------- optimizer=


def _adam_loop(model, sampler, steps, lr, weight_decay, cls):
    """A plain torch loop on the sampler's batches: the references' optimize()."""
    opt = cls(list(model.parameters()), lr=lr, weight_decay=weight_decay)
    for step in range(steps):
        reference_loss_and_grad(model, sampler.sample(step))
        opt.step()
    return model


@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_adam_is_torch_adam_on_every_backend(weight_decay, monkeypatch):
    cfg = ToyModelConfig(
        8, 3, 3, feature_probability=per_instance([1.0, 0.3, 0.1]), importance=0.9 ** torch.arange(8.0)
    )
    kw = dict(steps=8, batch_size=32, seed=3, lr=1e-2, progress=False, dtype=torch.float64, optimizer="adam")
    want = _adam_loop(
        ToyModel(cfg, seed=3, dtype=torch.float64),
        BatchSampler(cfg, 32, seed=3, dtype=torch.float64),
        8,
        1e-2,
        weight_decay or 0.0,
        torch.optim.Adam,
    )
    for backend in ("fused", "reference"):
        got = train(cfg, backend=backend, weight_decay=weight_decay, **kw)
        torch.testing.assert_close(got.W, want.W, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(got.b, want.b, rtol=1e-9, atol=1e-11)
    # train()'s GPU branch (device sampler, dense step, torch's optimizer), forced on the CPU
    monkeypatch.setattr(TRAIN, "_draws_on_device", lambda device: True)
    got = TRAIN.train(cfg, weight_decay=weight_decay, **kw)
    torch.testing.assert_close(got.W, want.W, rtol=1e-9, atol=1e-11)
    monkeypatch.undo()
    # and AdamW (the default) differs from it
    assert not torch.allclose(train(cfg, **{**kw, "optimizer": "adamw"}).W, want.W, atol=1e-6)


def test_adamw_default_decay_is_stated():
    assert resolve_weight_decay("adamw", None) == 0.01 and resolve_weight_decay("adam", None) == 0.0
    cfg = ToyModelConfig(5, 2, 2, feature_probability=0.5)
    a = train(cfg, steps=4, batch_size=16, progress=False)
    b = train(cfg, steps=4, batch_size=16, progress=False, optimizer="adamw", weight_decay=0.01)
    assert torch.equal(a.W, b.W)
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        train(cfg, steps=1, optimizer="sgd")
    with pytest.raises(ValueError, match="weight_decay: expected a finite number >= 0"):
        train(cfg, steps=1, weight_decay=-1.0)


# ---------------------------------------------------------------- converters


@pytest.mark.parametrize("reference,kind", [("arena", "relu_output"), ("arena", "abs"), ("notebook", "relu_hidden")])
def test_converters_round_trip_exactly(reference, kind):
    to, frm = (to_arena, from_arena) if reference == "arena" else (to_notebook, from_notebook)
    cfg = ToyModelConfig(7, 3, 4, kind=kind, feature_probability=0.4)
    model = train(cfg, steps=3, batch_size=8, progress=False)  # nonzero b too
    params = to(model)
    assert set(params) == ({"W1", "W2", "b_final"} if kind == "abs" else {"W", "b_final"})
    if reference == "arena" and kind != "abs":
        assert params["W"].shape == (4, 3, 7) and torch.equal(params["W"], model.W.detach().transpose(1, 2))
    back = frm(params, cfg)
    for name, p in model.named_parameters():
        assert torch.equal(getattr(back, name), p), name
    again = to(back)
    assert all(torch.equal(again[k], params[k]) for k in params)
    params[next(iter(params))].add_(1.0)  # copies: the model is untouched
    assert torch.equal(to(model)[next(iter(params))] + 1.0, params[next(iter(params))])


def test_converter_errors():
    cfg = ToyModelConfig(7, 3, 4)
    with pytest.raises(ValueError, match=r"params: arena's 'W' must be \[4, 3, 7\]"):
        from_arena({"W": torch.zeros(4, 7, 3), "b_final": torch.zeros(4, 7)}, cfg)
    with pytest.raises(ValueError, match="params: expected a tensor 'b_final'"):
        from_notebook({"W": torch.zeros(4, 7, 3)}, cfg)
    with pytest.raises(ValueError, match="kind: the TMS notebook has no untied"):
        to_notebook(ToyModel(ToyModelConfig(7, 3, 4, kind="abs")))
    with pytest.raises(TypeError, match="config: expected a ToyModelConfig"):
        from_arena({}, dict(n_features=7))


# ---------------------------------------------------------------- loss and gradient against the references


def _fixed_batch(I_, n, B, p, signed, seed=0):
    g = torch.Generator().manual_seed(seed)
    mag = torch.rand((B, I_, n), generator=g, dtype=torch.float64)
    mag = 2 * mag - 1 if signed else mag
    return torch.where(torch.rand((B, I_, n), generator=g, dtype=torch.float64) <= p, mag, 0.0)  # ARENA's recipe


@pytest.mark.parametrize("variant", ["ToyModel", "NeuronModel", "NeuronComputationModel", "notebook"])
def test_loss_and_gradient_equal_plain_torch_reference(variant):
    """A plain-torch model in ARENA's (or the notebook's) conventions and supcomp's model converted from it
    give the same loss and gradients on one fixed [B, I, n] batch, on the fused C++ step and the reference."""
    I_, n, m, B = 5, 9, 3, 64
    p, imp = (
        (50 ** -torch.linspace(0, 1, I_, dtype=torch.float64))[:, None],
        (0.9 ** torch.arange(float(n), dtype=torch.float64))[None],
    )
    torch.manual_seed(0)
    if variant == "NeuronComputationModel":
        ref, kind = ArenaComputationModel(I_, n, m, p, imp), "abs"
    elif variant == "notebook":
        ref, kind = NotebookModel(I_, n, m, p, imp), "relu_output"
    else:
        kind = "relu_hidden" if variant == "NeuronModel" else "relu_output"
        ref = ArenaToyModel(I_, n, m, p, imp, hidden_relu=kind == "relu_hidden")
    ref = ref.double()
    with torch.no_grad():
        ref.b_final.copy_(0.1 * torch.randn(I_, n, dtype=torch.float64))  # a nonzero bias exercises b's gradient
    x = _fixed_batch(I_, n, B, p, signed=kind == "abs")
    out = ref(x)
    if variant == "notebook":
        loss_ref = (ref.importance * (x.abs() - out) ** 2).mean(0).mean(-1).sum()  # the notebook's optimize()
    else:
        loss_ref = ref.calculate_loss(out, x)
    loss_ref.backward()
    if variant == "notebook":
        model = from_notebook(ref, config_from_notebook(ref, kind))
    else:
        model = from_arena(ref, config_from_arena(ref, kind))
    names = {"W1", "W2"} if kind == "abs" else {"W"}
    grads_ref = {k: getattr(ref, k).grad for k in names | {"b_final"}}
    batch = SparseBatch.from_dense(x, layout="BIn")
    for step in (fused_loss_and_grad, reference_loss_and_grad):
        model.zero_grad(set_to_none=True)
        loss = step(model, batch)  # per instance [I]; the references sum over instances
        tol = 1e-6 if step is fused_loss_and_grad else 1e-12  # the fused step returns float32 losses
        torch.testing.assert_close(loss.double().sum(), loss_ref.detach(), rtol=tol, atol=0)
        grads = _reference_grads(model, variant)
        for k, g in grads_ref.items():
            torch.testing.assert_close(grads[k], g, rtol=1e-10, atol=1e-12, msg=f"{variant} {step.__name__} {k}")


def _reference_grads(model, variant):
    """The model's gradients under the reference's names and layouts."""
    if variant == "notebook":
        return {"W": model.W.grad, "b_final": model.b.grad}
    if model.W_out is not None:
        return {"W1": model.W.grad.transpose(1, 2), "W2": model.W_out.grad, "b_final": model.b.grad}
    return {"W": model.W.grad.transpose(1, 2), "b_final": model.b.grad}


def test_arena_training_loop_equals_train_with_arena_settings():
    """ARENA's optimize() (Adam, constant lr, its init after torch.manual_seed) on supcomp's batches in
    [B, I, n] equals train(init="arena", optimizer="adam")."""
    I_, n, m, B, steps = 4, 5, 2, 64, 20
    p, imp = (20 ** -torch.linspace(0, 1, I_, dtype=torch.float64))[:, None], (0.9 ** torch.arange(5.0)).double()
    torch.manual_seed(7)
    ref = ArenaToyModel(I_, n, m, p, imp[None, :]).double()
    cfg = config_from_arena(ref, init="arena")
    sampler = BatchSampler(cfg, B, seed=7, dtype=torch.float64)
    opt = torch.optim.Adam(list(ref.parameters()), lr=1e-2)
    for step in range(steps):
        opt.zero_grad()
        batch = sampler.sample(step).to_dense(layout="BIn")
        ref.calculate_loss(ref(batch), batch).backward()
        opt.step()
    for backend in ("fused", "reference"):
        got = train(
            cfg,
            steps=steps,
            batch_size=B,
            lr=1e-2,
            seed=7,
            progress=False,
            dtype=torch.float64,
            optimizer="adam",
            backend=backend,
        )
        torch.testing.assert_close(to_arena(got)["W"], ref.W.detach(), rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(got.b, ref.b_final.detach(), rtol=1e-9, atol=1e-11)
