"""Low-rank operator ``U @ V.conj().T``."""

from __future__ import annotations

import numpy as np

from ._validate import check_dtype, check_finite_array
from .dense import cast_finite, own_copy
from .operator import LinearOperator, array_namespace

__all__ = ["LowRank"]


class LowRank(LinearOperator):
    """The rank-``k`` matrix ``U @ V.conj().T``.

    Parameters
    ----------
    U : array_like, shape (m, k)
    V : array_like, shape (n, k)
        Same dtype as ``U`` after promotion; finite. ``k = 0`` is the zero matrix.

    Notes
    -----
    ``LowRank(U, V).H`` is ``LowRank(V, U)`` and ``.T`` is ``LowRank(conj(V), conj(U))``,
    structurally (no copies). The constructor keeps its own copies of ``U`` and ``V``
    (unless validation already made them): later writes to the caller's arrays do not
    change the operator.
    """

    def __init__(self, U, V, dtype=None):
        U = own_copy(check_finite_array(U, "U", ndim=2, dtype=dtype, allow_empty=True), U)
        V = own_copy(check_finite_array(V, "V", ndim=2, dtype=dtype, allow_empty=True), V)
        if U.shape[1] != V.shape[1]:
            raise ValueError(f"U and V must have the same number of columns, got {U.shape} and {V.shape}")
        dt = np.result_type(U.dtype, V.dtype)
        U, V = U.astype(dt, copy=False), V.astype(dt, copy=False)
        super().__init__(dt, (U.shape[0], V.shape[0]))
        self.U, self.V = U, V

    @property
    def rank(self) -> int:
        """Number of columns ``k`` of the factors."""
        return int(self.U.shape[1])

    @property
    def xp(self):
        return array_namespace(self.U)

    def _matmat(self, X):
        return self.U @ (self.V.conj().T @ X)

    def _rmatmat(self, X):
        return self.V @ (self.U.conj().T @ X)

    def _adjoint(self):
        return trusted_lowrank(self.V, self.U)

    def _transpose(self):
        return trusted_lowrank(self.V.conj(), self.U.conj())

    def _to_dense(self):
        return self.U @ self.V.conj().T

    @property
    def nbytes(self):
        return int(self.U.nbytes + self.V.nbytes)

    def astype(self, dtype):
        """A copy with factors of ``dtype``.

        Raises
        ------
        ValueError
            If a factor entry overflows to Inf in ``dtype``.
        """
        dtype = check_dtype(dtype)
        return trusted_lowrank(cast_finite(self.U, dtype, "U"), cast_finite(self.V, dtype, "V"))

    def __eq__(self, other):
        """Structural equality: same factors (exactly)."""
        if not isinstance(other, LowRank):
            return NotImplemented
        xp = self.xp
        return (
            self.U.shape == other.U.shape
            and self.V.shape == other.V.shape
            and bool(xp.array_equal(self.U, other.U))
            and bool(xp.array_equal(self.V, other.V))
        )

    __hash__ = None


def trusted_lowrank(U, V):
    """A :class:`LowRank` ``U @ V^H`` without validation or copies (internal to hmat).

    For code inside hmat that made the factors itself: 2-D, finite, one supported dtype,
    the same number of columns, never written afterwards. Users call ``LowRank(U, V)``.

    Parameters
    ----------
    U, V : ndarray
        The factors, of shapes (m, k) and (n, k).

    Returns
    -------
    LowRank
        Holding ``U`` and ``V`` themselves.
    """
    op = LowRank.__new__(LowRank)
    LinearOperator.__init__(op, U.dtype, (U.shape[0], V.shape[0]))
    op.U, op.V = U, V
    return op
