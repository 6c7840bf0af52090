"""H-Cholesky of kernel matrices plus noise against dense LAPACK."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hmat
from hmat.arithmetic import CholeskyFactorization, Identity, add, cholesky


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def gp_matrix(n, kernel, noise, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    K = kernel.block(X, X) + noise * np.eye(n)
    if np.dtype(dtype).kind == "c":
        # a unitary diagonal similarity keeps K Hermitian positive definite and smooth
        ph = np.exp(2j * X @ np.array([1.0, 2.0]))
        K = K * np.outer(ph, ph.conj())
    return K.astype(dtype), X


@pytest.mark.parametrize("kernel,dtype,tol", [
    (hmat.kernels.Gaussian(0.3), np.float64, 1e-4),
    (hmat.kernels.Gaussian(0.3), np.complex128, 1e-8),
    (hmat.kernels.Matern(0.3, nu=1.5), np.float64, 1e-8),
    (hmat.kernels.Matern(0.3, nu=1.5), np.complex128, 1e-4),
], ids=["gaussian-f64", "gaussian-c128", "matern32-f64", "matern32-c128"])
def test_cholesky_against_dense(kernel, dtype, tol):
    n = 900
    K, X = gp_matrix(n, kernel, 0.1, dtype=dtype)
    H = hmat.from_dense(K, tol=1e-9, points=X, leaf_size=32)
    assert H.stats()["n_lowrank"] > 100  # not a vacuous test
    Hd = H.to_dense()
    F = cholesky(H, tol)
    assert isinstance(F, CholeskyFactorization) and F.dtype == dtype
    L = F.L.to_dense()
    err = np.linalg.norm(L @ L.conj().T - Hd) / np.linalg.norm(Hd)
    assert err <= H.depth * tol
    # logdet: |log det(H+E) - log det H| <= ||H^-1||_F ||E||_F (first order, x2)
    s, ld = F.logdet()
    s0, ld0 = np.linalg.slogdet(Hd)
    E = L @ L.conj().T - Hd
    assert abs(ld - ld0) <= 2 * np.linalg.norm(np.linalg.inv(Hd)) * np.linalg.norm(E) * np.sqrt(n)
    assert np.isclose(s0, 1) and s == 1
    rng = np.random.default_rng(1)
    x_true = rng.standard_normal(n)
    x = F.solve(Hd @ x_true)
    assert np.linalg.norm(x - x_true) / np.linalg.norm(x_true) <= np.linalg.cond(Hd) * H.depth * tol


def test_cholesky_of_kernel_plus_sigma2_identity():
    """The GP workflow: from_kernel, + sigma^2 I, Cholesky, solve, logdet."""
    n, sigma = 1500, 0.2
    rng = np.random.default_rng(4)
    X = rng.random((n, 3))
    K = hmat.from_kernel(hmat.kernels.Matern(0.2, nu=1.5), X, tol=1e-8)
    A = add(K, sigma**2 * Identity(n), tol=1e-10)
    Ad = hmat.kernels.Matern(0.2, nu=1.5).block(X, X) + sigma**2 * np.eye(n)
    F = cholesky(A, 1e-7)
    s, ld = F.logdet()
    assert abs(ld - np.linalg.slogdet(Ad)[1]) <= 1e-4 * abs(ld)
    y = rng.standard_normal(n)
    alpha = F.solve(y)
    assert np.linalg.norm(Ad @ alpha - y) / np.linalg.norm(y) < 1e-4
    Y = rng.standard_normal((n, 3))
    np.testing.assert_allclose(F.solve(Y)[:, 1], F @ Y[:, 1], rtol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(10, 400), leaf=st.sampled_from([8, 16, 64]), tol=st.sampled_from([1e-3, 1e-6, 1e-9]),
       weak=st.booleans(), seed=st.integers(0, 2**16))
def test_cholesky_law_random_structures(n, leaf, tol, weak, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    K = hmat.kernels.Gaussian(0.4).block(X, X) + 0.3 * np.eye(n)
    H = hmat.from_dense(K, tol=1e-11, points=None if weak else X, leaf_size=leaf)
    F = cholesky(H, tol)
    L = F.L.to_dense()
    Hd = H.to_dense()
    assert np.linalg.norm(L @ L.T - Hd) / np.linalg.norm(Hd) <= H.depth * tol
    # L is lower triangular in the cluster ordering (L carries only a row permutation)
    Lp = L[F.perm]
    assert np.allclose(np.triu(Lp, 1), 0)


def test_indefinite_error_names_block():
    n = 400
    rng = np.random.default_rng(5)
    X = rng.random((n, 3))
    K = hmat.kernels.Gaussian(0.3).block(X, X) - 0.5 * np.eye(n)  # eigenvalues down to -0.5
    H = hmat.from_dense(K, tol=1e-8, points=X, leaf_size=32)
    with pytest.raises(ValueError, match=r"not numerically positive definite.*diagonal block at rows \[\d+, \d+\).*"
                                         r"original indices"):
        cholesky(H, 1e-6)


def test_cholesky_rejects_bad_input():
    rng = np.random.default_rng(6)
    X = rng.random((100, 3))
    K = hmat.kernels.Gaussian(0.3).block(X, X) + np.eye(100)
    H = hmat.from_dense(K, tol=1e-8, points=X)
    with pytest.raises(TypeError, match="H must be an hmat.HBlock"):
        cholesky(hmat.Dense(K))
    with pytest.raises(ValueError, match="tol"):
        cholesky(H, 0)
    with pytest.raises(ValueError, match="H must be square"):
        cholesky(hmat.from_dense(rng.random((100, 80))), 1e-6)
    Hp = hmat.HBlock([[hmat.Dense(K)]], row_perm=np.arange(100), col_perm=rng.permutation(100))
    with pytest.raises(ValueError, match="row_perm != col_perm"):
        cholesky(Hp, 1e-6)


@pytest.mark.slow
def test_cholesky_gp_4000_against_lapack():
    n = 4000
    K, X = gp_matrix(n, hmat.kernels.Matern(0.2, nu=1.5), 0.01)
    H = hmat.from_dense(K, tol=1e-9, points=X)
    F = cholesky(H, 1e-7)
    Hd = H.to_dense()
    L = F.L.to_dense()
    assert np.linalg.norm(L @ L.T - Hd) <= H.depth * 1e-7 * np.linalg.norm(Hd)
    E = L @ L.T - Hd
    bound = 2 * np.linalg.norm(np.linalg.inv(Hd)) * np.linalg.norm(E) * np.sqrt(n)
    assert abs(F.logdet()[1] - np.linalg.slogdet(Hd)[1]) <= bound
