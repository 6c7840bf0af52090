"""H-Cholesky factorization ``H = L L^H`` for Hermitian positive definite H-matrices."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._norms import fro
from .._progress import progress_bar
from ..linalg import permuted_apply
from ..operator import LinearOperator
from ._common import blas_single_thread, check_hblock, check_square, perm_or_identity, same_perm, tol_arg
from ..partition import LeafKind
from ._nodes import Engine, Node, StructureError, copy_tree, from_op, leaves, to_root
from ._solve import solve_right, trsm_dense
from ._factor_common import check_diagonal, check_diagonal_grid, count_diag_leaves, diag_values, leaf_nbytes, zero_like

__all__ = ["cholesky", "CholeskyFactorization"]


def cholesky(H, tol=1e-6, *, progress=False):
    """H-Cholesky factorization ``H ~ P^T L L^H P`` of a Hermitian positive definite H-matrix.

    Recursive block Cholesky on the block tree of ``H``: ``L_ii L_ii^H = A_ii``,
    ``L_ji = A_ji L_ii^{-H}``, ``A_jk -= L_ji L_ki^H`` (lower blocks only), every
    low-rank result truncated to blockwise relative Frobenius error ``tol``; dense
    diagonal leaves by LAPACK ``potrf``. Only the lower block triangle of ``H`` (in its
    permuted order, and the lower triangle of its dense diagonal leaves) is read.

    Parameters
    ----------
    H : HBlock, shape (n, n)
        Hermitian positive definite; float32, float64, complex64 or complex128; the same
        permutation for rows and columns and square diagonal blocks (one cluster tree).
    tol : float
        Truncation tolerance, ``0 < tol < 1``.
    progress : bool
        Show a progress bar over the dense diagonal leaves.

    Returns
    -------
    CholeskyFactorization
        A :class:`hmat.LinearOperator` of shape ``(n, n)`` applying ``H^{-1}``; ``.solve``,
        ``.L``, ``.logdet()``.

    Raises
    ------
    ValueError
        ``H`` not Hermitian to the tolerance (a randomized check with 16 probe vectors:
        ``||(H - H^H) X||_F <= 8 max(tol, H.tol) ||H X||_F``), not square, different row
        and column orderings, or not numerically positive
        definite at this tolerance: the message names the failing diagonal block (its row
        range in the cluster ordering and the original indices it holds).
    """
    check_hblock(H, "H")
    check_square(H, "H")
    tol = tol_arg(tol)
    n = H.shape[0]
    if not same_perm(H.row_perm, H.col_perm, n):
        raise ValueError("H: rows and columns are in different orders (row_perm != col_perm); "
                         "a Hermitian H-matrix has one cluster tree")
    _check_hermitian(H, tol)
    eng = Engine(tol, H.dtype)
    with blas_single_thread():
        root = from_op(H, H.dtype, copy=True)
        with progress_bar(total=count_diag_leaves(root), desc="hmat cholesky", unit="block",
                          disable=not progress) as bar:
            try:
                _chol(eng, root, 0, bar, H.row_perm)
            except StructureError as exc:
                raise ValueError(f"H: {exc}") from None
        eng.flush_all(root)
    return CholeskyFactorization(root, H.dtype, H.row_perm, tol, eng)


#: probe vectors of the Hermitian check, and its margin over the tolerance
_PROBES, _MARGIN = 16, 8.0


def _check_hermitian(H, tol):
    """Raise unless ``||(H - H^H) X||_F <= margin * max(tol, H.tol, 1000 eps) ||H X||_F``
    for a fixed Gaussian probe ``X`` (n x 16): a randomized test of ``H = H^H`` at the
    accuracy H was built with (a Hermitian matrix compressed to ``tol`` is Hermitian to
    ``2 tol``) and factorized at. Norms are scale-safe."""
    n = H.shape[0]
    X = np.random.default_rng(20250101).standard_normal((n, _PROBES)).astype(H.dtype)
    Y = H @ X
    Z = H.H @ X
    htol = getattr(H, "tol", None) or 0.0
    eps = float(np.finfo(H.dtype).eps)
    lim = _MARGIN * max(tol, float(htol), 1e3 * eps)
    den = fro(Y)
    num = fro(Y - Z)
    if num > lim * den:
        raise ValueError(
            f"H is not Hermitian: ||(H - H^H) X|| / ||H X|| = {num / den:.3g} on random probes X, "
            f"above {lim:.3g} (the factorization tolerance); H-Cholesky would factor a different "
            "matrix (it reads only the lower triangle). Use hmat.lu for a non-Hermitian H"
        )


def _chol(eng, A, r0, bar, perm):
    check_diagonal(A, r0, "H-Cholesky")
    if A.kind == LeafKind.DENSE:
        try:
            L = sla.cholesky(A.a, lower=True, check_finite=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            idx = perm_or_identity(perm, r0 + A.m)[r0:r0 + A.m]
            shown = ", ".join(str(int(i)) for i in idx[:8]) + (", ..." if idx.size > 8 else "")
            raise ValueError(
                f"H is not numerically positive definite at tol={eng.tol:g}: Cholesky of the dense "
                f"diagonal block at rows [{r0}, {r0 + A.m}) of the cluster ordering (original indices "
                f"{shown}) failed ({exc}). Add a diagonal shift (hmat.add(H, s * Identity(n), tol)), "
                "lower tol, or use hmat.lu"
            ) from None
        A.a[...] = L
        bar.update(1)
        return
    p = check_diagonal_grid(A, r0, "H-Cholesky")
    for i in range(p):
        Lii = A.ch[i][i]
        _chol(eng, Lii, r0 + int(A.ro[i]), bar, perm)
        for j in range(i + 1, p):
            solve_right(eng, Lii, A.ch[j][i], lower=True, unit=False, adj=True)
        for j in range(i + 1, p):
            _herk(eng, A.ch[j][j], A.ch[j][i])
            for k in range(i + 1, j):
                eng.muladd(A.ch[j][k], A.ch[j][i], A.ch[k][i], -1.0, adjB=True)


def _herk(eng, C, A):
    """Lower part of ``C -= A A^H`` for a diagonal node ``C``."""
    if C.kind != LeafKind.INTERNAL:
        eng.muladd(C, A, A, -1.0, adjB=True)
        return
    p = len(C.ch)
    inner = eng.offsets(A, False, rows=False)
    if inner is None:
        inner = np.array([0, A.n], np.int64)
    Ag = eng.grid(A, C.ro, inner, False)
    q = len(inner) - 1
    for i in range(p):
        for k in range(i + 1):
            for j in range(q):
                if i == k:
                    _herk(eng, C.ch[i][i], Ag[i][j][0])
                else:
                    eng.muladd(C.ch[i][k], Ag[i][j][0], Ag[k][j][0], -1.0, adjB=True)


class CholeskyFactorization(LinearOperator):
    """An H-Cholesky factorization ``H ~ P^T L L^H P``, acting as the operator ``H^{-1}``.

    Created by :func:`hmat.cholesky`; ``F @ b`` and ``F.solve(b)`` solve ``H x = b``.

    Attributes
    ----------
    shape : (n, n)
    dtype : numpy dtype
    tol : float
    perm : ndarray of int64, shape (n,)
        The cluster ordering in which ``L`` is lower triangular.
    """

    def __init__(self, root, dtype, perm, tol, engine):
        super().__init__(dtype, (root.m, root.n))
        self._root = root
        self._perm = perm
        self.tol = tol
        self._eng = engine
        self._L = None

    @property
    def perm(self):
        return perm_or_identity(self._perm, self.shape[0])

    def solve(self, b):
        """Solve ``H x = b`` for ``b`` of shape ``(n,)`` or ``(n, k)``; returns an array like ``b``."""
        b = self._prepare(b, self.shape[0], "b")
        return self._matmat(b.reshape(b.shape[0], -1)).reshape(b.shape)

    def _matmat(self, B):
        # H^-1 = P^T L^-H L^-1 P
        return permuted_apply(self._solve_permuted, B, self._perm, self._perm)

    def _solve_permuted(self, Bp):
        """``(L L^H)^-1 Bp`` in permuted coordinates, a new array."""
        Y = np.array(Bp, dtype=np.result_type(self.dtype, Bp.dtype), order="C", copy=True)
        with blas_single_thread():
            trsm_dense(self._eng, self._root, Y, lower=True, unit=False)
            trsm_dense(self._eng, self._root, Y, lower=True, unit=False, adj=True)
        return Y

    def _rmatmat(self, B):
        return self._matmat(B)  # H^{-1} is Hermitian

    def _adjoint(self):
        return self

    @property
    def L(self):
        """Lower triangular factor as an :class:`~hmat.HBlock` with ``row_perm = H.row_perm``
        and no column permutation, so that ``F.L @ F.L.H`` approximates ``H``."""
        if self._L is None:
            self._L = to_root(_lower(self._root), self.dtype, self._perm, None)
        return self._L

    def logdet(self):
        """``(sign, log det H)`` with ``sign = 1``; ``log det H = 2 sum log diag(L)``."""
        d = np.concatenate(diag_values(self._root, []))
        return (1.0, float(2.0 * np.sum(np.log(np.abs(d)))))

    @property
    def nbytes(self):
        return int(sum(leaf_nbytes(nd) for _, _, nd in leaves(self._lower_only())))

    def _lower_only(self):
        return _lower(self._root)

    def astype(self, dtype):
        raise NotImplementedError("refactor H.astype(dtype) instead")

    def __repr__(self):
        n = self.shape[0]
        return f"<{n}x{n} CholeskyFactorization dtype={self.dtype} tol={self.tol:g} {self.nbytes / 2**20:.2f} MiB>"


def _lower(node, diag=True):
    if node.kind == LeafKind.DENSE:
        return Node.dense(np.tril(node.a) if diag else node.a.copy())
    if node.kind == LeafKind.LOWRANK:
        return Node.lowrank(node.U, node.V)
    if not diag:
        return copy_tree(node)
    ch = [[(_lower(c, i == j) if i >= j else zero_like(c)) for j, c in enumerate(row)]
          for i, row in enumerate(node.ch)]
    return Node.hier(ch)
