"""hmat.testing: the public dot test and conformance checks, for users' own operators.

Each check must pass on correct operators (with an independent dense reference) and must
fail, naming the law, on operators broken in one way each.
"""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st

import hmat
from hmat.testing import check_operator, dottest, frobenius_estimate

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _matrix(rng, m, n, dtype, scale=1.0):
    A = rng.standard_normal((m, n))
    if np.dtype(dtype).kind == "c":
        A = A + 1j * rng.standard_normal((m, n))
    return (scale * A).astype(dtype)


class _Broken(spla.LinearOperator):
    """A scipy operator over a dense matrix, with one law broken on purpose."""

    def __init__(self, A, flaw=None):
        super().__init__(A.dtype, A.shape)
        self.A, self.flaw = A, flaw

    def _matvec(self, x):
        y = self.A @ x
        if self.flaw == "matvec_dtype":
            return y.astype(np.complex128)
        return y

    def _matmat(self, X):
        Y = self.A @ X
        if self.flaw == "matmat":
            Y = Y.copy()
            Y[0, -1] += 1.0
        return Y

    def _rmatvec(self, y):
        if self.flaw == "no_conj":  # transpose instead of conjugate transpose
            return self.A.T @ y
        if self.flaw == "rmatvec":
            return 1.01 * (self.A.conj().T @ y)
        return self.A.conj().T @ y

    def _adjoint(self):
        if self.flaw == "adjoint":
            return _Broken(self.A.conj().T[::-1].copy())
        return _Broken(self.A.conj().T.copy(), None if self.flaw in (None, "nonlinear") else None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hmat_operators_pass_with_independent_reference(dtype):
    rng = np.random.default_rng(0)
    A = _matrix(rng, 30, 20, dtype)
    check_operator(hmat.Dense(A.copy()), A)
    U, V = _matrix(rng, 30, 3, dtype), _matrix(rng, 20, 3, dtype)
    check_operator(hmat.LowRank(U, V), U.astype(np.complex128) @ V.astype(np.complex128).conj().T)
    dottest(hmat.Dense(A.copy()))


def test_kernel_hblock_passes_against_the_kernel_evaluated_densely():
    pts = hmat.sphere_points(600)
    K = hmat.kernels.Gaussian(0.5)
    H = hmat.from_kernel(K, pts, tol=1e-10, leaf_size=32)
    ref = K.block(pts, pts)  # the kernel, not the H-matrix: an independent reference
    check_operator(H, ref, rtol=1e-8)
    # the same H against a perturbed reference must fail
    bad = ref.copy()
    bad[5, 7] += 1e-3 * np.abs(ref).max()
    with pytest.raises(AssertionError, match="reference"):
        check_operator(H, bad, rtol=1e-8)


@pytest.mark.parametrize("flaw, law", [
    ("rmatvec", "dot test"),
    ("matmat", "matmat"),
    ("matvec_dtype", "dtype"),
])
def test_each_broken_law_is_caught(flaw, law):
    A = _matrix(np.random.default_rng(1), 12, 9, np.float64)
    with pytest.raises(AssertionError, match=law):
        check_operator(_Broken(A, flaw))


def test_transpose_instead_of_adjoint_is_caught_for_complex():
    A = _matrix(np.random.default_rng(2), 10, 10, np.complex128)
    with pytest.raises(AssertionError, match="dot test"):
        dottest(_Broken(A, "no_conj"))
    # for a real matrix the transpose *is* the adjoint: the same operator passes
    R = _matrix(np.random.default_rng(2), 10, 10, np.float64)
    dottest(_Broken(R, "no_conj"))


def test_wrong_length_must_raise_valueerror():
    class Lenient(_Broken):
        def matvec(self, x):  # silently accepts any length
            x = np.asarray(x)
            y = self.A @ np.resize(x.reshape(-1), self.shape[1])
            return y.reshape(-1, 1) if x.ndim == 2 else y

    A = _matrix(np.random.default_rng(3), 6, 5, np.float64)
    with pytest.raises(AssertionError, match="did not raise ValueError"):
        check_operator(Lenient(A))


def test_frobenius_estimate_is_within_a_factor_two():
    rng = np.random.default_rng(4)
    for dtype in DTYPES:
        A = _matrix(rng, 200, 150, dtype)
        est = frobenius_estimate(hmat.Dense(A), n_probes=8)
        true = np.linalg.norm(A.astype(np.complex128))
        assert 0.5 * true <= est <= 2.0 * true


def test_bad_arguments():
    A = hmat.Dense(np.eye(3))
    with pytest.raises(TypeError, match="op"):
        dottest(np.eye(3))
    with pytest.raises(ValueError, match="rtol"):
        dottest(A, rtol=2.0)
    with pytest.raises(ValueError, match="reference"):
        check_operator(A, np.eye(4))
    with pytest.raises(ValueError, match="n_probes"):
        frobenius_estimate(A, n_probes=0)


@settings(max_examples=25, deadline=None)
@given(exponent=st.integers(-300, 300), dtype=st.sampled_from([np.float64, np.complex128]))
def test_checks_are_scale_safe(exponent, dtype):
    """Correct operators pass and a broken adjoint fails at every representable scale."""
    rng = np.random.default_rng(abs(exponent))
    A = _matrix(rng, 8, 6, dtype, scale=10.0 ** exponent)
    check_operator(hmat.Dense(A.copy()), A)
    with pytest.raises(AssertionError, match="dot test"):
        dottest(_Broken(A, "rmatvec"))
