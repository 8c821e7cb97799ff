"""supcomp.metrics: TMS geometry metrics on hand-built geometries with known answers."""

import math

import pytest
import torch

from supcomp import metrics as M
from supcomp.metrics import (
    dimensions_per_feature,
    feature_dimensionality,
    feature_norms,
    geometry,
    geometry_counts,
    interference,
    superposition_summary,
)

DT = torch.float64


# ----------------------------------------------------------------------------- geometries


def polygon(k, m=2, dtype=DT):
    """k unit vectors at 360°/k in the first two hidden dimensions of R^m."""
    a = torch.arange(k, dtype=dtype) * (2 * math.pi / k)
    W = torch.zeros(k, m, dtype=dtype)
    W[:, 0], W[:, 1] = a.cos(), a.sin()
    return W


def pentagon(m=2):
    return polygon(5, m)


def triangle(m=2):
    return polygon(3, m)


def tetrahedron():
    return torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=DT) / math.sqrt(3)


def square_antiprism():
    """Tight square antiprism: squares at z = ±1/√3 (radius √(2/3)), rotated 45° apart."""
    r, h = math.sqrt(2 / 3), 1 / math.sqrt(3)
    rows = []
    for ring, z in ((0.0, h), (math.pi / 4, -h)):
        for k in range(4):
            a = ring + k * math.pi / 2
            rows.append([r * math.cos(a), r * math.sin(a), z])
    return torch.tensor(rows, dtype=DT)


def cube():
    return torch.tensor([[x, y, z] for x in (1, -1) for y in (1, -1) for z in (1, -1)], dtype=DT) / math.sqrt(3)


def random_rotation(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=DT))
    return q * torch.sign(torch.diagonal(r))


def naive_interference(W):
    """Double loop straight from the definition, float64."""
    W = W.double()
    n = W.shape[0]
    out = torch.zeros(n, dtype=DT)
    for i in range(n):
        ni = W[i].norm()
        if ni < 1e-8:
            continue
        for j in range(n):
            if j != i:
                out[i] += float(W[i] @ W[j] / ni) ** 2
    return out


def naive_D(W):
    W = W.double()
    n = W.shape[0]
    out = torch.zeros(n, dtype=DT)
    for i in range(n):
        ni = W[i].norm()
        if ni < 1e-8:
            continue
        den = sum(float(W[i] @ W[j] / ni) ** 2 for j in range(n))
        out[i] = float(ni) ** 2 / den
    return out


# ----------------------------------------------------------------------------- known structures


def test_pentagon():
    W = pentagon()
    D = feature_dimensionality(W)
    assert D.shape == (5,) and D.dtype == DT
    torch.testing.assert_close(D, torch.full((5,), 2 / 5, dtype=DT))
    assert math.isclose(float(D.sum()), 2.0)  # tight packing: the D_i add up to m
    assert geometry(W) == ["pentagon"] * 5
    torch.testing.assert_close(feature_norms(W), torch.ones(5, dtype=DT))
    # Σ_{j≠i} cos² = 2 cos²72° + 2 cos²144° = 3/2
    torch.testing.assert_close(interference(W), torch.full((5,), 1.5, dtype=DT))
    torch.testing.assert_close(dimensions_per_feature(W), torch.tensor(2 / 5, dtype=DT))


def test_tms_like_pentagon_off_unit_circle_with_noise_in_bigger_space():
    """Norms 1.13 (as TMS's pentagon), rotated into m=6 and slightly perturbed: still a pentagon."""
    g = torch.Generator().manual_seed(1)
    W = 1.13 * pentagon(m=6) @ random_rotation(6, seed=2) + 2e-3 * torch.randn(5, 6, generator=g, dtype=DT)
    assert geometry(W) == ["pentagon"] * 5
    torch.testing.assert_close(feature_dimensionality(W), torch.full((5,), 0.4, dtype=DT), atol=5e-3, rtol=0)


def test_antipodal_pair_in_its_own_dimension():
    W = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=DT)
    torch.testing.assert_close(feature_dimensionality(W), torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=DT))
    torch.testing.assert_close(interference(W), torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=DT))
    assert geometry(W) == ["antipodal pair", "antipodal pair", "dedicated dimension", "dedicated dimension"]


def test_identity_is_dedicated():
    for n, m in ((4, 4), (3, 7)):
        W = torch.eye(n, m, dtype=DT)
        torch.testing.assert_close(feature_dimensionality(W), torch.ones(n, dtype=DT))
        torch.testing.assert_close(interference(W), torch.zeros(n, dtype=DT))
        torch.testing.assert_close(dimensions_per_feature(W), torch.tensor(m / n, dtype=DT))
        assert geometry(W) == ["dedicated dimension"] * n
    assert float(dimensions_per_feature(torch.eye(4))) == 1.0


def test_triangle_rotated_into_3d():
    W = triangle(m=3) @ random_rotation(3, seed=3)
    torch.testing.assert_close(feature_dimensionality(W), torch.full((3,), 2 / 3, dtype=DT))
    assert geometry(W) == ["triangle"] * 3


def test_tetrahedron():
    W = tetrahedron()
    torch.testing.assert_close(feature_dimensionality(W), torch.full((4,), 3 / 4, dtype=DT))
    assert math.isclose(float(feature_dimensionality(W).sum()), 3.0)
    assert geometry(W) == ["tetrahedron"] * 4


def test_square_antiprism_and_not_a_cube():
    W = square_antiprism()
    torch.testing.assert_close(feature_norms(W), torch.ones(8, dtype=DT))
    torch.testing.assert_close(feature_dimensionality(W), torch.full((8,), 3 / 8, dtype=DT))
    assert geometry(W) == ["square antiprism"] * 8
    assert geometry(W @ random_rotation(3, seed=4)) == ["square antiprism"] * 8
    # A cube has the same D = 3/8 but antipodal vertices: not an antiprism (and not a pentagon,
    # although 3/8 is within tol of 2/5).
    C = cube()
    torch.testing.assert_close(feature_dimensionality(C), torch.full((8,), 3 / 8, dtype=DT))
    labels = geometry(C)
    assert len(labels) == 8 and all(lab in ("other (D=0.37)", "other (D=0.38)") for lab in labels), labels


def test_bipyramids_split_into_tegum_factors():
    """Pentagonal bipyramid = 5 x 2/5 + 2 x 1/2; octahedron = 3 antipodal pairs (TMS §Geometry)."""
    W = torch.cat([pentagon(m=3), torch.tensor([[0, 0, 1.0], [0, 0, -1.0]], dtype=DT)])
    torch.testing.assert_close(feature_dimensionality(W), torch.tensor([0.4] * 5 + [0.5] * 2, dtype=DT))
    assert geometry(W) == ["pentagon"] * 5 + ["antipodal pair"] * 2
    octa = torch.cat([torch.eye(3, dtype=DT), -torch.eye(3, dtype=DT)])
    assert geometry(octa) == ["antipodal pair"] * 6


def test_other_structures():
    # a hexagon (D = 1/3) has no name
    W = polygon(6)
    torch.testing.assert_close(feature_dimensionality(W), torch.full((6,), 1 / 3, dtype=DT))
    assert geometry(W) == ["other (D=0.33)"] * 6
    # an unbalanced antipodal pair: right cosine, wrong D
    W = torch.tensor([[1.0, 0.0], [-0.7, 0.0]], dtype=DT)
    assert geometry(W) == ["other (D=0.67)", "other (D=0.33)"]
    # two unit features at 45°: D = 1/(1 + 1/2) = 2/3 like a triangle, but a pair with cosine +0.71
    W = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=DT) / torch.tensor([[1.0], [math.sqrt(2)]], dtype=DT)
    assert geometry(W) == ["other (D=0.67)"] * 2


def test_not_learned():
    W = torch.cat([triangle(m=3), torch.zeros(2, 3, dtype=DT), torch.tensor([[0.0, 0.0, 0.3]], dtype=DT)])
    D = feature_dimensionality(W)
    torch.testing.assert_close(D[3:5], torch.zeros(2, dtype=DT))
    assert float(D[5]) == pytest.approx(1.0)  # small but nonzero: D defined, label "not learned"
    torch.testing.assert_close(interference(W)[3:5], torch.zeros(2, dtype=DT))
    assert geometry(W) == ["triangle"] * 3 + ["not learned"] * 3
    assert geometry(W, norm_threshold=0.2)[5] == "dedicated dimension"
    assert geometry_counts(W) == {
        "not learned": 3,
        "dedicated dimension": 0,
        "antipodal pair": 0,
        "triangle": 3,
        "tetrahedron": 0,
        "pentagon": 0,
        "square antiprism": 0,
        "other": 0,
    }
    Z = torch.zeros(4, 2)
    assert torch.equal(feature_dimensionality(Z), torch.zeros(4))
    assert geometry(Z) == ["not learned"] * 4
    assert math.isinf(float(dimensions_per_feature(Z)))
    # eps decides what counts as not learned for D
    tiny = torch.tensor([[1e-6, 0.0]], dtype=DT)
    assert float(feature_dimensionality(tiny)) == 1.0
    assert float(feature_dimensionality(tiny, eps=1e-5)) == 0.0


# ----------------------------------------------------------------------------- batching


def _stack3():
    """I = 3, n = 8, m = 3, rows shuffled differently per instance."""
    bipyramid = torch.cat(
        [pentagon(m=3), torch.tensor([[0, 0, 1.0], [0, 0, -1.0]], dtype=DT), torch.zeros(1, 3, dtype=DT)]
    )
    tri_plus = torch.cat([triangle(m=3), torch.tensor([[0, 0, 1.0]], dtype=DT), torch.zeros(4, 3, dtype=DT)])
    labels = [
        ["square antiprism"] * 8,
        ["pentagon"] * 5 + ["antipodal pair"] * 2 + ["not learned"],
        ["triangle"] * 3 + ["dedicated dimension"] + ["not learned"] * 4,
    ]
    D = [[3 / 8] * 8, [0.4] * 5 + [0.5] * 2 + [0.0], [2 / 3] * 3 + [1.0] + [0.0] * 4]
    Ws, Ls, Ds = [], [], []
    for i, (W, lab, d) in enumerate(zip([square_antiprism(), bipyramid, tri_plus], labels, D)):
        p = torch.randperm(8, generator=torch.Generator().manual_seed(10 + i))
        Ws.append(W[p])
        Ls.append([lab[k] for k in p.tolist()])
        Ds.append(torch.tensor(d, dtype=DT)[p])
    return torch.stack(Ws), Ls, torch.stack(Ds)


def test_instance_axis():
    W, labels, D = _stack3()
    assert W.shape == (3, 8, 3)
    torch.testing.assert_close(feature_dimensionality(W), D)
    assert geometry(W) == labels
    counts = geometry_counts(W)
    assert [c["square antiprism"] for c in counts] == [8, 0, 0]
    assert [c["pentagon"] for c in counts] == [0, 5, 0]
    assert [c["antipodal pair"] for c in counts] == [0, 2, 0]
    assert [c["not learned"] for c in counts] == [0, 1, 4]
    assert all(sum(c.values()) == 8 for c in counts)
    s = superposition_summary(W)
    assert set(s) == {"norms", "D", "dims_per_feature", "interference"}
    assert s["norms"].shape == s["D"].shape == s["interference"].shape == (3, 8)
    assert s["dims_per_feature"].shape == (3,)
    torch.testing.assert_close(s["dims_per_feature"], torch.tensor([3 / 8, 3 / 7, 3 / 4], dtype=DT))
    # every batched output equals the 2-D call on its slice
    for i in range(3):
        torch.testing.assert_close(feature_norms(W)[i], feature_norms(W[i]))
        torch.testing.assert_close(interference(W)[i], interference(W[i]))
        torch.testing.assert_close(dimensions_per_feature(W)[i], dimensions_per_feature(W[i]))
        for k in s:
            torch.testing.assert_close(s[k][i], superposition_summary(W[i])[k])
        assert geometry(W[i]) == labels[i]


@pytest.mark.parametrize("n,m", [(12, 5), (4, 9)])  # both code paths (n > m and n <= m)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_interference_and_D_against_double_loop(n, m, dtype, tol):
    W = torch.randn(3, n, m, dtype=dtype)
    W[1, 2] = 0  # a not-learned row
    got_i, got_d = interference(W), feature_dimensionality(W)
    assert got_i.dtype == dtype and got_i.shape == (3, n)
    for k in range(3):
        torch.testing.assert_close(got_i[k].double(), naive_interference(W[k]), atol=tol, rtol=tol)
        torch.testing.assert_close(got_d[k].double(), naive_D(W[k]), atol=tol, rtol=tol)
    assert float(got_i[1, 2]) == 0.0 and float(got_d[1, 2]) == 0.0
    n2 = W.square().sum(-1)
    # D_i = ‖W_i‖² / (‖W_i‖² + interference_i) for learned features
    torch.testing.assert_close(got_d[0], n2[0] / (n2[0] + got_i[0]))
    torch.testing.assert_close(dimensions_per_feature(W), m / W.square().sum((-2, -1)))
    torch.testing.assert_close(feature_norms(W), W.norm(dim=-1))


def test_scale_and_rotation_invariance_of_D():
    W = torch.randn(3, 10, 4, dtype=DT)
    D = feature_dimensionality(W)
    c = torch.tensor([0.01, 3.0, 250.0], dtype=DT).view(3, 1, 1)  # a different scale per instance
    torch.testing.assert_close(feature_dimensionality(c * W), D)
    torch.testing.assert_close(feature_dimensionality(W @ random_rotation(4, seed=5)), D)
    # interference scales like ‖W‖², norms like ‖W‖
    torch.testing.assert_close(interference(c * W), c.view(3, 1) ** 2 * interference(W))
    # rescaling one feature alone does change the D of the others (sanity: the test can fail)
    W2 = W.clone()
    W2[:, 0] *= 3
    assert not torch.allclose(feature_dimensionality(W2)[:, 1:], D[:, 1:])


def test_float32_and_half_inputs():
    W32 = pentagon().float()
    D = feature_dimensionality(W32)
    assert D.dtype == torch.float32
    torch.testing.assert_close(D, torch.full((5,), 0.4))
    assert geometry(W32) == ["pentagon"] * 5
    Dh = feature_dimensionality(W32.half())
    assert Dh.dtype == torch.float32
    torch.testing.assert_close(Dh, torch.full((5,), 0.4), atol=2e-3, rtol=0)


def test_gradients_finite_with_unlearned_rows():
    W = torch.cat([triangle(m=3), torch.zeros(1, 3, dtype=DT)]).requires_grad_()
    s = superposition_summary(W)
    (s["D"].sum() + s["interference"].sum() + s["norms"].sum()).backward()
    assert torch.isfinite(W.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    W, labels, D = _stack3()
    Wc = W.float().cuda()
    got = feature_dimensionality(Wc)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), D.float())
    assert geometry(Wc) == labels


# ----------------------------------------------------------------------------- bad input

FUNCS = [
    feature_norms,
    feature_dimensionality,
    dimensions_per_feature,
    interference,
    geometry,
    geometry_counts,
    superposition_summary,
]


@pytest.mark.parametrize("f", FUNCS, ids=lambda f: f.__name__)
def test_bad_input(f):
    with pytest.raises(ValueError, match=r"^W: .*1-d"):
        f(torch.randn(5))
    with pytest.raises(ValueError, match=r"^W: .*4-d"):
        f(torch.randn(2, 2, 5, 3))
    with pytest.raises(TypeError, match=r"^W: .*floating dtype.*torch.int64"):
        f(torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^W: .*floating dtype.*torch.bool"):
        f(torch.ones(5, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"^W: expected a torch.Tensor, got list"):
        f([[1.0, 0.0]])
    with pytest.raises(ValueError, match=r"^W: .*m .*at least 1"):
        f(torch.empty(5, 0))


def test_bad_parameters():
    W = pentagon()
    with pytest.raises(ValueError, match="^tol"):
        geometry(W, tol=0)
    with pytest.raises(ValueError, match="^norm_threshold"):
        geometry(W, norm_threshold=-1)
    with pytest.raises(ValueError, match="^cos_tol"):
        geometry(W, cos_tol=float("nan"))
    with pytest.raises(ValueError, match="^eps"):
        feature_dimensionality(W, eps=-1e-3)


def test_structures_table_is_self_consistent():
    """Each template's D equals 1 / (1 + Σ cos²) of its own cosine profile."""
    for name, (k, d, prof) in M.STRUCTURES.items():
        assert len(prof) == k - 1, name
        assert d == pytest.approx(1 / (1 + sum(c * c for c in prof))), name
