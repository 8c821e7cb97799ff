"""pytest-benchmark: ``sparse_encode`` against its peers (see cases.py for providers and sizes)."""
import pytest
from _support import CaseCache, params, run_benchmark

OP = "sparse_encode"


@pytest.fixture(scope="module")
def cache():
    return CaseCache(OP)


@pytest.mark.parametrize("size,mode,provider", params(OP))
def test_sparse_encode(benchmark, cache, size, mode, provider):
    run_benchmark(benchmark, cache, size, mode, provider)
