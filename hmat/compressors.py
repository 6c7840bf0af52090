"""Compressors: strategy objects that turn one admissible block into a low-rank leaf.

A compressor is any object with a method ``compress(source, rows, cols, tol)`` that returns
a :class:`~hmat.LowRank` approximation of the block ``source.block(rows, cols)`` within the
relative Frobenius tolerance ``tol``, or None (the builder then stores the block exactly).
The builders take one: ``from_kernel(..., compressor=)``, ``from_dense(..., compressor=)``.
Built in: :class:`~hmat.ACA` (partial pivoting, with or without recompression) and
:class:`~hmat.SVD` (truncated SVD of the explicit block). ``from_kernel`` runs its compiled
build when the kernel is a built-in one and the compressor is the default ``ACA()``.

A *source* is what a compressor reads: ``source.shape``, ``source.dtype`` (the dtype the
entries are computed in) and ``source.block(rows, cols)``, the dense sub-block of the index
ranges (or integer arrays) ``rows``, ``cols``. A source may offer ``twin_groups(rows,
cols)`` (ids of repeated points) that ACA uses. ``rows`` and ``cols`` given to ``compress``
are ``range`` objects in the builder's (permuted) coordinates.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .lowrank import LowRank

__all__ = ["Compressor", "KernelSource", "DenseSource"]


@runtime_checkable
class Compressor(Protocol):
    """The compressor protocol: ``compress(source, rows, cols, tol) -> LowRank | None``."""

    def compress(self, source, rows, cols, tol):  # pragma: no cover - protocol
        ...


def _index(r):
    """A slice for a unit-step range (views, no copies), else an int64 array."""
    if isinstance(r, range) and r.step == 1:
        return slice(r.start, r.stop)
    if isinstance(r, slice):
        return r
    return np.asarray(r, dtype=np.int64)


class KernelSource:
    """The kernel matrix ``K[i, j] = kernel(X[i], Y[j])`` as a compressor's source.

    Parameters
    ----------
    kernel : object with ``block(x, y)``
    X : ndarray, shape (m, d), float64
        Row (target) points, in the builder's order.
    Y : ndarray, shape (n, d), float64
        Column (source) points.
    dtype : dtype, optional
        The dtype entries are computed in (default ``kernel.dtype`` or float64).
    check : callable, optional
        ``check(block, shape) -> ndarray``: validation of each evaluated block (the builder
        passes its NaN/Inf and complex checks).

    Attributes
    ----------
    evaluations : int
        Kernel entries evaluated so far.
    """

    def __init__(self, kernel, X, Y, dtype=None, check=None):
        self.kernel, self.X, self.Y = kernel, X, Y
        self.dtype = np.dtype(dtype if dtype is not None else getattr(kernel, "dtype", np.float64))
        self.shape = (X.shape[0], Y.shape[0])
        self._check = check
        self.evaluations = 0
        self._groups = None

    def block(self, rows, cols):
        """``K[rows][:, cols]`` as an array of ``self.dtype``."""
        x, y = self.X[_index(rows)], self.Y[_index(cols)]
        out = self.kernel.block(x, y)
        self.evaluations += x.shape[0] * y.shape[0]
        if self._check is not None:
            return self._check(out, (x.shape[0], y.shape[0]))
        return np.asarray(out, dtype=self.dtype)

    def twin_groups(self, rows, cols):
        """Ids of repeated points among ``X[rows]`` and ``Y[cols]`` (see :func:`hmat.aca.twin_groups`)."""
        from .aca import twin_groups

        return twin_groups(self.X[_index(rows)]), twin_groups(self.Y[_index(cols)])


class DenseSource:
    """An explicit matrix as a compressor's source.

    Parameters
    ----------
    A : ndarray, shape (m, n)
    dtype : dtype, optional
        Of the returned blocks (default ``A.dtype``).
    """

    def __init__(self, A, dtype=None):
        self.A = A
        self.dtype = np.dtype(dtype if dtype is not None else A.dtype)
        self.shape = A.shape
        self.evaluations = 0

    def block(self, rows, cols):
        """``A[rows][:, cols]``."""
        r, c = _index(rows), _index(cols)
        blk = self.A[r, c] if isinstance(r, slice) or isinstance(c, slice) else self.A[np.ix_(r, c)]
        return np.asarray(blk, dtype=self.dtype)


def check_compressor(compressor):
    """``compressor`` after checking that it has a callable ``compress``."""
    if not callable(getattr(compressor, "compress", None)):
        raise TypeError(
            f"compressor must have a method compress(source, rows, cols, tol) -> LowRank | None, "
            f"got {type(compressor).__name__}"
        )
    return compressor


def compressor_name(compressor):
    """A short name for provenance records."""
    return str(getattr(compressor, "name", type(compressor).__name__))


def compress_block(compressor, source, rows, cols, tol, dtype):
    """``compressor.compress(...)`` checked: a finite LowRank of the block's shape in
    ``dtype``, or None."""
    op = compressor.compress(source, rows, cols, tol)
    if op is None:
        return None
    shape = (len(rows), len(cols))
    if not isinstance(op, LowRank):
        raise TypeError(f"compressor.compress returned {type(op).__name__}, expected hmat.LowRank or None")
    if op.shape != shape:
        raise ValueError(f"compressor.compress returned shape {op.shape}, expected {shape}")
    if op.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        raise TypeError(f"compressor.compress returned complex factors but dtype is {np.dtype(dtype)}")
    op = op.astype(dtype)
    if not (np.isfinite(op.U).all() and np.isfinite(op.V).all()):
        raise ValueError(f"compressor.compress returned NaN or Inf factors (or they overflow {np.dtype(dtype)})")
    return op
