"""Low-overhead recompression of ``U V^H`` for the many small blocks of H-arithmetic (private).

:func:`hmat.linalg.recompress` (QR of both factors, SVD of the core, keep the fewest
singular values with ``||dropped||_F <= tol ||U V^H||_F``, LAPACK called directly) without
argument checks, and a randomized range finder for the explicit ``m x n`` block when the
stacked rank is not small against it.
"""

from __future__ import annotations

import math

import numpy as np

from .._norms import fro, pow2_exponent
from ..linalg import lapack_qr, lapack_svd, rank_for_tol
from ..linalg import recompress as _recompress_factors
from ..linalg import svd_truncate as _svd_truncate


def svd_truncate(M, tol):
    """``(U, V)`` with ``U V^H`` the best approximation of the dense ``M`` within relative ``tol``."""
    U, V, _ = _svd_truncate(M, tol, check=False)
    return U, V


_rng = np.random.default_rng(20240607)

#: the randomized range finder is used while FALLBACK * (sample size) < min(m, n)
FALLBACK = 2


def truncate_dense(M, tol, rank_guess=8):
    """Like :func:`svd_truncate`, by an adaptive randomized range finder when that is cheaper.

    A sample ``Y = M @ Omega`` of ``k`` columns gives an orthonormal basis ``Q``; the
    residual ``||M - Q Q^H M||_F`` is computed exactly (not estimated) and ``k`` doubled
    until it uses at most half of the error budget ``tol ||M||_F``; the SVD of the small
    ``Q^H M`` then truncates within the rest. Falls back to the full SVD once ``k``
    reaches a third of ``min(m, n)``. The Frobenius error bound is exact either way.
    """
    m, n = M.shape
    p = min(m, n)
    k = max(int(rank_guess), 4) + 8
    if FALLBACK * k >= p:
        return svd_truncate(M, tol)
    dt = M.dtype
    e = pow2_exponent(float(np.max(np.abs(M))))
    if e:
        # work on 2^-e M (exact) so that no norm below can overflow or underflow
        U, V = truncate_dense(M * math.ldexp(1.0, -e), tol, rank_guess)
        return U * math.ldexp(1.0, e - e // 2), V * math.ldexp(1.0, e // 2)
    norm = fro(M)
    if norm == 0.0:
        return np.zeros((m, 0), dt), np.zeros((n, 0), dt)
    budget = tol * norm
    while FALLBACK * k < p:
        omega = _rng.standard_normal((n, k)).astype(dt, copy=False)
        Q, _ = lapack_qr(M @ omega)
        B = Q.conj().T @ M
        err = fro(M - Q @ B)
        if err <= 0.5 * budget:
            W, s, Zh = lapack_svd(np.asfortranarray(B))
            rest = budget * np.sqrt(1.0 - (err / budget) ** 2)  # (budget^2 - err^2)^(1/2)
            r = rank_for_tol(s, rest, norm=1.0)
            return np.ascontiguousarray(Q @ (W[:, :r] * s[:r])), np.ascontiguousarray(Zh[:r].conj().T)
        k *= 2
    return svd_truncate(M, tol)


def recompress(U, V, tol):
    """Truncate ``U V^H`` to relative Frobenius error ``tol``.

    Parameters
    ----------
    U : ndarray, shape (m, k)
    V : ndarray, shape (n, k)
        Same dtype (float32/64, complex64/128).
    tol : float

    Returns
    -------
    U2 : ndarray, shape (m, r), C-contiguous
    V2 : ndarray, shape (n, r)
    """
    m, k = U.shape
    n = V.shape[0]
    if k == 0:
        return U, V
    if 2 * k >= min(m, n):
        # the explicit block is as cheap: one product and one (randomized) SVD
        return truncate_dense(U @ V.conj().T, tol, rank_guess=min(k, min(m, n)) // 2)
    U2, V2, _ = _recompress_factors(U, V, tol, check=False)
    return U2, V2
