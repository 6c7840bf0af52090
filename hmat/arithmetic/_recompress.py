"""Low-overhead recompression of ``U V^H`` for the many small blocks of H-arithmetic (private).

Same result as :func:`hmat.svd.recompress` (QR of both factors, SVD of the core, keep the
fewest singular values with ``||dropped||_F <= tol ||U V^H||_F``), but calling LAPACK
directly (``geqrf``/``orgqr``/``gesdd``) to avoid numpy's per-call overhead, and taking
the SVD of the explicit ``m x n`` block when the stacked rank is not small against it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import get_lapack_funcs

from .._norms import fro, pow2_exponent, tail_norms

_cache = {}


def _funcs(dtype):
    f = _cache.get(dtype)
    if f is None:
        proto = np.empty((1, 1), dtype)
        geqrf, gesdd = get_lapack_funcs(("geqrf", "gesdd"), (proto,))
        orgqr = get_lapack_funcs("ungqr" if dtype.kind == "c" else "orgqr", (proto,))
        f = _cache[dtype] = (geqrf, orgqr, gesdd)
    return f


_failures = [0]


def _svd(a, gesdd):
    """Thin SVD by LAPACK gesdd; ``a`` is left intact (gesvd fallback if gesdd fails)."""
    u, s, vt, info = gesdd(a, compute_uv=1, full_matrices=0, overwrite_a=0)
    if info != 0:  # rare divide-and-conquer failure: the slower, robust driver
        _failures[0] += 1
        import scipy.linalg as sla

        u, s, vt = sla.svd(a, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    return u, s, vt


def _rank(s, tol):
    """Fewest leading singular values with ``||s[r:]|| <= tol ||s||`` (scale-safe)."""
    tail = tail_norms(s)[:-1]  # tail[k] = ||s[k:]||
    if tail.size == 0:
        return 0
    ok = np.flatnonzero(tail <= tol * tail[0])
    return int(ok[0]) if ok.size else int(s.size)


def svd_truncate(M, tol):
    """``(U, V)`` with ``U V^H`` the best approximation of the dense ``M`` within relative ``tol``."""
    m, n = M.shape
    if m == 0 or n == 0:
        return np.zeros((m, 0), M.dtype), np.zeros((n, 0), M.dtype)
    gesdd = _funcs(M.dtype)[2]
    W, s, Zh = _svd(np.asfortranarray(M), gesdd)
    r = _rank(s, tol)
    return np.ascontiguousarray(W[:, :r] * s[:r]), np.ascontiguousarray(Zh[:r].conj().T)


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
    geqrf, orgqr, gesdd = _funcs(dt)
    while FALLBACK * k < p:
        omega = _rng.standard_normal((n, k)).astype(dt, copy=False)
        qr, tau, _, _ = geqrf(np.asfortranarray(M @ omega))
        Q, _, _ = orgqr(qr, tau)
        B = Q.conj().T @ M
        err = fro(M - Q @ B)
        if err <= 0.5 * budget:
            W, s, Zh = _svd(np.asfortranarray(B), gesdd)
            rest = budget * np.sqrt(1.0 - (err / budget) ** 2)  # (budget^2 - err^2)^(1/2)
            tail = tail_norms(s)[:-1]
            ok = np.flatnonzero(tail <= rest)
            r = int(ok[0]) if ok.size else int(s.size)
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
    dt = U.dtype
    if k == 0:
        return U, V
    geqrf, orgqr, gesdd = _funcs(dt)
    if 2 * k >= min(m, n):
        # the explicit block is as cheap: one product and one SVD
        return truncate_dense(U @ V.conj().T, tol, rank_guess=min(k, min(m, n)) // 2)
    qu, tau_u, _, info_u = geqrf(np.asfortranarray(U))
    qv, tau_v, _, info_v = geqrf(np.asfortranarray(V))
    Ru = np.triu(qu[:k])
    Rv = np.triu(qv[:k])
    # the core is a product of the two R factors: scale each by a power of two (exact) so
    # that it cannot overflow or underflow; undone on the result
    eu = pow2_exponent(float(np.max(np.abs(Ru))))
    ev = pow2_exponent(float(np.max(np.abs(Rv))))
    if eu:
        Ru = Ru * math.ldexp(1.0, -eu)
    if ev:
        Rv = Rv * math.ldexp(1.0, -ev)
    core = np.asfortranarray(Ru @ Rv.conj().T)
    W, s, Zh = _svd(core, gesdd)
    r = _rank(s, tol)
    if r == 0:
        return np.zeros((m, 0), dt), np.zeros((n, 0), dt)
    Qu, _, info1 = orgqr(qu, tau_u)
    Qv, _, info2 = orgqr(qv, tau_v)
    U2 = Qu @ (W[:, :r] * s[:r])
    V2 = Qv @ Zh[:r].conj().T
    e = eu + ev
    if e:
        U2 = U2 * math.ldexp(1.0, e - e // 2)
        V2 = V2 * math.ldexp(1.0, e // 2)
    return np.ascontiguousarray(U2), np.ascontiguousarray(V2)
