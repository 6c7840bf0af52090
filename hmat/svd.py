"""Truncated-SVD compression of explicit blocks and of low-rank factor pairs."""

from __future__ import annotations

import numpy as np

from ._validate import check_positive, check_tol
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
    tail = np.sqrt(np.cumsum((s**2)[::-1]))[::-1]  # tail[k] = ||s[k:]||
    ok = np.flatnonzero(tail <= abs_err)
    return int(ok[0]) if ok.size else int(s.size)


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
    W, s, Vh = np.linalg.svd(A, full_matrices=False)
    if abs_err is None:
        abs_err = 0.0 if tol is None else tol * float(np.sqrt((s.astype(np.float64) ** 2).sum()))
    k = rank_for_error(s, abs_err)
    if rank is not None:
        k = min(k, rank)
    err = float(np.sqrt((s[k:].astype(np.float64) ** 2).sum()))
    U = W[:, :k] * s[:k]
    V = Vh[:k].conj().T
    return np.ascontiguousarray(U), np.ascontiguousarray(V), err


def recompress(U, V, tol=None, rank=None, abs_err=None):
    """Recompress ``U @ V^H``: QR of each factor, SVD of the small core, truncation.

    Returns ``(U', V', err)`` with ``||U V^H - U' V'^H||_F = err`` (exact up to rounding),
    ``err <= tol * ||U V^H||_F`` (or ``abs_err``) and ``rank <= rank``.
    """
    k = U.shape[1]
    if k == 0:
        return U, V, 0.0
    Qu, Ru = np.linalg.qr(U)
    Qv, Rv = np.linalg.qr(V)
    Uc, Vc, err = svd_truncate(Ru @ Rv.conj().T, tol=tol, rank=rank, abs_err=abs_err)
    return np.ascontiguousarray(Qu @ Uc), np.ascontiguousarray(Qv @ Vc), err


class SVD:
    """Compressor by truncated SVD of the explicit block (exact, costly).

    Parameters
    ----------
    tol : float
        Relative Frobenius tolerance per block, 0 < tol < 1.
    rank : int, optional
        Rank cap.

    Calling ``SVD(tol)(block)`` returns a :class:`~hmat.LowRank`.
    """

    def __init__(self, tol=1e-6, rank=None):
        self.tol = check_tol(tol)
        self.rank = None if rank is None else check_positive(rank, "rank", integer=True)

    def __call__(self, block):
        U, V, _ = svd_truncate(np.asarray(block), tol=self.tol, rank=self.rank)
        return LowRank._trusted(U, V)

    def __repr__(self):
        return f"SVD(tol={self.tol}, rank={self.rank})"
