"""Truncated-SVD compression of explicit blocks and of low-rank factor pairs."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._norms import ldexp_inf, pow2_exponent, tail_norms
from ._validate import check_finite_array, check_positive, check_tol
from .lowrank import LowRank

__all__ = ["SVD", "rank_for_error", "svd_truncate", "recompress"]


def rank_for_error(s, abs_err):
    """Smallest ``k`` with ``sqrt(sum(s[k:]**2)) <= abs_err`` for descending ``s``.

    Parameters
    ----------
    s : ndarray, shape (p,), float
        Singular values in descending order.
    abs_err : float
        Allowed Frobenius error (absolute).
    """
    s = np.asarray(s, dtype=np.float64)
    if s.size == 0:
        return 0
    tail = tail_norms(s)[:-1]  # tail[k] = ||s[k:]||, scale-safe
    ok = np.flatnonzero(tail <= abs_err)
    return int(ok[0]) if ok.size else int(s.size)


def _check_abs_err(abs_err):
    if abs_err is None:
        return None
    if not isinstance(abs_err, numbers.Real) or isinstance(abs_err, bool):
        raise TypeError(f"abs_err must be a real number, got {abs_err!r}")
    abs_err = float(abs_err)
    if not (abs_err >= 0.0) or abs_err == np.inf:
        raise ValueError(f"abs_err must be a finite number >= 0, got {abs_err!r}")
    return abs_err


def svd_truncate(A, tol=None, rank=None, abs_err=None):
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
    """
    A = check_finite_array(A, "A", ndim=2, allow_empty=True)
    tol = None if tol is None else check_tol(tol)
    abs_err = _check_abs_err(abs_err)
    rank = None if rank is None else check_positive(rank, "rank", integer=True, minimum=0)
    U, V, err, _ = _truncate_core(A, tol, rank, abs_err)
    return U, V, err


def recompress(U, V, tol=None, rank=None, abs_err=None, *, return_norm=False):
    """Recompress ``U @ V^H``: QR of each factor, SVD of the small core, truncation.

    Returns ``(U', V', err)`` with ``||U V^H - U' V'^H||_F = err`` (exact up to rounding),
    ``err <= tol * ||U V^H||_F`` (or ``abs_err``) and ``rank <= rank``.

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

    Raises
    ------
    ValueError
        Non-finite factors, ``tol`` outside (0, 1), negative or non-finite ``abs_err``.
    """
    U = check_finite_array(U, "U", ndim=2, allow_empty=True)
    V = check_finite_array(V, "V", ndim=2, allow_empty=True)
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"U and V must have the same number of columns, got {U.shape} and {V.shape}")
    tol = None if tol is None else check_tol(tol)
    abs_err = _check_abs_err(abs_err)
    rank = None if rank is None else check_positive(rank, "rank", integer=True, minimum=0)
    k = U.shape[1]
    if k == 0:
        return (U, V, 0.0, 0.0) if return_norm else (U, V, 0.0)
    # a power-of-two scaling of each factor keeps the core's entries (products of the two
    # R factors) inside the floating-point range; undone exactly on the result
    eu = pow2_exponent(float(np.max(np.abs(U))) if U.size else 0.0)
    ev = pow2_exponent(float(np.max(np.abs(V))) if V.size else 0.0)
    sc = math.ldexp(1.0, -(eu + ev))
    Qu, Ru = np.linalg.qr(U * math.ldexp(1.0, -eu) if eu else U)
    Qv, Rv = np.linalg.qr(V * math.ldexp(1.0, -ev) if ev else V)
    core = Ru @ Rv.conj().T
    Uc, Vc, err, nrm = _truncate_core(core, tol, rank, None if abs_err is None else abs_err * sc)
    e = eu + ev
    fu, fv = math.ldexp(1.0, e - e // 2), math.ldexp(1.0, e // 2)
    U2 = np.ascontiguousarray(Qu @ Uc) * fu if e else np.ascontiguousarray(Qu @ Uc)
    V2 = np.ascontiguousarray(Qv @ Vc) * fv if e else np.ascontiguousarray(Qv @ Vc)
    err, nrm = ldexp_inf(err, e), ldexp_inf(nrm, e)
    return (U2, V2, err, nrm) if return_norm else (U2, V2, err)



def _truncate_core(A, tol, rank, abs_err):
    """``svd_truncate`` of a checked core, also returning ``||A||_F``."""
    W, s, Vh = np.linalg.svd(A, full_matrices=False)
    tail = tail_norms(s)
    if abs_err is None:
        abs_err = 0.0 if tol is None else tol * float(tail[0])
    k = rank_for_error(s, abs_err)
    if rank is not None:
        k = min(k, rank)
    return np.ascontiguousarray(W[:, :k] * s[:k]), np.ascontiguousarray(Vh[:k].conj().T), float(tail[k]), float(tail[0])


class SVD:
    """Compressor by truncated SVD of the explicit block (exact, costly).

    Parameters
    ----------
    tol : float
        Relative Frobenius tolerance per block, 0 < tol < 1.
    rank : int, optional
        Rank cap.

    Calling ``SVD(tol)(block)`` returns a :class:`~hmat.LowRank`. A
    :class:`~hmat.Compressor`: ``SVD().compress(source, rows, cols, tol)`` evaluates the
    whole block and truncates its SVD.
    """

    name = "SVD"

    def __init__(self, tol=1e-6, rank=None):
        self.tol = check_tol(tol)
        self.rank = None if rank is None else check_positive(rank, "rank", integer=True)

    def compress(self, source, rows, cols, tol):
        """Truncated SVD of ``source.block(rows, cols)`` within relative ``tol``.

        Returns
        -------
        LowRank or None
            None when the rank is not capped and low rank does not pay
            (``k (m + n) >= m n``).
        """
        tol = check_tol(tol)
        U, V, _ = svd_truncate(np.asarray(source.block(rows, cols)), tol=tol, rank=self.rank)
        m, n = len(rows), len(cols)
        if self.rank is None and U.shape[1] * (m + n) >= m * n:
            return None
        return LowRank._trusted(U, V)

    def __call__(self, block):
        U, V, _ = svd_truncate(np.asarray(block), tol=self.tol, rank=self.rank)
        return LowRank._trusted(U, V)

    def __repr__(self):
        return f"SVD(tol={self.tol}, rank={self.rank})"
