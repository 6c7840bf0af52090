"""Dense operator: an explicit array."""

from __future__ import annotations

import numpy as np

from ._validate import check_dtype, check_finite_array
from .operator import LinearOperator, array_namespace

__all__ = ["Dense"]


def own_copy(a, given):
    """``a`` (validated from the caller's ``given``) as an array no one else can write to.

    A fresh array made by the validation (a list converted, a dtype cast) is kept; an array
    that may alias the caller's memory (the array itself, a view, a torch tensor's buffer) is
    copied, so later writes by the caller neither bypass validation nor stale cached data.
    """
    if a is given or a.base is not None:
        return a.copy()
    return a


def cast_finite(a, dtype, name):
    """``a.astype(dtype)``, refusing a cast that overflows to Inf (ValueError naming ``dtype``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(dtype)
    xp = array_namespace(out)
    if not bool(xp.isfinite(out).all()):
        big = float(xp.abs(a).max())
        raise ValueError(
            f"astype({np.dtype(dtype).name}): {name} has entries up to {big:.3g}, beyond the "
            f"largest {np.dtype(dtype).name} ({float(np.finfo(dtype).max):.3g}); they would become Inf"
        )
    return out


class Dense(LinearOperator):
    """An explicitly stored matrix.

    Parameters
    ----------
    array : array_like, shape (m, n)
        float32, float64, complex64 or complex128 (integers are promoted to float64);
        numpy or cupy. Must be finite.
    dtype : dtype, optional
        Cast the data to this dtype.

    Notes
    -----
    The operator keeps its own copy of ``array`` (unless validation already made one, e.g.
    by a dtype cast): writing to the caller's array afterwards does not change it.
    """

    def __init__(self, array, dtype=None):
        a = own_copy(check_finite_array(array, "array", ndim=2, dtype=dtype, allow_empty=True), array)
        super().__init__(a.dtype, a.shape)
        self.array = a

    @property
    def xp(self):
        return array_namespace(self.array)

    def _matmat(self, X):
        return self.array @ X

    def _rmatmat(self, X):
        return self.array.conj().T @ X

    def _adjoint(self):
        return trusted_dense(self.array.conj().T)

    def _transpose(self):
        return trusted_dense(self.array.T)

    def _to_dense(self):
        return self.array.copy()

    @property
    def nbytes(self):
        return int(self.array.nbytes)

    def astype(self, dtype):
        """A copy with data of ``dtype``.

        Raises
        ------
        ValueError
            If an entry overflows to Inf in ``dtype`` (e.g. 1e100 to float32).
        """
        dtype = check_dtype(dtype)
        return trusted_dense(cast_finite(self.array, dtype, "the array"))


def trusted_dense(array):
    """A :class:`Dense` over ``array`` without validation or copy (internal to hmat).

    For code inside hmat that made ``array`` itself: it must be 2-D, finite, of a supported
    dtype (numpy or cupy), and never written afterwards. Users call ``Dense(array)``.

    Parameters
    ----------
    array : ndarray, shape (m, n)

    Returns
    -------
    Dense
        Holding ``array`` itself.
    """
    op = Dense.__new__(Dense)
    LinearOperator.__init__(op, array.dtype, array.shape)
    op.array = array
    return op
