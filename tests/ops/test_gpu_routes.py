"""The GPU dispatch table (supcomp.ops.gpu_table) and its peer routes (supcomp.ops.peer_routes).

Every route is forced through the table on CPU tensors (the Triton backend runs under the
interpreter; the peer routes are plain torch) and compared with the float64 reference: values,
the empty-slot and NaN rules, gradients (always supcomp's own backward) and errors."""

import importlib

import pytest
import torch
from utils import gen

from supcomp.ops import gpu_table, peer_routes, relu_readout, relu_readout_topk, sparse_encode, use_backend
from supcomp.ops.relu_readout import reference_forward as readout_ref
from supcomp.ops.relu_readout_topk import reference_forward as topk_ref
from supcomp.ops.sparse_encode import reference_forward as encode_ref

pytestmark = pytest.mark.triton

ENCODE_ROUTES = ["triton", "embedding_bag", "sparse_csr"]


def codes(I, B, n, d, k, seed=0, dtype=torch.float64):
    g = gen(seed)
    idx = torch.randint(-1, n, (I, B, k), generator=g)
    return idx, torch.randn(I, B, k, generator=g, dtype=dtype), torch.randn(I, n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("route", ENCODE_ROUTES)
@pytest.mark.parametrize("I,B,n,d,k", [(1, 9, 37, 24, 5), (3, 7, 37, 5, 7), (2, 1, 1, 3, 2), (1, 0, 4, 3, 2)])
def test_sparse_encode_routes_match_reference(route, I, B, n, d, k, monkeypatch):
    calls = []
    if route != "triton":  # the peer route really runs
        fn = gpu_table.ROUTES["sparse_encode"][route]
        monkeypatch.setitem(gpu_table.ROUTES["sparse_encode"], route, lambda *a: calls.append(1) or fn(*a))
    idx, val, W = codes(I, B, n, d, k)
    W[:, 0] = float("inf")  # an empty slot must never read row 0 (inf * 0 = NaN)
    val[idx < 0] = float("nan")  # nor its own value
    Wg, vg = W.clone().requires_grad_(), val.clone().requires_grad_()
    with use_backend("triton"), gpu_table.use_route("sparse_encode", route):
        h = sparse_encode(idx, vg, Wg)
        assert gpu_table.choose("sparse_encode", W.device, W.dtype, "any") == route
    assert len(calls) == (route != "triton")
    ref = encode_ref(idx, val, W)
    torch.testing.assert_close(h.detach(), ref, equal_nan=True)
    assert torch.isnan(h).sum() == torch.isnan(ref).sum()


@pytest.mark.parametrize("route", ENCODE_ROUTES)
def test_sparse_encode_routes_same_gradients_and_errors(route):
    idx, val, W = codes(2, 6, 20, 8, 4, seed=3)
    grads = {}
    for r in ("triton", route):
        Wg, vg = W.clone().requires_grad_(), val.clone().requires_grad_()
        with use_backend("triton"), gpu_table.use_route("sparse_encode", r):
            sparse_encode(idx, vg, Wg).pow(2).sum().backward()
        grads[r] = (vg.grad, Wg.grad)
    for a, b in zip(grads["triton"], grads[route]):
        torch.testing.assert_close(a, b)
    bad = idx.clone()
    bad[1, 2, 3] = 20
    with use_backend("triton"), gpu_table.use_route("sparse_encode", route):
        with pytest.raises(IndexError, match="indices: index 20 at flat position"):
            sparse_encode(bad, val, W)


def test_sync_free_compaction_matches_cpu_compaction():
    """The CUDA form of the slot compaction (stable sort, a dropped last bag) on CPU tensors."""
    idx, val, W = codes(3, 5, 11, 4, 6, seed=5)
    for sync_free in (False, True):
        ids, vals, offsets = peer_routes._flat_slots(idx, val, 11, sync_free=sync_free)
        assert offsets.shape[0] == 3 * 5 + 2 and int(offsets[-1]) == ids.shape[0]
        rows = [ids[offsets[r] : offsets[r + 1]].tolist() for r in range(15)]
        want = [[int(f) + (r // 5) * 11 for f in idx.view(15, 6)[r] if f >= 0] for r in range(15)]
        assert rows == want
        if sync_free:
            assert (vals[int(offsets[15]) :] == 0).all()


@pytest.mark.parametrize("route", ["triton", "addmm"])
@pytest.mark.parametrize("I,B,n,d", [(1, 5, 17, 8), (3, 4, 9, 6)])
def test_relu_readout_routes(route, I, B, n, d):
    g = gen(1)
    h, W, b = (
        torch.randn(I, B, d, generator=g, dtype=torch.float64),
        torch.randn(I, n, d, generator=g, dtype=torch.float64),
        torch.randn(I, n, generator=g, dtype=torch.float64),
    )
    hg = h.clone().requires_grad_()
    with use_backend("triton"), gpu_table.use_route("relu_readout", route):
        y = relu_readout(hg, W, b)
        y.sum().backward()
    torch.testing.assert_close(y.detach(), readout_ref(h, W, b))
    torch.testing.assert_close(hg.grad, torch.func.grad(lambda x: readout_ref(x, W, b).sum())(h))


@pytest.mark.parametrize("route", ["triton", "addmm_topk"])
def test_relu_readout_topk_routes(route):
    g = gen(2)
    I, B, n, d, k = 2, 6, 40, 8, 5
    h, W = (
        torch.randn(I, B, d, generator=g, dtype=torch.float64),
        torch.randn(I, n, d, generator=g, dtype=torch.float64),
    )
    b = torch.full((I, n), -2.0, dtype=torch.float64)  # few positive entries: exercises the (0, -1) fill
    b[0, 3] = float("nan")  # a NaN score is never selected
    with use_backend("triton"), gpu_table.use_route("relu_readout_topk", route):
        out = relu_readout_topk(h, W, b, k)
    ref = topk_ref(h, W, b, k)  # SparseCode(indices, values), as the op returns
    torch.testing.assert_close(out.values, ref.values)
    assert torch.equal(out.indices, ref.indices)


def test_table_entries_name_routes_and_measurements():
    for table in [gpu_table.DEFAULT, *gpu_table.TABLES.values()]:
        for (op, dtype, cls), (route, why) in table.items():
            assert route == "triton" or route in gpu_table.ROUTES[op], (op, route)
            assert dtype in (torch.float32, torch.float16, torch.bfloat16)
            assert "ms" in why and "RESULTS.md" in why, (op, dtype, cls)
    assert gpu_table.choose("sparse_encode", torch.device("cpu"), torch.float32, "any") == "triton"
    with pytest.raises(ValueError, match="no route"):
        with gpu_table.use_route("sparse_encode", "cublas"):
            pass


def test_size_classes():
    h = torch.empty(1, 1024, 64)
    assert gpu_table.size_class("relu_readout", h, torch.empty(1, 4096, 64)) == "small"
    assert gpu_table.size_class("relu_readout", torch.empty(1, 4096, 256), torch.empty(1, 65536, 256)) == "large"
    assert gpu_table.size_class("relu_readout_topk", torch.empty(1, 4096, 8), torch.empty(1, 65536, 8)) == "dense_fits"
    assert gpu_table.size_class("relu_readout_topk", torch.empty(1, 8192, 8), torch.empty(1, 1 << 20, 8)) == "large"


@pytest.mark.parametrize("filled", [True, False])
def test_cpu_forward_same_values_and_errors_whichever_runs(filled, monkeypatch):
    """CPU float32: the embedding_bag route (filled codes of one instance) and the C++ kernel agree,
    empty slots never read row 0 or their value, and a bad index raises the op's own IndexError."""
    SE = importlib.import_module("supcomp.ops.sparse_encode")  # the module (its name is the public function)
    g = gen(7)
    idx = torch.randint(0 if filled else -1, 50, (1, 33, 6), generator=g)
    val, W = torch.rand(1, 33, 6, generator=g), torch.randn(1, 50, 20, generator=g)
    if not filled:
        W[0, 0], val[idx < 0] = float("inf"), float("nan")
    calls = []
    route = peer_routes.embedding_bag_2d
    monkeypatch.setattr(peer_routes, "embedding_bag_2d", lambda *a: calls.append(1) or route(*a))
    out = SE.cpp_forward(idx, val, W)
    assert len(calls) == int(filled)  # the route runs exactly for filled codes
    torch.testing.assert_close(out, SE.cpp_kernel_forward(idx, val, W), equal_nan=True)
    torch.testing.assert_close(
        out.double(), encode_ref(idx, val.double(), W.double()), equal_nan=True, rtol=2e-6, atol=2e-6
    )
    bad = idx.clone()
    bad[0, 4, 2] = 50
    msgs = []
    for f in (SE.cpp_forward, SE.cpp_kernel_forward):
        with pytest.raises(IndexError) as e:
            f(bad, val, W)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and "index 50 at flat position 26" in msgs[0]


@pytest.mark.parametrize("route", ["triton", "unfused"])
def test_superpose_routes(route):
    from supcomp.ops import superpose
    from supcomp.ops.superpose import reference_forward as superpose_ref

    idx, val, W = codes(2, 5, 13, 6, 4, seed=9)
    b = torch.randn(2, 13, dtype=torch.float64)
    Wg = W.clone().requires_grad_()
    with use_backend("triton"), gpu_table.use_route("superpose", route):
        y = superpose(idx, val, Wg, b)
        y.square().sum().backward()
    torch.testing.assert_close(y.detach(), superpose_ref(idx, val, W, b))
    ref_gW = torch.func.grad(lambda w: superpose_ref(idx, val, w, b).square().sum())(W)
    torch.testing.assert_close(Wg.grad, ref_gW)
