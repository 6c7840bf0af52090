"""numpy / cupy: one code path through the array namespace.

``get_array_module(x)`` returns :mod:`numpy` or :mod:`cupy` for an array (as PyLops does).
``to_cupy(op)`` moves an operator to the GPU, ``to_numpy(op)`` brings it back:

- :class:`~hmat.Dense` and :class:`~hmat.LowRank` keep their type and hold cupy arrays (their
  matvec is an array expression, so it runs wherever the arrays live);
- an :class:`~hmat.HBlock` becomes a :class:`SparseHMatrix`: its packed leaves as three
  compressed-sparse-row matrices in permuted coordinates, ``Hp x = D x + U (W x)``, where
  ``D`` holds every dense leaf, ``W`` (one row per rank-1 term, ``sum k`` rows) holds the
  conjugated ``V`` factors and ``U`` the ``U`` factors. A matvec is three SpMVs (cuSPARSE on
  a GPU) plus the two permutations: batched, load-balanced by the sparse library, no
  per-leaf launch; matmat uses SpMM; the adjoint uses the conjugate transposes.

Everything here works with numpy + scipy.sparse too (``to_device(op, "numpy")``), which is
how the GPU code path is tested on machines without a GPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .linalg import permuted_apply
from .operator import LinearOperator
from .partition import LeafKind

_DENSE = int(LeafKind.DENSE)  # kind code of a dense leaf in the packed tables

__all__ = ["get_array_module", "has_cupy", "to_cupy", "to_numpy", "to_device", "SparseHMatrix"]


def get_array_module(x):
    """:mod:`cupy` when ``x`` is a cupy array (or cupy operator), else :mod:`numpy`."""
    xp = getattr(x, "xp", None)
    if xp is not None and hasattr(xp, "asarray"):
        return xp
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def has_cupy() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any failure means: no usable GPU
        return False


def _modules(backend):
    if backend == "cupy":
        import cupy
        import cupyx.scipy.sparse as sparse

        return cupy, sparse
    if backend == "numpy":
        import scipy.sparse as sparse

        return np, sparse
    raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")


def to_cupy(op):
    """A copy of ``op`` whose data live on the GPU (see the module docstring)."""
    return to_device(op, "cupy")


def to_numpy(op):
    """A host (numpy) version of ``op``: the inverse of :func:`to_cupy`.

    A :class:`SparseHMatrix` made from an :class:`~hmat.HBlock` returns that HBlock (the
    device copy is never modified, so it is exact); other operators get numpy arrays.
    """
    from .dense import Dense
    from .lowrank import LowRank

    if isinstance(op, SparseHMatrix):
        if op.host is not None:
            return op.host
        return op._converted("numpy")
    if isinstance(op, Dense):
        return Dense._trusted(_host(op.array))
    if isinstance(op, LowRank):
        return LowRank._trusted(_host(op.U), _host(op.V))
    return op


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def to_device(op, backend="cupy"):
    """``op`` (Dense, LowRank, HBlock or SparseHMatrix) with arrays of ``backend``."""
    from .dense import Dense
    from .hblock import HBlock
    from .lowrank import LowRank

    xp, _ = _modules(backend)
    if isinstance(op, SparseHMatrix):
        return op._converted(backend)
    if isinstance(op, Dense):
        return Dense._trusted(xp.asarray(_host(op.array)))
    if isinstance(op, LowRank):
        return LowRank._trusted(xp.asarray(_host(op.U)), xp.asarray(_host(op.V)))
    if isinstance(op, HBlock):
        if op._adjoint_of is not None:
            return to_device(op._adjoint_of, backend).H
        return SparseHMatrix.from_hblock(op, backend)
    raise TypeError(f"cannot move {type(op).__name__} to {backend}; expected Dense, LowRank or HBlock")


# ------------------------------------------------------------------ packed -> CSR
@njit(cache=True)
def _count(r0, m, n, kind, rank, dcnt, ucnt):
    """Entries per row of D and U for one segment; returns its number of rank-1 terms."""
    nk = 0
    for q in range(r0.size):
        k = rank[q]
        if kind[q] == _DENSE:
            for i in range(m[q]):
                dcnt[r0[q] + i] += n[q]
        else:
            nk += k
            for i in range(m[q]):
                ucnt[r0[q] + i] += k
    return nk


@njit(cache=True)
def _fill(r0, m, c0, n, kind, rank, off, buf, kbase, dptr, dind, ddat, uptr, uind, udat, wptr, wind, wdat, dcur, ucur):
    """Scatter one segment's leaves into the three CSR matrices (cursors advance per row)."""
    kb = kbase
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        k = rank[q]
        o = off[q]
        if kind[q] == _DENSE:
            for i in range(mq):
                r = r0[q] + i
                p = dptr[r] + dcur[r]
                for j in range(nq):
                    dind[p + j] = c0[q] + j
                    ddat[p + j] = buf[o + i * nq + j]
                dcur[r] += nq
            continue
        for i in range(mq):
            r = r0[q] + i
            p = uptr[r] + ucur[r]
            for l in range(k):
                uind[p + l] = kb + l
                udat[p + l] = buf[o + l * mq + i]  # factors component-major
            ucur[r] += k
        ov = o + mq * k
        for l in range(k):
            p = wptr[kb + l]
            for j in range(nq):
                wind[p + j] = c0[q] + j
                wdat[p + j] = np.conj(buf[ov + l * nq + j])
        kb += k
    return kb


def packed_to_csr(packed, shape, dtype):
    """``(D, U, W)`` as scipy CSR matrices with ``Hp = D + U @ W`` (permuted coordinates)."""
    import scipy.sparse as sp

    M, N = shape
    segs = packed.segments
    dcnt = np.zeros(M, np.int64)
    ucnt = np.zeros(M, np.int64)
    nk = 0
    wlen = []
    for s in segs:
        nk += _count(s.r0, s.m, s.n, s.kind, s.rank, dcnt, ucnt)
        lr = ~s.is_dense()
        wlen.append(np.repeat(s.n[lr], s.rank[lr]))
    wcnt = np.concatenate(wlen) if wlen else np.zeros(0, np.int64)
    itype = np.int32
    dptr = np.zeros(M + 1, np.int64)
    np.cumsum(dcnt, out=dptr[1:])
    uptr = np.zeros(M + 1, np.int64)
    np.cumsum(ucnt, out=uptr[1:])
    wptr = np.zeros(nk + 1, np.int64)
    np.cumsum(wcnt, out=wptr[1:])
    if max(dptr[-1], uptr[-1], wptr[-1], M, N, nk) >= 2**31:
        raise ValueError("matrix too large for 32-bit sparse indices")
    dind, ddat = np.empty(dptr[-1], itype), np.empty(dptr[-1], dtype)
    uind, udat = np.empty(uptr[-1], itype), np.empty(uptr[-1], dtype)
    wind, wdat = np.empty(wptr[-1], itype), np.empty(wptr[-1], dtype)
    dcur = np.zeros(M, np.int64)
    ucur = np.zeros(M, np.int64)
    kb = 0
    for s in segs:
        kb = _fill(s.r0, s.m, s.c0, s.n, s.kind, s.rank, s.off, s.buf.astype(dtype, copy=False), kb,
                   dptr, dind, ddat, uptr, uind, udat, wptr, wind, wdat, dcur, ucur)
    D = sp.csr_matrix((ddat, dind, dptr.astype(itype)), shape=(M, N))
    D.sort_indices()
    U = sp.csr_matrix((udat, uind, uptr.astype(itype)), shape=(M, nk))
    W = sp.csr_matrix((wdat, wind, wptr.astype(itype)), shape=(nk, N))
    return D, U, W


# ------------------------------------------------------------------ the operator
class SparseHMatrix(LinearOperator):
    """An H-matrix as ``P_r^T (D + U W) P_c`` with CSR ``D, U, W`` on numpy or cupy.

    Built by :func:`to_cupy` / :func:`to_device` from an :class:`~hmat.HBlock`; a regular
    :class:`~hmat.LinearOperator` (algebra, ``.H``, ``to_scipy``); ``as_linear_operator()``
    gives the namespace's own LinearOperator (``cupyx.scipy.sparse.linalg`` solvers).
    """

    def __init__(self, D, U, W, row_perm, col_perm, backend, host=None, adjoint=False):
        shape = (D.shape[1], D.shape[0]) if adjoint else D.shape
        super().__init__(np.dtype(D.dtype), shape)
        self.D, self.U, self.W = D, U, W
        self.row_perm, self.col_perm = row_perm, col_perm
        self.backend = backend
        self._xp, self.sparse = _modules(backend)
        self.host = host
        self._is_adjoint = adjoint
        self._t = None  # cached conjugate transposes (D^H, W^H, U^H)

    @property
    def xp(self):
        """The array namespace of the data (numpy or cupy)."""
        return self._xp

    @classmethod
    def from_hblock(cls, H, backend="cupy"):
        xp, sparse = _modules(backend)
        D, U, W = packed_to_csr(H._packed.expanded(), H.shape, H.dtype)  # symmetric storage: every leaf
        conv = (lambda A: A) if backend == "numpy" else (lambda A: sparse.csr_matrix(A))
        rp = None if H.row_perm is None else xp.asarray(H.row_perm)
        cp = None if H.col_perm is None else xp.asarray(H.col_perm)
        return cls(conv(D), conv(U), conv(W), rp, cp, backend, host=H)

    def _converted(self, backend):
        if backend == self.backend:
            return self
        xp, sparse = _modules(backend)
        if backend == "numpy":
            conv = (lambda A: A.get())
        else:
            conv = (lambda A: sparse.csr_matrix(A))
        rp = None if self.row_perm is None else xp.asarray(_host(self.row_perm))
        cp = None if self.col_perm is None else xp.asarray(_host(self.col_perm))
        return SparseHMatrix(conv(self.D), conv(self.U), conv(self.W), rp, cp, backend, self.host, self._is_adjoint)

    # the permuted operator Hp = D + U W, and its adjoint
    def _forward(self, X):
        xp = self.xp
        return permuted_apply(lambda Xp: self.D @ Xp + self.U @ (self.W @ Xp), xp.asarray(X),
                              self.col_perm, self.row_perm, xp)

    def _backward(self, X):
        xp = self.xp
        if self._t is None:
            self._t = tuple(A.conj().T.tocsr() for A in (self.D, self.W, self.U))
        Dh, Wh, Uh = self._t
        return permuted_apply(lambda Xp: Dh @ Xp + Wh @ (Uh @ Xp), xp.asarray(X), self.row_perm, self.col_perm, xp)

    def _matmat(self, X):
        return self._backward(X) if self._is_adjoint else self._forward(X)

    def _rmatmat(self, X):
        return self._forward(X) if self._is_adjoint else self._backward(X)

    def _matvec(self, x):
        return self._matmat(x)

    def _rmatvec(self, x):
        return self._rmatmat(x)

    def _adjoint(self):
        out = SparseHMatrix(self.D, self.U, self.W, self.row_perm, self.col_perm, self.backend,
                            None if self.host is None else self.host.H, not self._is_adjoint)
        out._t = self._t
        return out

    def _transpose(self):
        if self.dtype.kind != "c":
            return self._adjoint()
        return super()._transpose()

    def _to_dense(self):
        xp = self.xp
        return self._matmat(xp.eye(self.shape[1], dtype=self.dtype))

    @property
    def nbytes(self) -> int:
        return int(sum(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes for A in (self.D, self.U, self.W)))

    def as_linear_operator(self):
        """``cupyx.scipy.sparse.linalg.LinearOperator`` (cupy) or scipy's (numpy) over this."""
        if self.backend == "cupy":
            from cupyx.scipy.sparse.linalg import LinearOperator as LO
        else:
            from scipy.sparse.linalg import LinearOperator as LO
        return LO(self.shape, matvec=self._matvec, rmatvec=self._rmatvec, matmat=self._matmat,
                  rmatmat=self._rmatmat, dtype=self.dtype)

    def to_numpy(self):
        return to_numpy(self)

    def to_cupy(self):
        return self._converted("cupy")
