"""Run by tests/sae/test_sae_ddp.py under torchrun: train a TopK SAE data-parallel, rank 0 saves it."""

import sys

import torch
import torch.distributed as dist

from supcomp.sae import SAEConfig, World, WorldConfig, train_sae

torch.set_num_threads(1)
dist.init_process_group("gloo")
world = World(WorldConfig(n_features=64, d=16, p_max=0.2, p_min=0.02, seed=2))
sae = train_sae(
    world,
    SAEConfig(d=16, n=48, k=3, k_aux=8, dead_tokens=512),
    steps=12,
    batch_size=128,
    lr=3e-3,
    log_every=4,
    progress=False,
    seed=5,
)
if dist.get_rank() == 0:
    sae.save(sys.argv[1])
dist.destroy_process_group()
