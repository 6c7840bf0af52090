"""The numerical toolbox: one rank rule, one recompression, one permuted apply."""

import numpy as np
import pytest

import hmat
from hmat.linalg import permuted_apply, rank_for_tol, recompress, svd_truncate


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
def test_rank_for_tol_is_the_smallest_rank_meeting_the_tail_rule(scale):
    s = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.0]) * scale
    ref = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.0])
    for tol in [0.0, 1e-3, 0.06, 0.1, 0.3, 0.99]:
        k = rank_for_tol(s, tol)
        tails = [np.sqrt(np.sum(ref[j:] ** 2)) for j in range(ref.size + 1)]
        ok = [j for j in range(ref.size + 1) if tails[j] <= tol * tails[0] * (1 + 1e-15)]
        assert k == ok[0]
    assert rank_for_tol(s, 0.3 * scale, norm=1.0) == 4  # absolute: ||(0.25, 0)|| <= 0.3
    assert rank_for_tol(np.zeros(0), 0.1) == 0
    with pytest.raises(ValueError, match="s must be"):
        rank_for_tol(np.ones((2, 2)), 0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
@pytest.mark.parametrize("k", [3, 40])  # QR core / explicit product
def test_recompress_error_law(dtype, k):
    rng = np.random.default_rng(0)
    m, n = 30, 25
    U = (rng.standard_normal((m, k)) * np.logspace(0, -8, k)).astype(dtype)
    V = rng.standard_normal((n, k)).astype(dtype)
    A = U.astype(np.complex128) @ V.astype(np.complex128).conj().T
    for tol in [1e-2, 1e-4]:
        U2, V2, err, nrm = recompress(U, V, tol=tol, return_norm=True)
        diff = np.linalg.norm(A - U2 @ V2.conj().T)
        eps = 50 * np.finfo(dtype).eps * np.linalg.norm(A)
        assert diff <= tol * np.linalg.norm(A) + eps
        assert abs(diff - err) <= eps and abs(nrm - np.linalg.norm(A)) <= eps
        W, s, Zh = np.linalg.svd(A)
        assert U2.shape[1] == rank_for_tol(s, tol)
    U2, V2, err = recompress(U, V, rank=2)
    assert U2.shape[1] == 2
    Ua, Va, e = svd_truncate(A, tol=1e-3)
    assert np.linalg.norm(A - Ua @ Va.conj().T) <= 1e-3 * np.linalg.norm(A) + 1e-12
    assert hmat.svd.recompress is recompress and hmat.svd.svd_truncate is svd_truncate


def test_permuted_apply():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 4))
    rp, cp = rng.permutation(5), rng.permutation(4)
    Ap = A[np.ix_(rp, cp)]  # the matrix in permuted coordinates
    x = rng.standard_normal(4)
    assert np.allclose(permuted_apply(lambda z: Ap @ z, x, cp, rp), A @ x, rtol=0, atol=1e-14)
    X = rng.standard_normal((4, 3))
    assert np.allclose(permuted_apply(lambda z: Ap @ z, X, cp, rp), A @ X, rtol=0, atol=1e-14)
    assert np.array_equal(permuted_apply(lambda z: 2 * z, x), 2 * x)
