"""Data-parallel SAE training (torchrun, 2 processes, gloo) equals one process on the same global batch."""

import os
import subprocess
import sys

import torch

from supcomp.sae import SAE, SAEConfig, World, WorldConfig, train_sae

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "--master_addr=127.0.0.1",
        os.path.join(ROOT, "tests", "sae", "ddp_worker.py"),
        str(tmp_path / "ddp"),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = SAE.load(str(tmp_path / "ddp"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = World(WorldConfig(n_features=64, d=16, p_max=0.2, p_min=0.02, seed=2))
        one = train_sae(
            world,
            SAEConfig(d=16, n=48, k=3, k_aux=8, dead_tokens=512),
            steps=12,
            batch_size=128,
            lr=3e-3,
            log_every=4,
            progress=False,
            seed=5,
        )
    finally:
        torch.set_num_threads(n)
    for (name, a), b in zip(one.state_dict().items(), ddp.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    assert not torch.equal(one.W_dec, SAE(one.config, seed=5).W_dec)  # it trained
