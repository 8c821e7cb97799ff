"""Pool workers die with their driver: a ``--workers 2`` driver killed with SIGKILL leaves no worker running
(``PR_SET_PDEATHSIG``, with a parent-polling thread as the fallback; see supcomp.sweep.lifeline)."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to find the workers")

DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from supcomp.sweep import Grid, register, run_sweep
register("sleepy", "sweep_utils:SLEEPY")
g = Grid("sleepy", fixed=dict(sleep=120, dir={dir!r}), axes=dict(x=[1, 2, 3, 4]))
run_sweep(g, out={out!r}, workers=2, progress=False)
"""


def _alive_with(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment holds ``marker``."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            out.append(int(pid))
    return out


def _wait(cond, timeout, what):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, what
        time.sleep(0.1)


def test_sigkilled_driver_leaves_no_worker(tmp_path):
    marker = f"SUPCOMP_LIFELINE_TEST={uuid.uuid4().hex}"
    tests = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(tests)
    script = DRIVER.format(tests=tests, dir=str(tmp_path), out=str(tmp_path / "r.jsonl"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    key, value = marker.split("=")
    env[key] = value
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        started = lambda: [n for n in os.listdir(tmp_path) if n.isdigit()]  # noqa: E731
        _wait(lambda: len(started()) >= 2 or driver.poll() is not None, 60, "the workers did not start")
        assert driver.poll() is None, driver.communicate()[1].decode()[-2000:]
        workers = [int(n) for n in started()]
        assert all(p in _alive_with(marker) for p in workers)  # the marker finds them
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        _wait(lambda: not _alive_with(marker), 10, f"processes outlived the driver: {_alive_with(marker)}")
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in _alive_with(marker):  # clean up after a failure: only processes this test started
            os.kill(pid, signal.SIGKILL)


FALLBACK = """
import os, sys, time
from supcomp.sweep import lifeline
lifeline._pdeathsig = lambda: False  # the polling fallback alone
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    lifeline.tie_to_parent(os.getppid())
    os.write(w, b"ready")
    time.sleep(60)
    os._exit(0)
assert os.read(r, 5) == b"ready"
print(pid, flush=True)
os._exit(0)  # the parent dies; the child must notice
"""


def test_polling_fallback_exits_an_orphaned_worker():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True, text=True, timeout=60)
    child = int(out.stdout.split()[0])

    def gone():
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    try:
        _wait(gone, 5, "the orphaned child kept running")
    finally:
        if not gone():
            os.kill(child, signal.SIGKILL)
