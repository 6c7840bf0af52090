"""Triangular solves with vector, block and H-matrix right-hand sides."""

import numpy as np
import pytest

import hmat
from hmat.arithmetic import lu, solve_triangular


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module", params=[np.float64, np.complex128])
def factors(request):
    dtype = request.param
    rng = np.random.default_rng(0)
    n = 700
    X = rng.random((n, 2))
    K = hmat.kernels.Matern(0.3).block(X, X) + 2 * np.eye(n)
    if np.dtype(dtype).kind == "c":
        K = K + 0.3j * hmat.kernels.Gaussian(0.2).block(X, X)
    H = hmat.from_dense(K.astype(dtype), tol=1e-9, points=X, leaf_size=32)
    assert H.stats()["n_lowrank"] > 100
    F = lu(H, 1e-10)
    B = hmat.from_dense((hmat.kernels.Gaussian(0.25).block(X, X) * (1 + 0.5j if dtype == np.complex128 else 1))
                        .astype(dtype), tol=1e-8, points=X, leaf_size=32)
    assert B.stats()["n_lowrank"] > 100
    return F.L, F.U, B, rng


@pytest.mark.parametrize("trans", ["N", "C"])
def test_dense_rhs_left_and_right(factors, trans):
    L, U, _, rng = factors
    n = L.shape[0]
    for T, lower, unit in ((L, True, True), (U, False, False)):
        Td = T.to_dense()
        Top = Td if trans == "N" else Td.conj().T
        for shape in ((n,), (n, 4)):
            b = rng.standard_normal(shape)
            x = solve_triangular(T, b, lower=lower, unit_diagonal=unit, trans=trans)
            assert x.shape == b.shape
            assert np.linalg.norm(Top @ x - b) <= 1e-12 * np.linalg.norm(Top) * np.linalg.norm(x) * 10
            bt = b.T
            y = solve_triangular(T, bt, lower=lower, unit_diagonal=unit, side="right", trans=trans)
            assert np.linalg.norm(y @ Top - bt) <= 1e-12 * np.linalg.norm(Top) * np.linalg.norm(y) * 10


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
def test_hmatrix_rhs(factors, tol):
    L, U, B, _ = factors
    Bd = B.to_dense()
    X = solve_triangular(L, B, lower=True, unit_diagonal=True, tol=tol)
    assert isinstance(X, hmat.HBlock)
    Ld = L.to_dense()
    Xd = np.linalg.solve(Ld, Bd)
    # error of the solution relative to the exact one: each block truncated at tol,
    # propagated through the triangular solve (cond(L) bounds the amplification)
    assert np.linalg.norm(X.to_dense() - Xd) <= np.linalg.cond(Ld) * L.depth * tol * np.linalg.norm(Xd)
    Y = solve_triangular(U, B, lower=False, side="right", tol=tol)
    Ud = U.to_dense()
    Yd = np.linalg.solve(Ud.T, Bd.T).T
    assert np.linalg.norm(Y.to_dense() - Yd) <= np.linalg.cond(Ud) * U.depth * tol * np.linalg.norm(Yd)


def test_triangular_rejects_bad_input(factors):
    L, U, B, rng = factors
    n = L.shape[0]
    with pytest.raises(TypeError, match="T must be an hmat.HBlock"):
        solve_triangular(L.to_dense(), np.ones(n))
    with pytest.raises(ValueError, match="tol is required"):
        solve_triangular(L, B)
    with pytest.raises(ValueError, match="tol"):
        solve_triangular(L, B, tol=0.0)
    with pytest.raises(ValueError, match="side"):
        solve_triangular(L, np.ones(n), side="up")
    with pytest.raises(ValueError, match="expected"):
        solve_triangular(L, np.ones(n + 1))
    with pytest.raises(ValueError, match="NaN"):
        solve_triangular(L, np.full(n, np.nan))
    with pytest.raises(ValueError, match="row_perm"):
        solve_triangular(U, B, lower=False, tol=1e-6)  # U has no row permutation, B has one
