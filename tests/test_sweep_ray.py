"""The Ray executor end to end on a local Ray instance (loopback only): the same table as the local one."""

import pytest
from sweep_utils import by_key, small_grid

from supcomp.sweep import read_results, run_sweep

ray = pytest.importorskip("ray", reason="the Ray executor is an optional extra (pip install 'supcomp[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False
    )
    yield
    ray.shutdown()


def test_ray_same_table_as_local(tmp_path, local_ray):
    g = small_grid(density=[1.0, 0.3, 0.1], importance=[1.0], seed=[0, 1], max_instances=2)
    g.axes["density"] = [1.0, 0.3, 0.1, 0.0]  # density 0 fails: recorded by the Ray task like locally
    g.__post_init__()
    local = run_sweep(g, out=str(tmp_path / "local.jsonl"), progress=False)
    remote = run_sweep(g, out=str(tmp_path / "ray.parquet"), ray="auto", progress=False)
    assert (remote.n_points, remote.n_run, remote.n_packs, remote.n_failed) == (8, 8, 4, 2)
    a, b = read_results(local.out), read_results(remote.out)
    assert by_key(a) == by_key(b)
    assert {r["executor"] for r in b} == {"ray"}
    again = run_sweep(g, out=str(tmp_path / "ray.parquet"), ray="auto", progress=False, retry_failed=False)
    assert again.n_run == 0
