"""The truncation kernels behind formatted arithmetic: exact Frobenius error control."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmat.arithmetic._recompress import recompress, svd_truncate, truncate_dense


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@st.composite
def decaying(draw):
    m = draw(st.integers(1, 300))
    n = draw(st.integers(1, 300))
    p = min(m, n)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    decay = draw(st.floats(0.2, 0.97))
    s = decay ** np.arange(p) * rng.uniform(0.5, 1.5, p)
    q1, _ = np.linalg.qr(rng.standard_normal((m, p)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, p)))
    M = (q1 * s) @ q2.T
    if draw(st.booleans()):
        M = M * (1 + 0.5j)
    if draw(st.booleans()):
        M = np.asfortranarray(M)
    return M


@settings(max_examples=60, deadline=None)
@given(M=decaying(), tol=st.floats(1e-10, 0.5), guess=st.integers(0, 50))
def test_truncate_dense_bound_and_input_kept(M, tol, guess):
    M0 = M.copy()
    for f in (lambda A: truncate_dense(A, tol, guess), lambda A: svd_truncate(A, tol)):
        U, V = f(M)
        np.testing.assert_array_equal(M, M0)  # the input is never overwritten
        err = np.linalg.norm(U @ V.conj().T - M0)
        assert err <= tol * np.linalg.norm(M0) * (1 + 1e-8) + 1e-13
        assert U.shape[1] == V.shape[1] <= min(M.shape)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 400), n=st.integers(1, 400), k=st.integers(0, 80), tol=st.floats(1e-10, 0.5),
       seed=st.integers(0, 2**16))
def test_recompress_bound(m, n, k, tol, seed):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, k)) * np.logspace(0, -12, k)
    V = rng.standard_normal((n, k))
    M = U @ V.T
    U2, V2 = recompress(U, V, tol)
    assert np.linalg.norm(U2 @ V2.T - M) <= tol * np.linalg.norm(M) * (1 + 1e-8) + 1e-13
