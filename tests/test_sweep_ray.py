"""The Ray executor end to end on a local Ray instance (loopback only): the same table as the local one."""

import os

import pytest
from sweep_utils import by_key, restore_registry

from supcomp.sweep import Grid, read_results, register, run_sweep

ray = pytest.importorskip("ray", reason="the Ray executor is an optional extra (pip install 'supcomp[ray]')")


@pytest.fixture(autouse=True)
def _registry():
    with restore_registry():
        yield


@pytest.fixture(scope="module")
def local_ray():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")])
    ray.init(  # the tasks import sweep_utils (the test adapter) and supcomp from this checkout
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


def test_ray_same_table_as_local(tmp_path, local_ray):
    register("failing", "sweep_utils:FAILING")
    g = Grid("failing", axes={"x": [1, 2, -3, 4, 5, -6, 7, 8]}, max_instances=2)  # x < 0 fails in its task
    local = run_sweep(g, out=str(tmp_path / "local.jsonl"), progress=False)
    remote = run_sweep(g, out=str(tmp_path / "ray.parquet"), ray="auto", progress=False)
    assert (remote.n_points, remote.n_run, remote.n_packs, remote.n_failed) == (8, 8, 4, 2)
    a, b = read_results(local.out), read_results(remote.out)
    assert by_key(a) == by_key(b)
    assert {r["executor"] for r in b} == {"ray"}
    again = run_sweep(g, out=str(tmp_path / "ray.parquet"), ray="auto", progress=False, retry_failed=False)
    assert again.n_run == 0
