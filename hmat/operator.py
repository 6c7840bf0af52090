"""The operator base class: scipy's LinearOperator protocol plus an algebra of our own types.

Every operator in :mod:`hmat` is a real subclass of
:class:`scipy.sparse.linalg.LinearOperator`, so every scipy solver accepts it as it is, with
an explicit ``dtype`` (scipy never probes it with int8 zeros) and our own ``matmat``.
The algebra (``A + B``, ``A - B``, ``alpha * A``, ``A @ B``, ``A.H``, ``A.T``, ``-A``)
returns lazy operators of this module, which keep ``nbytes`` and ``to_dense``.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse.linalg as spla

from ._validate import SUPPORTED_DTYPES, check_dtype

__all__ = [
    "LinearOperator",
    "Sum",
    "Scaled",
    "Product",
    "Adjoint",
    "Transpose",
    "DEFAULT_MAX_BYTES",
]

#: Default cap (bytes) for :meth:`LinearOperator.to_dense`.
DEFAULT_MAX_BYTES = 2**31


class LinearOperator(spla.LinearOperator):
    """Base class of all hmat operators.

    Subclasses implement ``_matmat(X)`` (X of shape ``(n, k)``, returns ``(m, k)``),
    ``_rmatmat(Y)`` (the conjugate transpose applied to ``(m, k)``), ``_to_dense()``,
    ``nbytes`` and ``astype``. ``matvec``/``rmatvec`` are derived from them.

    Parameters
    ----------
    dtype : numpy dtype
        One of float32, float64, complex64, complex128.
    shape : tuple of two ints
    """

    # make ``ndarray @ op`` reach our ``__rmatmul__`` instead of numpy's ufunc machinery
    __array_ufunc__ = None

    def __init__(self, dtype, shape):
        dtype = check_dtype(dtype, "dtype")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"shape must be a pair of non-negative ints, got {shape!r}")
        super().__init__(dtype, shape)

    # ---------------------------------------------------------------- scipy protocol
    def _matvec(self, x):
        return self._matmat(x.reshape(-1, 1)).reshape(-1)

    def _rmatvec(self, x):
        return self._rmatmat(x.reshape(-1, 1)).reshape(-1)

    def _rmatmat(self, X):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _adjoint(self):
        return Adjoint(self)

    def _transpose(self):
        return Transpose(self)

    def _prepare(self, X, n, name="x"):
        """Validate and cast a right-hand side, keeping numpy/cupy as given.

        Integer and boolean inputs act in the operator's dtype; float and complex inputs
        promote with it (``result_type``), which must be one of the four supported dtypes:
        ``longdouble``/``clongdouble`` raise ``TypeError`` (cast them first).
        """
        xp = array_namespace(X)
        X = xp.asarray(X)
        if X.ndim not in (1, 2) or X.shape[0] != n:
            raise ValueError(
                f"{name} has shape {X.shape}, expected ({n},) or ({n}, k) for an operator "
                f"of shape {self.shape}"
            )
        if X.dtype.kind in "biu":  # integers and booleans act in the operator's dtype
            return X.astype(self.dtype)
        if X.dtype.kind not in "fc":
            raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
        out_dtype = np.result_type(self.dtype, X.dtype)
        if out_dtype not in SUPPORTED_DTYPES:
            # long double / float128: the compiled kernels do not take it, and silently
            # rounding the caller's extra precision away would hide that
            raise TypeError(
                f"{name} has dtype {X.dtype}; operators compute in float32, float64, complex64 "
                f"or complex128: cast it first, e.g. {name}.astype(np.{'complex128' if out_dtype.kind == 'c' else 'float64'})"
            )
        return X.astype(out_dtype, copy=False)

    def matvec(self, x):
        """Compute ``A @ x`` for ``x`` of shape ``(n,)`` or ``(n, 1)``."""
        x = self._prepare(x, self.shape[1])
        if x.ndim == 2:
            if x.shape[1] != 1:
                raise ValueError(f"x has shape {x.shape}; matvec takes (n,) or (n, 1)")
            return self._matmat(x)
        return self._matvec(x)

    def rmatvec(self, x):
        """Compute ``A.H @ x`` (conjugate transpose) for ``x`` of shape ``(m,)``."""
        x = self._prepare(x, self.shape[0])
        if x.ndim == 2:
            if x.shape[1] != 1:
                raise ValueError(f"x has shape {x.shape}; rmatvec takes (m,) or (m, 1)")
            return self._rmatmat(x)
        return self._rmatvec(x)

    def matmat(self, X):
        """Compute ``A @ X`` for ``X`` of shape ``(n, k)``."""
        X = self._prepare(X, self.shape[1], "X")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        return self._matmat(X)

    def rmatmat(self, X):
        """Compute ``A.H @ X`` for ``X`` of shape ``(m, k)``."""
        X = self._prepare(X, self.shape[0], "X")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        return self._rmatmat(X)

    def dot(self, x):
        if isinstance(x, spla.LinearOperator):
            return Product(self, _as_ours(x))
        if np.isscalar(x):
            return self.__mul__(x)
        x = _asarray_like(x)
        if x.ndim == 1:
            return self.matvec(x)
        if x.ndim == 2:
            return self.matmat(x)
        raise ValueError(f"expected a 1-D or 2-D array, got shape {x.shape}")

    # ---------------------------------------------------------------- algebra
    def __matmul__(self, other):
        if np.isscalar(other):
            raise ValueError("scalar operands are not allowed with @, use * instead")
        return self.dot(other)

    def __rmatmul__(self, other):
        if isinstance(other, spla.LinearOperator):
            return _as_ours(other).__matmul__(self)
        if np.isscalar(other):
            raise ValueError("scalar operands are not allowed with @, use * instead")
        x = _asarray_like(other)
        if x.ndim == 1:
            return self.T.matvec(x)
        if x.ndim == 2:
            return self.T.matmat(x.T).T
        raise ValueError(f"expected a 1-D or 2-D array, got shape {x.shape}")

    def __mul__(self, other):
        if isinstance(other, numbers.Number) or (np.ndim(other) == 0 and not isinstance(other, spla.LinearOperator)):
            return Scaled(self, other)
        return self.dot(other)

    def __rmul__(self, other):
        if isinstance(other, numbers.Number) or np.ndim(other) == 0:
            return Scaled(self, other)
        return NotImplemented

    def __truediv__(self, other):
        if not (isinstance(other, numbers.Number) or np.ndim(other) == 0):
            return NotImplemented
        return Scaled(self, 1.0 / other)

    def __neg__(self):
        return Scaled(self, -1)

    def __add__(self, other):
        if not isinstance(other, spla.LinearOperator):
            return NotImplemented
        return Sum(self, _as_ours(other))

    def __radd__(self, other):
        if not isinstance(other, spla.LinearOperator):
            return NotImplemented
        return Sum(_as_ours(other), self)

    def __sub__(self, other):
        if not isinstance(other, spla.LinearOperator):
            return NotImplemented
        return Sum(self, Scaled(_as_ours(other), -1))

    def __rsub__(self, other):
        if not isinstance(other, spla.LinearOperator):
            return NotImplemented
        return Sum(_as_ours(other), Scaled(self, -1))

    def __pow__(self, p):
        raise TypeError("powers of operators are not supported; use A @ A")

    @property
    def H(self):
        """The conjugate transpose, an operator of shape ``(n, m)``."""
        return self._adjoint()

    @property
    def T(self):
        """The transpose, an operator of shape ``(n, m)``."""
        return self._transpose()

    def adjoint(self):
        return self._adjoint()

    def transpose(self):
        return self._transpose()

    def conj(self):
        """The entrywise complex conjugate."""
        return _Conj(self) if self.dtype.kind == "c" else self

    # ---------------------------------------------------------------- storage
    @property
    def nbytes(self) -> int:
        """Bytes of array data this operator stores."""
        raise NotImplementedError

    @property
    def compression_ratio(self) -> float:
        """Dense storage (``m * n * itemsize``) divided by :attr:`nbytes`."""
        dense = self.shape[0] * self.shape[1] * self.dtype.itemsize
        return dense / max(self.nbytes, 1)

    def to_dense(self, max_bytes: int = DEFAULT_MAX_BYTES):
        """Return the operator as a dense array of shape ``(m, n)`` and :attr:`dtype`.

        Parameters
        ----------
        max_bytes : int
            Refuse (``MemoryError``) when the dense array would exceed this many bytes.
        """
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral):
            raise TypeError(f"max_bytes must be an int, got {max_bytes!r}")
        need = self.shape[0] * self.shape[1] * self.dtype.itemsize
        if need > max_bytes:
            raise MemoryError(
                f"to_dense would allocate {need / 2**20:.1f} MiB for shape {self.shape}, "
                f"above max_bytes={max_bytes}; raise max_bytes to allow it"
            )
        return self._to_dense()

    def _to_dense(self):
        xp = self.xp
        return self._matmat(xp.eye(self.shape[1], dtype=self.dtype))

    def toarray(self, max_bytes: int = DEFAULT_MAX_BYTES):
        """Alias of :meth:`to_dense`."""
        return self.to_dense(max_bytes=max_bytes)

    def astype(self, dtype):
        """Return a copy of this operator whose data has ``dtype``."""
        raise NotImplementedError

    @property
    def xp(self):
        """The array namespace (numpy or cupy) holding this operator's data."""
        return np

    def to_cupy(self):
        """A copy on the GPU (CuPy arrays); see :func:`hmat.to_cupy`."""
        from .backend import to_cupy

        return to_cupy(self)

    def to_numpy(self):
        """A host (numpy) version; the inverse of :meth:`to_cupy`."""
        from .backend import to_numpy

        return to_numpy(self)

    def to_scipy(self):
        """This operator itself: it already is a :class:`scipy.sparse.linalg.LinearOperator`."""
        return self

    def __repr__(self):
        m, n = self.shape
        return f"<{m}x{n} {type(self).__name__} dtype={self.dtype} nbytes={self.nbytes}>"


# -------------------------------------------------------------------- helpers

def array_namespace(x):
    """The array module of ``x``: ``cupy`` for a CuPy array, else ``numpy`` (internal helper)."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy

        return cupy
    return np


def _asarray_like(x):
    return array_namespace(x).asarray(x)


def _as_ours(op):
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, spla.LinearOperator):
        return _Wrapped(op)
    raise TypeError(f"expected a LinearOperator, got {type(op).__name__}")


def _check_same_shape(a, b, what):
    if a.shape != b.shape:
        raise ValueError(f"{what}: operand shapes {a.shape} and {b.shape} differ")


class _Wrapped(LinearOperator):
    """A foreign scipy LinearOperator seen through our algebra."""

    def __init__(self, op, dtype=None):
        if dtype is None:
            dtype = op.dtype if op.dtype is not None and np.dtype(op.dtype).kind in "fc" else np.float64
        super().__init__(dtype, op.shape)
        self.op = op

    def _matmat(self, X):
        return np.asarray(self.op.matmat(X)).astype(self.dtype, copy=False)

    def _rmatmat(self, X):
        return np.asarray(self.op.rmatmat(X)).astype(self.dtype, copy=False)

    @property
    def nbytes(self):
        return 0

    def astype(self, dtype):
        return _Wrapped(self.op, check_dtype(dtype))


class Sum(LinearOperator):
    """Lazy sum ``A + B`` of two operators of equal shape."""

    def __init__(self, A, B):
        _check_same_shape(A, B, "A + B")
        super().__init__(np.result_type(A.dtype, B.dtype), A.shape)
        self.A, self.B = A, B

    def _matmat(self, X):
        return self.A._matmat(X) + self.B._matmat(X)

    def _rmatmat(self, X):
        return self.A._rmatmat(X) + self.B._rmatmat(X)

    def _adjoint(self):
        return Sum(self.A.H, self.B.H)

    def _transpose(self):
        return Sum(self.A.T, self.B.T)

    def _to_dense(self):
        return self.A._to_dense().astype(self.dtype) + self.B._to_dense()

    @property
    def nbytes(self):
        return self.A.nbytes + self.B.nbytes

    def astype(self, dtype):
        return Sum(self.A.astype(dtype), self.B.astype(dtype))


class Scaled(LinearOperator):
    """Lazy scalar multiple ``alpha * A``."""

    def __init__(self, A, alpha):
        alpha = np.asarray(alpha).item()
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Number):
            raise TypeError(f"alpha must be a real or complex number, got {alpha!r}")
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        dtype = A.dtype
        if isinstance(alpha, complex):
            if alpha.imag != 0:
                dtype = np.result_type(A.dtype, np.complex64)
            else:
                alpha = alpha.real
        super().__init__(dtype, A.shape)
        self.A, self.alpha = A, alpha

    def _scalar(self):
        # a NumPy *scalar* of the operator's dtype: keeps float32 float32 (NEP 50) and, unlike a
        # 0-d ndarray, is accepted by CuPy arrays
        return self.dtype.type(self.alpha)

    def _matmat(self, X):
        return self.A._matmat(X) * self._scalar()

    def _rmatmat(self, X):
        return self.A._rmatmat(X) * np.conj(self._scalar())

    def _adjoint(self):
        return Scaled(self.A.H, np.conj(self.alpha))

    def _transpose(self):
        return Scaled(self.A.T, self.alpha)

    def _to_dense(self):
        return self.A._to_dense().astype(self.dtype) * self._scalar()

    @property
    def nbytes(self):
        return self.A.nbytes

    def astype(self, dtype):
        return Scaled(self.A.astype(dtype), self.alpha)


class Product(LinearOperator):
    """Lazy composition ``A @ B``: applies ``B`` first, then ``A``."""

    def __init__(self, A, B):
        if A.shape[1] != B.shape[0]:
            raise ValueError(f"A @ B: inner dimensions differ, shapes {A.shape} and {B.shape}")
        super().__init__(np.result_type(A.dtype, B.dtype), (A.shape[0], B.shape[1]))
        self.A, self.B = A, B

    def _matmat(self, X):
        return self.A._matmat(self.B._matmat(X))

    def _rmatmat(self, X):
        return self.B._rmatmat(self.A._rmatmat(X))

    def _adjoint(self):
        return Product(self.B.H, self.A.H)

    def _transpose(self):
        return Product(self.B.T, self.A.T)

    @property
    def nbytes(self):
        return self.A.nbytes + self.B.nbytes

    def astype(self, dtype):
        return Product(self.A.astype(dtype), self.B.astype(dtype))


class Adjoint(LinearOperator):
    """Lazy conjugate transpose of an operator (for types without a structural adjoint)."""

    def __init__(self, A):
        super().__init__(A.dtype, (A.shape[1], A.shape[0]))
        self.A = A

    def _matmat(self, X):
        return self.A._rmatmat(X)

    def _rmatmat(self, X):
        return self.A._matmat(X)

    def _adjoint(self):
        return self.A

    def _transpose(self):
        if self.dtype.kind != "c":
            return self.A
        return Transpose(self)

    def _to_dense(self):
        return self.A._to_dense().conj().T.copy()

    @property
    def nbytes(self):
        return self.A.nbytes

    def astype(self, dtype):
        return Adjoint(self.A.astype(dtype))


class Transpose(LinearOperator):
    """Lazy transpose (no conjugation): ``A.T @ x = conj(A.H @ conj(x))``."""

    def __init__(self, A):
        super().__init__(A.dtype, (A.shape[1], A.shape[0]))
        self.A = A

    def _matmat(self, X):
        if self.dtype.kind != "c":
            return self.A._rmatmat(X)
        return self.A._rmatmat(X.conj()).conj()

    def _rmatmat(self, X):
        if self.dtype.kind != "c":
            return self.A._matmat(X)
        return self.A._matmat(X.conj()).conj()

    def _transpose(self):
        return self.A

    def _adjoint(self):
        if self.dtype.kind != "c":
            return self.A
        return _Conj(self.A)

    def _to_dense(self):
        return self.A._to_dense().T.copy()

    @property
    def nbytes(self):
        return self.A.nbytes

    def astype(self, dtype):
        return Transpose(self.A.astype(dtype))


class _Conj(LinearOperator):
    """Entrywise conjugate of a complex operator (the adjoint of its transpose)."""

    def __init__(self, A):
        super().__init__(A.dtype, A.shape)
        self.A = A

    def _matmat(self, X):
        return self.A._matmat(X.conj()).conj()

    def _rmatmat(self, X):
        return self.A._rmatmat(X.conj()).conj()

    def _adjoint(self):
        return Transpose(self.A)

    def _transpose(self):
        return Adjoint(self.A)

    def _to_dense(self):
        return self.A._to_dense().conj()

    @property
    def nbytes(self):
        return self.A.nbytes

    def astype(self, dtype):
        return _Conj(self.A.astype(dtype))
