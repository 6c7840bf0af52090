"""Dense operator: an explicit array."""

from __future__ import annotations

from ._validate import check_dtype, check_finite_array
from .operator import LinearOperator, _namespace

__all__ = ["Dense"]


class Dense(LinearOperator):
    """An explicitly stored matrix.

    Parameters
    ----------
    array : array_like, shape (m, n)
        float32, float64, complex64 or complex128 (integers are promoted to float64);
        numpy or cupy. Must be finite.
    dtype : dtype, optional
        Cast the data to this dtype.
    """

    def __init__(self, array, dtype=None):
        a = check_finite_array(array, "array", ndim=2, dtype=dtype, allow_empty=True)
        super().__init__(a.dtype, a.shape)
        self.array = a

    @classmethod
    def _trusted(cls, array):
        """Wrap an array already known to be 2-D, finite and of a supported dtype."""
        self = cls.__new__(cls)
        LinearOperator.__init__(self, array.dtype, array.shape)
        self.array = array
        return self

    @property
    def xp(self):
        return _namespace(self.array)

    def _matmat(self, X):
        return self.array @ X

    def _rmatmat(self, X):
        return self.array.conj().T @ X

    def _adjoint(self):
        return Dense._trusted(self.array.conj().T)

    def _transpose(self):
        return Dense._trusted(self.array.T)

    def _to_dense(self):
        return self.array.copy()

    @property
    def nbytes(self):
        return int(self.array.nbytes)

    def astype(self, dtype):
        dtype = check_dtype(dtype)
        return Dense._trusted(self.array.astype(dtype))
