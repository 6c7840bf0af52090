"""Formatted H-matrix products against dense products."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hmat
from hmat.arithmetic import multiply

ROUND = 1e-12


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def operands(n=600, seed=0, dtype=np.float64, eta2=2.0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    K1 = hmat.kernels.Matern(0.3).block(X, X)
    K2 = hmat.kernels.Exponential(0.2).block(X, X)
    if np.dtype(dtype).kind == "c":
        K1 = K1 * np.exp(1j * (X[:, :1] - X[:, 0]))
        K2 = K2 * (1 - 0.3j)
    A = hmat.from_dense(K1.astype(dtype), tol=1e-7, points=X, leaf_size=16)
    B = hmat.from_dense(K2.astype(dtype), tol=1e-7, points=X, eta=eta2, leaf_size=16)
    if n >= 600:  # not a vacuous test: many low-rank leaves
        assert A.stats()["n_lowrank"] > 100 and B.stats()["n_lowrank"] > 50
    return A, B, X


@pytest.mark.parametrize("dtype,tol,eta2", [
    (np.float64, 1e-2, 2.0), (np.complex128, 1e-8, 2.0),  # same block structure
    (np.float64, 1e-8, 0.8), (np.complex128, 1e-2, 0.8),  # B on another admissibility
])
def test_multiply_error_bound(dtype, tol, eta2):
    """Law (docstring): ||C - AB||_F <= tol ||AB||_F (one truncation per low-rank leaf)."""
    A, B, _ = operands(dtype=dtype, eta2=eta2)
    P = A.to_dense() @ B.to_dense()
    C = multiply(A, B, tol)
    assert C.dtype == dtype and C.shape == A.shape
    assert np.linalg.norm(C.to_dense() - P) <= (tol + ROUND) * np.linalg.norm(P)
    C2 = multiply(A, B, tol, alpha=-2.0)
    assert np.linalg.norm(C2.to_dense() + 2 * P) <= (tol + ROUND) * 2 * np.linalg.norm(P)


def test_multiply_with_explicit_structure_and_adjoint():
    A, B, _ = operands(seed=1)
    P = A.to_dense() @ B.to_dense().T
    C = multiply(A, B.H, 1e-6, structure=A)
    assert np.linalg.norm(C.to_dense() - P) <= (1e-6 + ROUND) * np.linalg.norm(P)


def test_multiply_rectangular_needs_structure():
    rng = np.random.default_rng(2)
    X, Y = rng.random((300, 2)), rng.random((200, 2))
    A = hmat.from_kernel(hmat.kernels.Gaussian(0.3), X, targets=Y, tol=1e-8, leaf_size=32)  # 200 x 300
    B = hmat.from_kernel(hmat.kernels.Gaussian(0.3), Y, targets=X, tol=1e-8, leaf_size=32)  # 300 x 200
    with pytest.raises(ValueError, match="structure is required"):
        multiply(A, B, 1e-6)
    S = hmat.from_kernel(hmat.kernels.Gaussian(0.3), Y, tol=1e-8, leaf_size=32)  # 200 x 200 on Y's tree
    C = multiply(A, B, 1e-6, structure=S)
    P = A.to_dense() @ B.to_dense()
    assert np.linalg.norm(C.to_dense() - P) <= (1e-6 + ROUND) * np.linalg.norm(P)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(5, 300), leaf=st.sampled_from([4, 16, 64]), tol=st.floats(1e-10, 0.3),
       weak=st.booleans(), seed=st.integers(0, 2**16))
def test_multiply_law_hypothesis(n, leaf, tol, weak, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    pts = None if weak else X
    A = hmat.from_dense(hmat.kernels.Exponential(0.5).block(X, X), tol=1e-10, points=pts, leaf_size=leaf)
    B = hmat.from_dense(hmat.kernels.Gaussian(0.3).block(X, X), tol=1e-10, points=pts, leaf_size=leaf, eta=1.0)
    P = A.to_dense() @ B.to_dense()
    C = multiply(A, B, tol)
    assert np.linalg.norm(C.to_dense() - P) <= (tol + ROUND) * np.linalg.norm(P) + 1e-13


def test_multiply_rejects_bad_input():
    A, B, X = operands(n=150)
    with pytest.raises(TypeError, match="B must be an hmat.HBlock"):
        multiply(A, B.to_dense())
    with pytest.raises(ValueError, match="tol"):
        multiply(A, B, -1.0)
    other = hmat.from_dense(B.to_dense(), tol=1e-6, points=np.random.default_rng(1).random((150, 2)))
    with pytest.raises(ValueError, match="col_perm|cluster tree"):
        multiply(A, other)
    R = hmat.from_dense(np.ones((100, 150)))
    with pytest.raises(ValueError, match="inner dimensions"):
        multiply(A, R)
