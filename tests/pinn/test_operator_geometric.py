"""Geometry-aware H-layers (pinn.geometric)."""
import numpy as np
import pytest
import torch

import hmat
from pinn import HMatrixLinear
from pinn.geometric import geometric_block_tree, geometric_hmatrix_linear, project_to_structure
from pinn.problems.elliptic_operator import EllipticOperatorProblem


def _shuffled_grid(n, seed=0):
    x = np.linspace(0, 1, n)[:, None]
    return x[np.random.default_rng(seed).permutation(n)]


def test_structure_matches_hmat_from_dense():
    x = np.random.default_rng(1).uniform(size=(300, 2))
    y = np.random.default_rng(2).uniform(size=(200, 2))
    bt = geometric_block_tree(x, y, leaf_size=16, eta=1.5)
    W = np.exp(-np.linalg.norm(y[:, None] - x[None], axis=-1))
    H = hmat.from_dense(W, tol=1e-3, points=(y, x), eta=1.5, leaf_size=16)
    assert len(H.leaves()) == bt.leaf_ids.size
    r0, m, c0, n, adm = bt.leaf_arrays()
    assert [(lf.row_start, lf.col_start) for lf in H.leaves()] == list(zip(r0.tolist(), c0.tolist()))


def test_weight_in_original_order_with_shuffled_points():
    xin, xout = _shuffled_grid(96, 0), _shuffled_grid(80, 1)
    W = np.exp(-np.abs(xout - xin.T))  # smooth kernel in the given (shuffled) orders
    lay = geometric_hmatrix_linear(xin, xout, leaf_size=8, eta=1.0, rank=6, init=W,
                                   dtype=torch.float64, bias=False)
    Wh = lay.weight.detach().numpy()
    assert np.linalg.norm(Wh - W) / np.linalg.norm(W) < 1e-6
    x = torch.randn(4, 96, dtype=torch.float64)
    np.testing.assert_allclose(lay(x).detach().numpy(), x.numpy() @ Wh.T, atol=1e-12)
    np.testing.assert_allclose(lay.operator().to_dense(), Wh, atol=1e-14)


def test_project_is_exact_for_1d_green_function_rank_one():
    # 1-D Sturm-Liouville Green's functions are semiseparable: off-diagonal blocks have rank 1
    p = EllipticOperatorProblem(1, 256, "smooth")
    G = p.green()
    lay = geometric_hmatrix_linear(p.points, p.points, leaf_size=16, eta=1.0, rank=1, init=G,
                                   dtype=torch.float64, bias=False)
    assert np.linalg.norm(lay.weight.detach().numpy() - G) / np.linalg.norm(G) < 1e-12
    assert lay.nbytes < 0.3 * G.nbytes
    u, s, vh = np.linalg.svd(G)
    k = lay.nbytes // (8 * 2 * 256)  # low rank at the same storage is far worse
    assert np.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2)) > 1e-4


def test_tol_init_is_certified():
    p = EllipticOperatorProblem(2, 256, "smooth")
    G = p.green()
    for tol in (1e-2, 1e-5):
        lay = geometric_hmatrix_linear(p.points, p.points, leaf_size=16, eta=1.0, init=G, tol=tol,
                                       dtype=torch.float64)
        assert np.linalg.norm(lay.weight.detach().numpy() - G) <= tol * np.linalg.norm(G) * (1 + 1e-9)
        assert lay.tol == tol


def test_project_to_structure_is_blockwise_best():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(64, 1))
    W = rng.standard_normal((64, 64))
    bt = geometric_block_tree(x, x, leaf_size=8, eta=1.0)
    ops = project_to_structure(W, bt, 2)
    H = hmat.HBlock.from_partition(bt.partition(), ops)
    Wp = W[np.ix_(bt.row_tree.perm, bt.col_tree.perm)]
    r0, m, c0, n, adm = bt.leaf_arrays()
    for i in np.flatnonzero(adm)[:5]:
        B = Wp[r0[i]:r0[i] + m[i], c0[i]:c0[i] + n[i]]
        s = np.linalg.svd(B, compute_uv=False)
        err = np.linalg.norm(ops[i].to_dense() - B)
        assert abs(err - np.sqrt(np.sum(s[2:] ** 2))) < 1e-10
    assert H.shape == (64, 64)


def test_zeros_init_is_zero_but_trainable():
    x = np.linspace(0, 1, 64)[:, None]
    lay = geometric_hmatrix_linear(x, x, leaf_size=8, eta=1.0, rank=2, init="zeros",
                                   dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert float(lay.weight.detach().abs().max()) == 0.0
    g = torch.Generator().manual_seed(1)
    X = torch.randn(5, 64, dtype=torch.float64, generator=g)
    Z = torch.randn(5, 64, dtype=torch.float64, generator=g)
    (lay(X) * Z).sum().backward()
    # expected: L = sum(Z * (X W^T + b)) has dL/dW = Z^T X (the dense equivalent), and each
    # leaf's gradient is its block of it: dense dL/dA = G_b, low-rank dL/dU = G_b V (= 0 at
    # V = 0), dL/dV = G_b^T U (not 0: the layer is trainable)
    G = Z.t() @ X
    rp = torch.arange(64) if lay.row_perm is None else lay.row_perm
    cp = torch.arange(64) if lay.col_perm is None else lay.col_perm
    n_v = 0
    for i, d in enumerate(lay.leaf_info()):
        Gb = G[rp[d["r0"]:d["r0"] + d["m"]]][:, cp[d["c0"]:d["c0"] + d["n"]]]
        f = lay.leaf_factors(i)
        if d["kind"] == "dense":
            torch.testing.assert_close(f[0].grad, Gb, rtol=1e-12, atol=1e-12)
        else:
            U, V = f
            torch.testing.assert_close(U.grad, Gb @ V.detach(), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(V.grad, Gb.t() @ U.detach(), rtol=1e-12, atol=1e-12)
            n_v += int(U.shape[1] > 0 and float(Gb.abs().max()) > 0)
    assert n_v > 0  # some low-rank leaf has a non-trivial expected V gradient
    info = lay.leaf_info()
    assert any(d["kind"] == "lowrank" and d["rank"] == 2 for d in info)


def test_glorot_init_deterministic_and_state_dict_round_trip():
    x = np.random.default_rng(0).uniform(size=(50, 2))
    y = np.random.default_rng(1).uniform(size=(40, 2))
    mk = lambda: geometric_hmatrix_linear(x, y, leaf_size=6, eta=1.0, rank=3,  # noqa: E731
                                          generator=torch.Generator().manual_seed(7))
    a, b = mk(), mk()
    assert torch.equal(a.weight, b.weight)
    c = HMatrixLinear(50, 40, rank=1)
    c.load_state_dict(a.state_dict())
    xx = torch.randn(3, 50)
    torch.testing.assert_close(c(xx), a(xx))


def test_gradcheck_through_geometric_layer():
    x = np.linspace(0, 1, 16)[:, None]
    lay = geometric_hmatrix_linear(_shuffled_grid(16), x, leaf_size=4, eta=1.0, rank=2,
                                   dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    from pinn.autograd import StructuredLinearFn

    info = lay.leaf_info()
    i_d = next(i for i, d in enumerate(info) if d["kind"] == "dense")
    i_l = next(i for i, d in enumerate(info) if d["kind"] == "lowrank")
    st = lay.structure
    chosen = [st.leaves[i_d].idx[0], *st.leaves[i_l].idx]  # one dense leaf, one U, one V
    base = [p.detach() for p in lay.factors]

    def fn(z, *ps):
        full = list(base)
        for j, p in zip(chosen, ps):
            full[j] = p
        return StructuredLinearFn.apply(z, st, *full)

    inp = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    ps = tuple(base[j].clone().requires_grad_(True) for j in chosen)
    assert torch.autograd.gradcheck(fn, (inp, *ps))
    assert torch.autograd.gradgradcheck(fn, (inp, *ps))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(in_points=np.zeros((4, 2)), out_points=np.zeros((4, 1))), ValueError, "dimension"),
    (dict(in_points="abc"), TypeError, "in_points"),
    (dict(out_points=np.full((4, 1), np.nan)), ValueError, "out_points"),
    (dict(leaf_size=0), ValueError, "leaf_size"),
    (dict(eta=0.0), ValueError, "eta"),
    (dict(rank=-1), ValueError, "rank"),
    (dict(init="ones"), ValueError, "init"),
    (dict(init=np.zeros((3, 3))), ValueError, "init"),
    (dict(init="zeros", tol=1e-3), ValueError, "tol"),
    (dict(init=np.zeros((8, 8)), tol=-1.0), ValueError, "tol"),
    (dict(bias=np.zeros(3)), ValueError, "bias"),
    (dict(dtype=torch.int64), TypeError, "dtype"),
    (dict(factor_scale=0.0), ValueError, "factor_scale"),
])
def test_bad_input(kwargs, exc, word):
    x = np.linspace(0, 1, 8)[:, None]
    args = dict(in_points=x, out_points=x)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        geometric_hmatrix_linear(**args)


@pytest.mark.parametrize("dim,n,rank", [(1, 200, 2), (2, 144, 3), (1, 64, 0)])
def test_grouped_forward_matches_layer(dim, n, rank):
    from pinn.geometric import GroupedHForward

    p = EllipticOperatorProblem(dim, n, "smooth")
    pts = p.points[np.random.default_rng(0).permutation(n)]  # arbitrary neuron order
    lay = geometric_hmatrix_linear(pts, p.points, leaf_size=8, eta=1.0, rank=rank,
                                   dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lay.bias.normal_()
    g = GroupedHForward(lay)
    assert g.num_groups <= lay.num_leaves
    x = torch.randn(2, 3, n, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(g(x), lay(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="last dimension"):
        g(torch.zeros(2, n + 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="HMatrixLinear"):
        GroupedHForward(torch.nn.Linear(3, 3))


def test_install_geometric_structure_into_existing_layer():
    # what HMatrixLinear(..., in_points=, out_points=) will call
    from pinn.geometric import install_geometric_structure

    xin = np.random.default_rng(0).uniform(size=(64, 2))
    xout = np.random.default_rng(1).uniform(size=(48, 2))
    lay = HMatrixLinear(64, 48, leaf_size=8, rank=1)
    out = install_geometric_structure(lay, xin, xout, leaf_size=8, eta=1.0, rank=2,
                                      generator=torch.Generator().manual_seed(0))
    assert out is lay
    ref = geometric_hmatrix_linear(xin, xout, leaf_size=8, eta=1.0, rank=2,
                                   generator=torch.Generator().manual_seed(0))
    assert lay.num_leaves == ref.num_leaves
    torch.testing.assert_close(lay.weight, ref.weight)
    x = torch.randn(3, 64)
    torch.testing.assert_close(lay(x), x @ lay.weight.t() + lay.bias)
    opt = torch.optim.Adam(lay.parameters(), lr=1e-3)  # the new leaves are the parameters
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == \
        sum(p.numel() for p in lay.factors) + 48
    c = HMatrixLinear(64, 48)
    c.load_state_dict(lay.state_dict())
    torch.testing.assert_close(c(x), lay(x))
    with pytest.raises(ValueError, match="in_points"):
        install_geometric_structure(lay, xin[:10], xout)
    with pytest.raises(ValueError, match="out_points"):
        install_geometric_structure(lay, xin, xout[:10])
    with pytest.raises(TypeError, match="layer"):
        install_geometric_structure(torch.nn.Linear(2, 2), xin, xout)
