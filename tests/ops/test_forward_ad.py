"""Autograd beyond the first backward, for the four differentiable ops: forward mode
(``torch.func.jvp``, ``jacfwd``, ``torch.autograd.forward_ad``), ``torch.func.grad`` / ``jacrev`` /
``vmap`` / ``hessian``, and double backward.

Forward mode and the ``torch.func`` transforms run each op's pure-torch reference (the custom ops
carry backward formulas only); double backward through the custom ops uses the reference backward.
Every check is against float64 central finite differences or against an independent dense formula
(``x @ W``, ``relu(h @ W.T + b)``, ``torch.sort``), on both CPU backends where the backend matters.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from supcomp.ops import relu_readout, relu_readout_topk, sparse_encode, superpose, use_backend

BACKENDS = ["reference", "cpp"]
n, d, B, k = 7, 4, 3, 3
gen = torch.Generator().manual_seed(5)
IDX = torch.tensor([[0, 3, -1], [6, 6, 2], [1, -1, -1]])  # empty slots and a duplicate id
VAL = torch.rand(B, k, generator=gen, dtype=torch.float64) + 0.5
W0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
H0 = torch.randn(B, d, generator=gen, dtype=torch.float64)
# a bias that keeps every pre-activation at least 0.01 away from the ReLU kink and the top-k scores
# apart, so the functions are smooth at the test point and finite differences apply
B0 = torch.randn(n, generator=gen, dtype=torch.float64) * 0.1


def _dense(idx, val):
    x = torch.zeros(B, n + 1, dtype=val.dtype).scatter_add(-1, torch.where(idx < 0, n, idx), val)
    return x[:, :n]


def _topk_dense(h, W, b):
    y = torch.relu(h @ W.T + b)
    vals, _ = torch.sort(y, dim=-1, descending=True, stable=True)
    return vals[:, :k]


# op name -> (supcomp function of the differentiable inputs, dense formula, primal inputs)
CASES = {
    "sparse_encode": (lambda v, W: sparse_encode(IDX, v, W), lambda v, W: _dense(IDX, v) @ W, (VAL, W0)),
    "relu_readout": (relu_readout, lambda h, W, b: torch.relu(h @ W.T + b), (H0, W0, B0)),
    "relu_readout_topk": (lambda h, W, b: relu_readout_topk(h, W, b, k).values, _topk_dense, (H0, W0, B0)),
    "superpose": (
        lambda v, W, b: superpose(IDX, v, W, b),
        lambda v, W, b: torch.relu(_dense(IDX, v) @ W @ W.T + b),
        (VAL, W0, B0),
    ),
}
OPS = list(CASES)


def test_inputs_are_away_from_kinks():
    pre = H0 @ W0.T + B0
    assert pre.abs().min() > 0.01
    top = torch.sort(torch.relu(pre), -1, descending=True).values[:, : k + 1]
    gaps = (top[:, :-1] - top[:, 1:])[top[:, :-1] > 0]  # between positive scores (the rest fill as 0)
    assert gaps.min() > 0.01
    pre2 = _dense(IDX, VAL) @ W0 @ W0.T + B0
    assert pre2.abs().min() > 0.01


def _tangents(primals, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(p.shape, generator=g, dtype=p.dtype) for p in primals)


def _finite_difference(f, primals, tangents, eps=1e-6):
    plus = f(*(p + eps * t for p, t in zip(primals, tangents)))
    minus = f(*(p - eps * t for p, t in zip(primals, tangents)))
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_func_jvp_matches_finite_differences_and_the_dense_jvp(op, backend):
    f, dense, primals = CASES[op]
    tangents = _tangents(primals, 1)
    with use_backend(backend):
        out, tangent_out = torch.func.jvp(f, primals, tangents)
        fd = _finite_difference(f, primals, tangents)
    want_out, want_tangent = torch.func.jvp(dense, primals, tangents)
    assert tangent_out.abs().max() > 0.1  # not the zero tangent
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(tangent_out, want_tangent)
    torch.testing.assert_close(tangent_out, fd, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_forward_ad_dual_tensors(op, backend):
    f, dense, primals = CASES[op]
    tangents = _tangents(primals, 2)
    with use_backend(backend), fwAD.dual_level():
        duals = [fwAD.make_dual(p, t) for p, t in zip(primals, tangents)]
        tangent_out = fwAD.unpack_dual(f(*duals)).tangent
    assert tangent_out is not None
    torch.testing.assert_close(tangent_out, torch.func.jvp(dense, primals, tangents)[1])
    # one input dual, the others plain
    with use_backend(backend), fwAD.dual_level():
        one = fwAD.unpack_dual(f(fwAD.make_dual(primals[0], tangents[0]), *primals[1:])).tangent
    torch.testing.assert_close(one, _finite_difference(lambda x: f(x, *primals[1:]), primals[:1], tangents[:1]))


@pytest.mark.parametrize("op", OPS)
def test_gradcheck_forward_mode(op):
    """Forward mode against finite differences (backward mode: gradcheck in tests/ops/test_<op>.py)."""
    f, _, primals = CASES[op]
    inputs = tuple(p.clone().requires_grad_() for p in primals)
    assert torch.autograd.gradcheck(f, inputs, check_forward_ad=True, check_backward_ad=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_jacfwd_jacrev_and_autograd_agree(op, backend):
    f, dense, primals = CASES[op]
    argnums = tuple(range(len(primals)))
    with use_backend(backend):
        fwd = torch.func.jacfwd(f, argnums=argnums)(*primals)
        rev = torch.func.jacrev(f, argnums=argnums)(*primals)
        eager = torch.autograd.functional.jacobian(f, primals)  # the custom ops' backward formulas
    want = torch.func.jacrev(dense, argnums=argnums)(*primals)
    for a, r, e, w in zip(fwd, rev, eager, want):
        torch.testing.assert_close(a, w)
        torch.testing.assert_close(r, w)
        torch.testing.assert_close(e, w)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_func_grad_matches_backward(op, backend):
    f, _, primals = CASES[op]
    G = _tangents((f(*primals),), 3)[0]
    with use_backend(backend):
        grads = torch.func.grad(lambda *a: (f(*a) * G).sum(), argnums=tuple(range(len(primals))))(*primals)
        inputs = tuple(p.clone().requires_grad_() for p in primals)
        want = torch.autograd.grad((f(*inputs) * G).sum(), inputs)
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_vmap_over_a_stack_of_weights(op, backend):
    f, _, primals = CASES[op]
    Ws = torch.stack([W0, 2 * W0, -W0])
    with use_backend(backend):
        got = torch.func.vmap(lambda W: f(primals[0], W, *primals[2:]))(Ws)
        want = torch.stack([f(primals[0], W, *primals[2:]) for W in Ws])
    torch.testing.assert_close(got, want)


def test_vmap_checks_indices_of_every_batch_entry():
    idx = torch.stack([IDX, torch.where(IDX == 6, n, IDX)])  # the second entry holds id n: out of range
    with pytest.raises(IndexError, match="indices: index 7"):
        torch.func.vmap(lambda i: sparse_encode(i, VAL, W0))(idx)


@pytest.mark.parametrize("op", OPS)
def test_double_backward(op):
    """gradgradcheck through the custom ops (inputs that require grad, create_graph=True: the backward
    formula switches to the differentiable reference backward, whatever the backend), and the
    Hessian-vector product against torch.func.hessian of the dense formula."""
    f, dense, primals = CASES[op]
    inputs = tuple(p.clone().requires_grad_() for p in primals)
    with use_backend("cpp"):
        assert torch.autograd.gradgradcheck(f, inputs)
        G = _tangents((f(*primals),), 4)[0]
        grads = torch.autograd.grad((f(*inputs) * G).sum(), inputs, create_graph=True)
        v = _tangents(primals, 5)
        hvp = torch.autograd.grad(sum((g * t).sum() for g, t in zip(grads, v)), inputs, allow_unused=True)
    H = torch.func.hessian(lambda *a: (dense(*a) * G).sum(), argnums=tuple(range(len(primals))))(*primals)
    for i, got in enumerate(hvp):
        want = sum((H[i][j] * v[j]).sum(dim=tuple(range(-v[j].dim(), 0))) for j in range(len(primals)))
        torch.testing.assert_close(got if got is not None else torch.zeros_like(want), want)


def test_first_backward_still_uses_the_custom_ops():
    """A plain backward (no transform, no create_graph) keeps the kernels: the custom backward op runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    W = W0.clone().requires_grad_()
    y = sparse_encode(IDX, VAL, W)
    with Record():
        y.sum().backward()
    assert "supcomp.sparse_encode_backward.default" in seen


def test_transforms_inside_torch_compile():
    """torch.func transforms and dual levels inside a compiled function run the reference too (torch.compile
    sees the transform while tracing); without them the compiled graph keeps the custom op."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(" ".join(str(node.target) for node in gm.graph.nodes))
        return gm.forward

    t = torch.ones_like(H0)

    def transformed(h):
        with fwAD.dual_level():
            dual = fwAD.unpack_dual(relu_readout(fwAD.make_dual(h, t), W0, B0)).tangent
        jvp = torch.func.jvp(lambda x: relu_readout(x, W0, B0), (h,), (t,))[1]
        grad = torch.func.grad(lambda x: relu_readout_topk(x, W0, B0, k).values.sum())(h)
        ones = torch.ones_like(VAL)
        sparse = torch.func.jvp(lambda v: sparse_encode(IDX, v, W0) + superpose(IDX, v, W0, B0).sum(), (VAL,), (ones,))
        return dual, jvp, grad, sparse[1]

    for got, want in zip(torch.compile(transformed, fullgraph=True, backend=backend)(H0), transformed(H0)):
        assert got.abs().max() > 0.1
        torch.testing.assert_close(got, want)
    assert "supcomp" not in graphs[-1]
    torch.compile(lambda h: relu_readout(h, W0, B0), fullgraph=True, backend=backend)(H0)
    assert "supcomp.relu_readout" in graphs[-1]
