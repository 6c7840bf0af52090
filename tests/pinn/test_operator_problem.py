"""EllipticOperatorProblem: discretisation, reference solves, sources, losses, bad input."""
import numpy as np
import pytest
import scipy.fft
import torch

from pinn.problems.elliptic_operator import EllipticOperatorProblem, _dst1, grid_points

CASES = [(1, 40, "constant", 0.0), (1, 33, "smooth", lambda x: 1 + x[:, 0]),
         (2, 49, "smooth", lambda x: x[:, 0] + 2 * x[:, 1]), (2, 36, "constant", 1.5)]


@pytest.mark.parametrize("dim,n,coef,g", CASES)
def test_stencil_matches_sparse_matrix_and_solve(dim, n, coef, g):
    p = EllipticOperatorProblem(dim, n, coef, boundary=g)
    u = np.random.default_rng(0).standard_normal((3, n))
    Au = p.apply_A(torch.tensor(u)).numpy()
    np.testing.assert_allclose(Au, (p.A @ u.T).T, rtol=1e-12, atol=1e-9 * np.abs(Au).max())
    f = p.sample_sources(4, seed=1)
    us = p.solve(f)
    assert p.residual_norm(us, f).max() < 1e-12
    G = p.green()
    np.testing.assert_allclose(G @ p.A.toarray(), np.eye(n), atol=1e-10)
    np.testing.assert_allclose(us, f @ G.T + p.exact_bias(), rtol=1e-10, atol=1e-12)
    assert np.allclose(p.A.toarray(), p.A.toarray().T)  # symmetric positive definite
    assert np.linalg.eigvalsh(p.A.toarray()).min() > 0


@pytest.mark.parametrize("dim,n", [(1, 20), (2, 25)])
def test_linear_solution_reproduced_with_dirichlet_data(dim, n):
    # a = const, g linear, f = 0  ->  u = g exactly (the 3/5-point stencil is exact on linears)
    g = (lambda x: 0.3 + 2 * x[:, 0]) if dim == 1 else (lambda x: 0.3 + x[:, 0] + 2 * x[:, 1])
    p = EllipticOperatorProblem(dim, n, "constant", boundary=g)
    u = p.solve(np.zeros(n))
    np.testing.assert_allclose(u, g(p.points), atol=1e-12)


def test_dst_and_preconditioner():
    x = np.random.default_rng(0).standard_normal((3, 9))
    np.testing.assert_allclose(_dst1(torch.tensor(x)).numpy(), scipy.fft.dst(x, type=1, norm="ortho"),
                               atol=1e-14)
    for dim, n in ((1, 30), (2, 36)):
        p = EllipticOperatorProblem(dim, n, "constant")
        r = torch.randn(2, n, dtype=torch.float64)
        np.testing.assert_allclose(p.apply_L0_inv(p.apply_A(r)).numpy(), r.numpy(), atol=1e-11)


@pytest.mark.parametrize("loss", ["residual", "energy", "precond"])
@pytest.mark.parametrize("dim,n", [(1, 24), (2, 25)])
def test_exact_solution_minimises_every_loss(loss, dim, n):
    p = EllipticOperatorProblem(dim, n, "smooth", loss=loss, boundary=0.7)
    f = p.sample_sources(5, seed=3)
    us = torch.tensor(p.solve(f), requires_grad=True)
    ft = torch.tensor(f)
    L = p.loss(us, ft)
    (g,) = torch.autograd.grad(L, us)
    assert float(g.abs().max()) < 1e-9 * max(1.0, float(L.detach().abs()))
    if loss != "energy":
        assert float(L.detach()) < 1e-20
    d = torch.randn_like(us) * 1e-2
    assert float(p.loss(us.detach() + d, ft)) > float(L)


def test_sources_deterministic_and_normalised():
    p = EllipticOperatorProblem(1, 128, alpha=0.5)
    a = p.sample_sources(200, seed=4)
    np.testing.assert_array_equal(a, p.sample_sources(200, seed=4))
    assert a.shape == (200, 128)
    assert 0.8 < np.mean(a**2) < 1.2
    p2 = EllipticOperatorProblem(2, 64, alpha=1.0)
    b = p2.sample_sources(100, seed=0)
    assert b.shape == (100, 64) and 0.7 < np.mean(b**2) < 1.3


def test_grid_points():
    x = grid_points(2, 3)
    assert x.shape == (9, 2)
    np.testing.assert_allclose(x[1], [0.25, 0.5])
    with pytest.raises(ValueError, match="dim"):
        grid_points(3, 4)


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(dim=3), ValueError, "dim"),
    (dict(n=0), ValueError, "n"),
    (dict(dim=2, n=50), ValueError, "perfect square"),
    (dict(loss="l1"), ValueError, "loss"),
    (dict(coefficient="wavy"), ValueError, "coefficient"),
    (dict(coefficient=3), TypeError, "coefficient"),
    (dict(coefficient=lambda x: -np.ones(len(x))), ValueError, "positive"),
    (dict(boundary="x"), TypeError, "boundary"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(tau=0.0), ValueError, "tau"),
])
def test_bad_input(kwargs, exc, word):
    args = dict(dim=1, n=16)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        EllipticOperatorProblem(**args)


def test_bad_call_arguments():
    p = EllipticOperatorProblem(1, 16)
    with pytest.raises(ValueError, match="k must"):
        p.sample_sources(0)
    with pytest.raises(ValueError, match="f must"):
        p.solve(np.zeros(5))
    with pytest.raises(ValueError, match="u and f"):
        p.loss(torch.zeros(2, 16), torch.zeros(3, 16))
    with pytest.raises(ValueError, match="u: last"):
        p.apply_A(torch.zeros(2, 15))
