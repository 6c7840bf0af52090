"""Diagonal operators, so that ``H + sigma**2 * Identity(n)`` can be materialized."""

from __future__ import annotations

import numbers

import numpy as np

from .._validate import check_dtype, check_finite_array
from ..operator import LinearOperator

__all__ = ["Diagonal", "Identity"]


class Diagonal(LinearOperator):
    """The diagonal matrix ``diag(d)``.

    Parameters
    ----------
    d : array_like, shape (n,), or scalar
        Diagonal entries (finite); a scalar needs ``n``.
    n : int, optional
        Size when ``d`` is a scalar.
    dtype : dtype, optional
        float32, float64, complex64 or complex128 (default from ``d``, float64 for ints).

    Notes
    -----
    A lazy operator like the others; :func:`hmat.add` and :func:`hmat.materialize` add it
    into the dense diagonal leaves of an H-matrix exactly.
    """

    def __init__(self, d, n=None, dtype=None):
        if np.ndim(d) == 0:
            if n is None:
                raise ValueError("n is required when d is a scalar")
            if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
                raise ValueError(f"n must be a non-negative int, got {n!r}")
            d = np.full(int(n), d)
        d = check_finite_array(np.asarray(d), "d", ndim=1, dtype=dtype, allow_empty=True)
        if n is not None and d.size != n:
            raise ValueError(f"d has {d.size} entries but n={n}")
        super().__init__(d.dtype, (d.size, d.size))
        self.d = d

    def _matmat(self, X):
        return self.d[:, None] * X

    def _matvec(self, x):
        return self.d * x

    def _rmatmat(self, X):
        return self.d.conj()[:, None] * X

    def _rmatvec(self, x):
        return self.d.conj() * x

    def _adjoint(self):
        return Diagonal(self.d.conj())

    def _transpose(self):
        return self

    def _to_dense(self):
        return np.diag(self.d)

    @property
    def nbytes(self):
        return int(self.d.nbytes)

    def astype(self, dtype):
        return Diagonal(self.d.astype(check_dtype(dtype)))


def Identity(n, dtype=np.float64):
    """The ``n x n`` identity as a :class:`Diagonal` (``sigma**2 * Identity(n)`` scales it).

    Parameters
    ----------
    n : int
    dtype : dtype, default float64
    """
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return Diagonal(np.ones(int(n), dtype=check_dtype(dtype)))
