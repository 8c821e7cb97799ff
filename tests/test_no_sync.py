"""No op synchronises with the host on its CUDA path.

On CUDA: each op, forward and backward, under ``torch.cuda.set_sync_debug_mode("error")`` (skipped
without CUDA). On CPU (runs everywhere): the same code paths -- the Triton backend under the
interpreter, with the index check switched to its device-side form and every GPU route of
supcomp.ops.gpu_table -- while every host-sync tensor method (``bool(t)``, ``.item()``, ``.tolist()``, ``int(t)``,
``.nonzero()``, ...) records the calls made from supcomp's own code (calls from inside Triton's interpreter are its business, not the CUDA path's)."""

import os
import sys

import pytest
import torch

from supcomp.ops import checks, gpu_table, relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend

# The tensor methods through which a host sync happens: reading values out of a tensor, and ops whose
# output size depends on the values.
SYNC_METHODS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "nonzero", "numpy", "cpu")
ROOTS = tuple(
    os.path.realpath(os.path.join(os.path.dirname(__file__), "..", p)) + os.sep for p in ("supcomp", "kernels")
)


class SyncRecorder:
    """Within the block, records each host-sync tensor method called directly from a supcomp file.

    The methods of ``torch.Tensor`` are wrapped (not a torch function / dispatch mode: those do not
    see inside supcomp's custom ops), so every call is seen wherever it runs."""

    def __init__(self):
        self.calls = []
        self._saved = {}

    def _wrap(self, name, orig):
        def method(t, *a, **kw):
            f = sys._getframe(1)
            path = os.path.realpath(f.f_code.co_filename)
            if path.startswith(ROOTS):
                self.calls.append(f"{name} at {os.path.basename(path)}:{f.f_lineno}")
            return orig(t, *a, **kw)

        return method

    def __enter__(self):
        for name in SYNC_METHODS:
            self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name, self._saved[name]))
        return self

    def __exit__(self, *exc):
        for name, orig in self._saved.items():
            setattr(torch.Tensor, name, orig)


def op_calls(device):
    """(name, route op, routes, call) for each op: a forward + backward on small inputs."""
    g = torch.Generator().manual_seed(0)
    I, B, n, d, k = 2, 6, 24, 8, 4
    idx = torch.randint(-1, n, (I, B, k), generator=g).to(device)
    val = torch.rand(I, B, k, generator=g).to(device).requires_grad_()
    W = torch.randn(I, n, d, generator=g).to(device).requires_grad_()
    h = torch.randn(I, B, d, generator=g).to(device).requires_grad_()
    b = torch.randn(I, n, generator=g).to(device).requires_grad_()

    def enc():
        sparse_encode(idx, val, W).sum().backward()

    def read():
        relu_readout(h, W, b).sum().backward()

    def topk():
        out = relu_readout_topk(h, W, b, 3)
        next(t for t in out if t.is_floating_point()).sum().backward()

    def sup():
        superpose(idx, val, W, b).sum().backward()

    return [
        ("sparse_encode", enc),
        ("relu_readout", read),
        ("relu_readout_topk", topk),
        ("superpose", sup),
    ]


def routes_of(op):
    return ["triton", *sorted(gpu_table.ROUTES.get(op, {}))]


@pytest.mark.triton
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("op", ["sparse_encode", "relu_readout", "relu_readout_topk", "superpose"])
def test_cuda_path_makes_no_sync_calls(op, deterministic, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("the CPU form of the check; CUDA runs test_no_sync_under_cuda_debug_mode")
    monkeypatch.setattr(checks, "host_checks", lambda t: False)  # the CUDA form of the index check
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: deterministic)  # the kernels' switch
    call = dict(op_calls("cpu"))[op]
    for route in routes_of(op):
        rec = SyncRecorder()
        ctx = gpu_table.use_route(op, route) if op in gpu_table.ROUTES else use_backend("triton")
        with use_backend("triton"), ctx, rec:
            call()
        assert rec.calls == [], f"{op} route {route}: host syncs {rec.calls}"


def test_recorder_sees_the_eager_index_check():
    """The recorder can fail: the CPU form of the index check syncs (bool of a tensor), also inside a custom op."""
    rec = SyncRecorder()
    idx, val, W = torch.tensor([[[0, 1, -1]]]), torch.ones(1, 1, 3), torch.ones(1, 3, 2, requires_grad=True)
    with rec, use_backend("triton"):
        sparse_encode(idx, val, W)
    assert any(c.startswith("__bool__ at checks.py") for c in rec.calls), rec.calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("op", ["sparse_encode", "relu_readout", "relu_readout_topk", "superpose"])
def test_no_sync_under_cuda_debug_mode(op):
    call = dict(op_calls("cuda"))[op]
    call()  # compile the kernels first (autotuning may sync)
    torch.cuda.synchronize()
    for route in routes_of(op):
        ctx = gpu_table.use_route(op, route) if op in gpu_table.ROUTES else use_backend(None)
        with ctx:
            call()  # warm this route
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                call()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
