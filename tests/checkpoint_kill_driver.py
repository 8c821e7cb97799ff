"""Driver of tests/test_checkpoint.py's kill test (run as a script in its own process).

``python checkpoint_kill_driver.py FOLDER KILLS SEED MAX_DELAY_MS``: builds two different models A and B
(different kinds, so different tensor sets and sizes), then KILLS times: forks a writer that saves A, B,
A, B, ... (or B, A, ...) to ``FOLDER`` through ``ToyModel.save`` (the library's atomic single-file save), lets it run for
a random time in [0, MAX_DELAY_MS] ms, SIGKILLs it, and loads the checkpoint: it must be exactly A or
exactly B (every tensor bit for bit, the config), or absent when no save had completed yet. A writer
killed mid-save leaves its temporary file behind; those are counted (and removed) to show that the
kills land inside saves. Prints one JSON line of counts; exit code 1 on the first bad load.

Forking from this single-threaded process (torch threads = 1) keeps each kill cheap (no interpreter and
torch start per writer), so hundreds of kills fit in seconds.
"""

import json
import os
import random
import signal
import sys
import time

import torch

torch.set_num_threads(1)

from supcomp.tms import ToyModel, ToyModelConfig  # noqa: E402
from supcomp.utils.checkpoint import CheckpointNotFoundError  # noqa: E402


def make(kind, seed, n_log):
    cfg = ToyModelConfig(n_features=64, n_hidden=16, n_instances=8, feature_probability=0.1, kind=kind)
    m = ToyModel(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    m.loss_history = torch.rand(n_log, 8, generator=g)  # makes a save take long enough to be hit mid-write
    m.loss_steps = list(range(n_log))
    m.training_state = {"steps_done": seed, "name": f"model-{seed}"}
    return m


def same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return (
        a.config.to_dict() == b.config.to_dict()
        and sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
        and torch.equal(a.loss_history, b.loss_history)
        and a.loss_steps == b.loss_steps
        and a.training_state == b.training_state
    )


def main():
    folder, kills, seed, max_delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1e3
    rng = random.Random(seed)
    A, B = make("relu_output", 1, 5000), make("abs", 2, 8000)
    os.makedirs(folder, exist_ok=True)
    counts = {"A": 0, "B": 0, "none": 0, "mid_write": 0, "kills": 0}
    t0 = time.time()
    for _ in range(kills):
        first, second = (A, B) if rng.random() < 0.5 else (B, A)
        pid = os.fork()
        if pid == 0:  # the writer
            try:
                while True:
                    first.save(folder)
                    second.save(folder)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0, max_delay))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        counts["kills"] += 1
        if os.path.isdir(folder):
            tmps = [f for f in os.listdir(folder) if f.endswith(".tmp")]
            counts["mid_write"] += bool(tmps)
            for f in tmps:
                os.remove(os.path.join(folder, f))
        try:
            m = ToyModel.load(folder)
        except CheckpointNotFoundError:
            counts["none"] += 1
            continue
        except Exception as e:  # any other error is a failure of the format
            print(json.dumps(dict(counts, error=f"{type(e).__name__}: {e}")), flush=True)
            return 1
        if same(m, A):
            counts["A"] += 1
        elif same(m, B):
            counts["B"] += 1
        else:
            print(json.dumps(dict(counts, error="a checkpoint that is neither A nor B")), flush=True)
            return 1
    counts["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
