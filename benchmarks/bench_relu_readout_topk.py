"""pytest-benchmark: ``relu_readout_topk`` against its peers (see cases.py for providers and sizes)."""
import pytest
from _support import CaseCache, params, run_benchmark

OP = "relu_readout_topk"


@pytest.fixture(scope="module")
def cache():
    return CaseCache(OP)


@pytest.mark.parametrize("size,mode,provider", params(OP))
def test_relu_readout_topk(benchmark, cache, size, mode, provider):
    run_benchmark(benchmark, cache, size, mode, provider)
