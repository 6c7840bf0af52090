"""Truncated-SVD compression of explicit blocks (the :class:`SVD` compressor); the
truncation and recompression routines live in :mod:`hmat.linalg` (re-exported here)."""

from __future__ import annotations

import numpy as np

from ._validate import check_positive, check_tol
from .linalg import rank_for_tol, recompress, svd_truncate
from .lowrank import LowRank, trusted_lowrank

__all__ = ["SVD", "rank_for_error", "svd_truncate", "recompress"]


def rank_for_error(s, abs_err):
    """Smallest ``k`` with ``sqrt(sum(s[k:]**2)) <= abs_err`` for descending ``s``.

    Parameters
    ----------
    s : ndarray, shape (p,), float
        Singular values in descending order.
    abs_err : float
        Allowed Frobenius error (absolute).

    The rule of :func:`hmat.linalg.rank_for_tol` with ``norm=1``.
    """
    return rank_for_tol(s, abs_err, norm=1.0)


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
        return trusted_lowrank(U, V)

    def __call__(self, block):
        U, V, _ = svd_truncate(np.asarray(block), tol=self.tol, rank=self.rank)
        return trusted_lowrank(U, V)

    def __repr__(self):
        return f"SVD(tol={self.tol}, rank={self.rank})"
