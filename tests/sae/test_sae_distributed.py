"""Data-parallel SAE training: 2 gloo processes on CPU give the single-process result on the same global
batches. In float64 the only difference is the order of floating-point sums (the global batch's squared
error and variance are summed per rank then over ranks; the gradient GEMMs run over halves then add), a
relative error of order 1e-16 per operation; over a few Adam steps that stays far below 1e-9, while a
real mistake (a loss normalised by each shard's own variance, a rank-local dead set, b_dec from one
shard) moves the result by far more (the per-shard FVU differs from the global one by > 1e-4 below).
Both kinds train in one pair of processes, since starting them costs most of the test's time."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from supcomp.sae import SAE, SAEConfig, World, WorldConfig, train_sae
from supcomp.sae.distributed import global_batch, shard_source, sharded_forward, train_sae_distributed

STEPS, BATCH, LR = 6, 64, 3e-3


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _world():
    return World(WorldConfig(n_features=48, d=12, p_max=0.2, p_min=0.02, seed=3))


def _config(kind):
    # dead_tokens small so that AuxK (and its global residual variance) is active within the run
    return SAEConfig(d=12, n=40, kind=kind, k=4, k_aux=8, aux_coef=0.5, dead_tokens=BATCH, l1_coef=1e-2, l0_coef=1e-3)


def _worker(rank, world_size, port, kinds, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for kind in kinds:
            sae = train_sae_distributed(
                _world(),
                _config(kind),
                steps=STEPS,
                batch_size=BATCH,
                lr=LR,
                seed=5,
                dtype=torch.float64,
                log_every=2,
                progress=False,
            )
            state = {"state": sae.state_dict(), "history": sae.history}
            torch.save(state, os.path.join(out_dir, f"{kind}{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # fork: the children inherit the imported modules (spawn would import torch and supcomp again, ~30 s here)
    mp.start_processes(_worker, args=(2, _free_port(), ("topk", "jumprelu"), str(out)), nprocs=2, start_method="fork")
    return out


@pytest.mark.parametrize("kind", ["topk", "jumprelu"])
def test_two_gloo_ranks_equal_single_process(ddp_runs, kind, one_thread):
    r0, r1 = (torch.load(ddp_runs / f"{kind}{r}.pt", weights_only=False) for r in (0, 1))
    for name, t in r0["state"].items():
        assert torch.equal(t, r1["state"][name]), f"ranks differ in {name}"
    ref = train_sae(
        global_batch(_world(), BATCH, 2, dtype=torch.float64),
        sae=SAE(_config(kind), seed=5, dtype=torch.float64),
        steps=STEPS,
        batch_size=BATCH,
        lr=LR,
        seed=5,
        log_every=2,
        progress=False,
    )
    assert int(ref.dead_mask.sum()) > 0 or kind != "topk", "the run should exercise AuxK"
    for name, t in ref.state_dict().items():
        torch.testing.assert_close(r0["state"][name], t, rtol=1e-9, atol=1e-9, msg=f"{name} differs from 1 process")
    for (s0, l0, m0), (s1, l1, m1) in zip(r0["history"], ref.history):
        assert s0 == s1 and l0 == pytest.approx(l1, rel=1e-9)
        for key in ("fvu", "aux_loss", "sparsity_loss", "l0", "dead_fraction"):
            assert m0[key] == pytest.approx(m1[key], rel=1e-9, abs=1e-12), key


def test_sharded_forward_alone_is_forward_and_shards_compose():
    sae = SAE(_config("relu"), seed=1, dtype=torch.float64).train()
    x = global_batch(_world(), BATCH, 2, dtype=torch.float64)(0)
    assert torch.equal(x[: BATCH // 2], shard_source(_world(), BATCH, 0, 2, dtype=torch.float64)(0))
    a = SAE(_config("relu"), seed=1, dtype=torch.float64).train()
    ref = a(x)
    out, l0 = sharded_forward(sae, x, BATCH)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-12, atol=0)
    assert float(l0) == pytest.approx(float((ref.dense > 0).sum(1).double().mean()))
    # the counterexample the test above guards against: each shard normalised by its own variance
    half = [SAE(_config("relu"), seed=1, dtype=torch.float64).train()(x[i * 32 : (i + 1) * 32]).fvu for i in (0, 1)]
    assert abs(float(sum(half) / 2 - ref.fvu)) > 1e-4


def test_errors():
    with pytest.raises(ValueError, match="multiple of the world size"):
        shard_source(_world(), 63, 0, 2)
    with pytest.raises(ValueError, match="batchtopk"):
        sharded_forward(SAE(_config("batchtopk")), torch.randn(4, 12), 4)
    with pytest.raises(ValueError, match="batchtopk"):
        train_sae_distributed(_world(), _config("batchtopk"), steps=1)
