"""One numerical toolbox: the rank-for-tolerance rule, recompression of ``U V^H``, truncated
SVD of an explicit block, and the permuted application of an operator.

Every truncation in hmat keeps the fewest singular values whose dropped tail meets the
Frobenius tolerance (:func:`rank_for_tol`); :func:`recompress` is the one QR + SVD
recompression (LAPACK called directly: low overhead for the many small blocks of
H-arithmetic); :func:`permuted_apply` is the one gather / apply / scatter of an operator
that works in permuted coordinates.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.linalg import get_lapack_funcs

from ._norms import ldexp_inf, pow2_exponent, tail_norms
from ._validate import check_finite_array, check_positive, check_tol

__all__ = ["rank_for_tol", "recompress", "svd_truncate", "permuted_apply"]


def rank_for_tol(s, tol, norm=None):
    """Fewest leading singular values to keep: the smallest ``k`` with
    ``||s[k:]||_2 <= tol * norm``.

    Parameters
    ----------
    s : array_like, shape (p,), float
        Singular values in descending order.
    tol : float
        >= 0. Relative tolerance (or absolute, with ``norm=1``).
    norm : float, optional
        Reference norm; default ``||s||_2`` (the Frobenius norm of the matrix), which makes
        ``||A - A_k||_F <= tol ||A||_F``.

    Returns
    -------
    int
        In ``0 .. p``. The tail norms are computed scale-safely (no overflow or underflow
        of the squares, for values from 1e-300 to 1e300).
    """
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"s must be a 1-D array of singular values, got shape {s.shape}")
    if s.size == 0:
        return 0
    tail = tail_norms(s)  # tail[k] = ||s[k:]||, tail[p] = 0
    bound = tol * (float(tail[0]) if norm is None else float(norm))
    ok = np.flatnonzero(tail[:-1] <= bound)
    return int(ok[0]) if ok.size else int(s.size)


_lapack_cache = {}
_failures = [0]


def _lapack(dtype):
    """``(geqrf, orgqr or ungqr, gesdd)`` of ``dtype``."""
    f = _lapack_cache.get(dtype)
    if f is None:
        proto = np.empty((1, 1), dtype)
        geqrf, gesdd = get_lapack_funcs(("geqrf", "gesdd"), (proto,))
        orgqr = get_lapack_funcs("ungqr" if dtype.kind == "c" else "orgqr", (proto,))
        f = _lapack_cache[dtype] = (geqrf, orgqr, gesdd)
    return f


def lapack_svd(a):
    """Thin SVD ``(W, s, Zh)`` of a Fortran-ordered ``a`` by LAPACK gesdd, ``a`` intact (the
    slower, robust gesvd where divide-and-conquer fails)."""
    gesdd = _lapack(a.dtype)[2]
    u, s, vt, info = gesdd(a, compute_uv=1, full_matrices=0, overwrite_a=0)
    if info != 0:
        _failures[0] += 1
        import scipy.linalg as sla

        u, s, vt = sla.svd(a, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    return u, s, vt


def lapack_qr(A):
    """``(Q, R)`` thin QR of a tall ``A`` (m >= k) by LAPACK geqrf + orgqr/ungqr."""
    geqrf, orgqr, _ = _lapack(A.dtype)
    k = A.shape[1]
    qr, tau, _, _ = geqrf(np.asfortranarray(A))
    R = np.triu(qr[:k])
    Q, _, _ = orgqr(qr, tau)
    return Q, R


def _check_abs_err(abs_err):
    if abs_err is None:
        return None
    if not isinstance(abs_err, numbers.Real) or isinstance(abs_err, bool):
        raise TypeError(f"abs_err must be a real number, got {abs_err!r}")
    abs_err = float(abs_err)
    if not (abs_err >= 0.0) or abs_err == np.inf:
        raise ValueError(f"abs_err must be a finite number >= 0, got {abs_err!r}")
    return abs_err


def _check_args(tol, rank, abs_err):
    tol = None if tol is None else check_tol(tol)
    abs_err = _check_abs_err(abs_err)
    rank = None if rank is None else check_positive(rank, "rank", integer=True, minimum=0)
    return tol, rank, abs_err


def _truncate(W, s, Zh, tol, rank, abs_err):
    """Rank, error and norm of the truncated SVD (error and norm from the singular values)."""
    tail = tail_norms(s)
    k = rank_for_tol(s, tol or 0.0) if abs_err is None else rank_for_tol(s, abs_err, norm=1.0)
    if rank is not None:
        k = min(k, rank)
    return k, float(tail[k]), float(tail[0])


def svd_truncate(A, tol=None, rank=None, abs_err=None, *, check=True):
    """Truncated SVD of a dense block as ``(U, V, err)`` with ``A ~ U @ V^H``.

    The singular values are folded into ``U``. ``err`` is the exact Frobenius error of the
    truncation (from the discarded singular values).

    Parameters
    ----------
    A : ndarray, shape (m, n)
    tol : float, optional
        Relative Frobenius tolerance: ``||A - UV^H||_F <= tol ||A||_F``.
    rank : int, optional
        Maximum rank.
    abs_err : float, optional
        Absolute Frobenius tolerance (used instead of ``tol`` when given).
    check : bool
        Validate the arguments (False in inner loops whose inputs are known good).
    """
    if check:
        A = check_finite_array(A, "A", ndim=2, allow_empty=True)
        tol, rank, abs_err = _check_args(tol, rank, abs_err)
    m, n = A.shape
    if m == 0 or n == 0:
        return np.zeros((m, 0), A.dtype), np.zeros((n, 0), A.dtype), 0.0
    W, s, Zh = lapack_svd(np.asfortranarray(A))
    k, err, _ = _truncate(W, s, Zh, tol, rank, abs_err)
    return np.ascontiguousarray(W[:, :k] * s[:k]), np.ascontiguousarray(Zh[:k].conj().T), err


def recompress(U, V, tol=None, rank=None, abs_err=None, *, return_norm=False, check=True):
    """Recompress ``U @ V^H``: QR of each factor, SVD of the small core, truncation.

    Returns ``(U', V', err)`` with ``||U V^H - U' V'^H||_F = err`` (exact up to rounding),
    ``err <= tol * ||U V^H||_F`` (or ``abs_err``) and ``rank <= rank``. Where the factors
    have as many columns as the block has rows or columns, the SVD of the explicit product
    is taken instead (same truncation, cheaper).

    Parameters
    ----------
    U : ndarray, shape (m, k)
    V : ndarray, shape (n, k)
        Finite; float32, float64, complex64 or complex128.
    tol : float, optional
        Relative Frobenius tolerance, ``0 < tol < 1``.
    rank : int, optional
        Maximum rank.
    abs_err : float, optional
        Absolute Frobenius tolerance, finite and ``>= 0`` (used instead of ``tol``).
    return_norm : bool
        Also return ``||U V^H||_F`` (from the singular values of the core: accurate also
        when the columns of ``U V^H`` nearly cancel, and scale-safe; ``err`` and the norm
        are inf only where they exceed the float range).
    check : bool
        Validate the arguments (False in inner loops whose inputs are known good).

    Raises
    ------
    ValueError
        Non-finite factors, ``tol`` outside (0, 1), negative or non-finite ``abs_err``.
    """
    if check:
        U = check_finite_array(U, "U", ndim=2, allow_empty=True)
        V = check_finite_array(V, "V", ndim=2, allow_empty=True)
        if U.shape[1] != V.shape[1]:
            raise ValueError(f"U and V must have the same number of columns, got {U.shape} and {V.shape}")
        tol, rank, abs_err = _check_args(tol, rank, abs_err)
    (m, k), n = U.shape, V.shape[0]
    if k == 0:
        return (U, V, 0.0, 0.0) if return_norm else (U, V, 0.0)
    dt = np.result_type(U.dtype, V.dtype)
    # a power-of-two scaling of each factor keeps the core's entries (products of the two
    # factors) inside the floating-point range; undone exactly on the result
    eu = pow2_exponent(float(np.max(np.abs(U))) if U.size else 0.0)
    ev = pow2_exponent(float(np.max(np.abs(V))) if V.size else 0.0)
    Us = (U * math.ldexp(1.0, -eu) if eu else U).astype(dt, copy=False)
    Vs = (V * math.ldexp(1.0, -ev) if ev else V).astype(dt, copy=False)
    e = eu + ev
    if k >= min(m, n):
        Qu = Qv = None
        W, s, Zh = lapack_svd(np.asfortranarray(Us @ Vs.conj().T))
    else:
        Qu, Ru = lapack_qr(Us)
        Qv, Rv = lapack_qr(Vs)
        W, s, Zh = lapack_svd(np.asfortranarray(Ru @ Rv.conj().T))
    r, err, nrm = _truncate(W, s, Zh, tol, rank, None if abs_err is None else math.ldexp(abs_err, -e))
    Uc, Vc = W[:, :r] * s[:r], Zh[:r].conj().T
    U2 = np.ascontiguousarray(Uc if Qu is None else Qu @ Uc)
    V2 = np.ascontiguousarray(Vc if Qv is None else Qv @ Vc)
    if e:
        U2 *= math.ldexp(1.0, e - e // 2)
        V2 *= math.ldexp(1.0, e // 2)
    err, nrm = ldexp_inf(err, e), ldexp_inf(nrm, e)
    return (U2, V2, err, nrm) if return_norm else (U2, V2, err)


def permuted_apply(apply, X, in_perm=None, out_perm=None, xp=np):
    """``Y`` with ``Y[out_perm] = apply(X[in_perm])``: an operator that works in permuted
    coordinates, applied in the original ones.

    Parameters
    ----------
    apply : callable
        ``apply(Xp) -> Yp`` on arrays of shape (n,) or (n, k) in permuted order.
    X : ndarray, shape (n,) or (n, k)
    in_perm, out_perm : int array or None
        ``perm[p]`` is the original index at permuted position ``p``; None: identity.
    xp : module
        Array namespace (numpy or cupy).
    """
    Yp = apply(X if in_perm is None else X[in_perm])
    if out_perm is None:
        return Yp
    Y = xp.empty_like(Yp)
    Y[out_perm] = Yp
    return Y
