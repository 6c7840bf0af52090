"""Every scipy.sparse.linalg solver takes our operators as they are and agrees with dense."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import hmat


@pytest.fixture(scope="module")
def spd():
    """Symmetric positive definite: Matern kernel matrix plus a shift, as an H-matrix."""
    rng = np.random.default_rng(0)
    pts = rng.random((400, 2))
    k = hmat.kernels.Matern(0.3, nu=2.5)
    H = hmat.from_kernel(k, pts, tol=1e-10, leaf_size=32)
    S = H + 0.5 * hmat.Dense(np.eye(400))
    return S, S.to_dense()


@pytest.fixture(scope="module")
def nonsym():
    rng = np.random.default_rng(1)
    pts = rng.random((300, 3))
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-10, leaf_size=32)
    A = H + 30.0 * hmat.Dense(np.eye(300))
    return A, A.to_dense()


def test_no_int8_probe():
    """Our operators always declare their dtype: scipy never probes them."""
    calls = []

    class Spy(hmat.Dense):
        def _matmat(self, X):
            calls.append(X.dtype)
            return super()._matmat(X)

    op = Spy(np.eye(3))
    spla.aslinearoperator(op)
    assert op.dtype == np.float64 and not calls


def test_cg_minres(spd):
    S, D = spd
    b = np.ones(S.shape[0])
    for solver in (spla.cg, spla.minres):
        x, info = solver(S, b, rtol=1e-10, maxiter=2000)
        xd, infod = solver(D, b, rtol=1e-10, maxiter=2000)
        assert info == 0 and infod == 0
        np.testing.assert_allclose(x, xd, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(D @ x, b, rtol=1e-7, atol=1e-7)


def test_gmres_lsqr_lsmr(nonsym):
    A, D = nonsym
    b = np.linspace(0, 1, A.shape[0])
    x, info = spla.gmres(A, b, rtol=1e-12, restart=100, maxiter=100)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(D, b), rtol=1e-8, atol=1e-10)
    for solver in (spla.lsqr, spla.lsmr):
        xs = solver(A, b, atol=1e-14, btol=1e-14)[0]
        np.testing.assert_allclose(xs, np.linalg.solve(D, b), rtol=1e-7, atol=1e-9)


def test_eigsh_svds(spd, nonsym):
    S, D = spd
    vals = spla.eigsh(S, k=4, which="LM", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(vals), np.sort(np.linalg.eigvalsh(D))[-4:], rtol=1e-9)
    A, DA = nonsym
    s = spla.svds(A, k=3, return_singular_vectors=False)
    np.testing.assert_allclose(np.sort(s), np.sort(np.linalg.svd(DA, compute_uv=False))[-3:], rtol=1e-9)


def test_expm_multiply(spd):
    S, D = spd
    b = np.ones(S.shape[0])
    scaled = -0.01 * S
    y = spla.expm_multiply(scaled, b, traceA=float(np.trace(-0.01 * D)))
    import scipy.linalg as sl

    np.testing.assert_allclose(y, sl.expm(-0.01 * D) @ b, rtol=1e-9)


def test_block_solver_gets_our_matmat(spd):
    S, D = spd
    X = np.random.default_rng(2).random((S.shape[0], 3))
    vals, vecs = spla.lobpcg(S, X, largest=True, tol=1e-9, maxiter=200)
    np.testing.assert_allclose(np.sort(vals), np.sort(np.linalg.eigvalsh(D))[-3:], rtol=1e-6)


def test_complex_gmres():
    rng = np.random.default_rng(3)
    pts = rng.random((300, 3))
    H = hmat.from_kernel(hmat.kernels.Helmholtz(4.0), pts, tol=1e-10, leaf_size=32)
    A = H + 20.0 * hmat.Dense(np.eye(300, dtype=np.complex128))
    b = rng.standard_normal(300) + 1j * rng.standard_normal(300)
    x, info = spla.gmres(A, b, rtol=1e-12, restart=100, maxiter=100)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(A.to_dense(), b), rtol=1e-8, atol=1e-10)
