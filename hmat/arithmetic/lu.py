"""H-LU factorization ``H = L U`` (unpivoted, formatted, truncated at ``tol``)."""

from __future__ import annotations

import numpy as np

from .._progress import progress_bar
from ..linalg import permuted_apply
from ..operator import LinearOperator
from ._common import blas_single_thread, check_hblock, check_square, perm_or_identity, tol_arg
from ._dense_kernels import getrf_nopiv
from ..partition import LeafKind
from ._nodes import Engine, Node, StructureError, copy_tree, densify_small, from_op, leaves, to_root
from ._factor_common import check_diagonal, check_diagonal_grid, count_diag_leaves, diag_values, leaf_nbytes, zero_like
from ._solve import solve_left, solve_right, trsm_dense

__all__ = ["lu", "LUFactorization"]

#: grids of at most DENSE_BELOW x DENSE_BELOW entries are factored as one dense block (0: off;
#: measured no gain on sphere-1/r at leaf size 64)
DENSE_BELOW = 0


def lu(H, tol=1e-6, *, progress=False):
    """H-LU factorization by recursive block LU on the block tree of ``H``.

    For every diagonal grid (a ``p x p`` grid whose diagonal children are square) the
    right-looking block LU runs: ``L_ii U_ii = A_ii`` recursively, ``U_ij = L_ii^{-1} A_ij``,
    ``L_ji = A_ji U_ii^{-1}`` (triangular solves with H-matrix right-hand sides) and
    ``A_jk -= L_ji U_ik`` (H-matrix products), every low-rank result truncated to blockwise
    relative Frobenius error ``tol``. Dense diagonal leaves are factored without pivoting.

    Parameters
    ----------
    H : HBlock, shape (n, n)
        float32, float64, complex64 or complex128. Its permuted block structure must have
        square diagonal blocks (the same cluster tree for rows and columns, as built by
        :func:`hmat.from_kernel` / :func:`hmat.from_dense` for a square matrix).
    tol : float
        Truncation tolerance, ``0 < tol < 1``. Small ``tol`` gives a direct solver, large
        ``tol`` (``1e-2``) a cheap preconditioner.
    progress : bool
        Show a progress bar over the dense diagonal leaves.

    Returns
    -------
    LUFactorization
        A :class:`hmat.LinearOperator` of shape ``(n, n)`` and ``H.dtype`` that applies
        ``H^{-1}`` (approximately); ``.solve``, ``.L``, ``.U``, ``.logdet()``.

    Raises
    ------
    ValueError
        ``H`` not square, its diagonal blocks not square, or a zero pivot (no pivoting:
        ``H`` should be, e.g., diagonally dominant or definite).

    Notes
    -----
    Without pivoting the error is not bounded by ``tol`` alone: it grows with the
    condition number and the pivot growth. The backward error ``||LU - H||_F / ||H||_F``
    is what ``tol`` controls.
    """
    check_hblock(H, "H")
    check_square(H, "H")
    tol = tol_arg(tol)
    eng = Engine(tol, H.dtype)
    with blas_single_thread():
        root = densify_small(from_op(H, H.dtype, copy=True), DENSE_BELOW)
        ndiag = count_diag_leaves(root)
        with progress_bar(total=ndiag, desc="hmat lu", unit="block", disable=not progress) as bar:
            _lu(eng, root, 0, bar)
        eng.flush_all(root)
    return LUFactorization(root, H.dtype, H.row_perm, H.col_perm, tol, eng)


def _lu(eng, A, r0, bar):
    """In-place LU of the diagonal node ``A`` whose first row is ``r0`` (permuted)."""
    check_diagonal(A, r0, "H-LU")
    if A.kind == LeafKind.DENSE:
        k = getrf_nopiv(A.a)
        if k >= 0:
            raise ValueError(
                f"H: zero pivot in the dense diagonal block rows [{r0}, {r0 + A.m}) (permuted order) at "
                f"row {r0 + k}; H-LU does not pivot, so H must be e.g. diagonally dominant or definite"
            )
        bar.update(1)
        return
    p = check_diagonal_grid(A, r0, "H-LU")
    try:
        for i in range(p):
            Aii = A.ch[i][i]
            _lu(eng, Aii, r0 + int(A.ro[i]), bar)
            for j in range(i + 1, p):
                solve_left(eng, Aii, A.ch[i][j], lower=True, unit=True)
            for j in range(i + 1, p):
                solve_right(eng, Aii, A.ch[j][i], lower=False, unit=False)
            for j in range(i + 1, p):
                for k in range(i + 1, p):
                    eng.muladd(A.ch[j][k], A.ch[j][i], A.ch[i][k], -1.0)
    except StructureError as exc:
        raise ValueError(f"H: {exc}") from None


class LUFactorization(LinearOperator):
    """An H-LU factorization ``H ~ P_r^T L U P_c``, acting as the operator ``H^{-1}``.

    Created by :func:`hmat.lu`. ``F @ b``, ``F.matvec(b)``, ``F.solve(b)`` all solve
    ``H x = b``; ``F.rmatvec`` solves ``H^H x = b``; so ``F`` works as ``M`` in
    :func:`scipy.sparse.linalg.gmres`.

    Attributes
    ----------
    shape : (n, n)
    dtype : numpy dtype
        That of the factored matrix.
    tol : float
        The truncation tolerance used.
    perm : ndarray of int64, shape (n,)
        The cluster ordering: ``L`` and ``U`` are triangular in it.
    """

    def __init__(self, root, dtype, row_perm, col_perm, tol, engine):
        super().__init__(dtype, (root.m, root.n))
        self._root = root
        self._row_perm = row_perm
        self._col_perm = col_perm
        self.tol = tol
        self._eng = engine
        self._L = self._U = None

    @property
    def perm(self):
        return perm_or_identity(self._row_perm, self.shape[0])

    # ----------------------------------------------------------------- solves
    def solve(self, b):
        """Solve ``H x = b``.

        Parameters
        ----------
        b : array_like, shape (n,) or (n, k)

        Returns
        -------
        ndarray, shape of ``b``, dtype ``result_type(H.dtype, b.dtype)``
        """
        b = self._prepare(b, self.shape[0], "b")
        X = self._matmat(b.reshape(b.shape[0], -1))
        return X.reshape(b.shape)

    def _matmat(self, B):
        # H^-1 = P_c^T U^-1 L^-1 P_r
        return permuted_apply(lambda Bp: self._solve_permuted(Bp, False), B, self._row_perm, self._col_perm)

    def _rmatmat(self, B):
        # H^-H = P_r^T L^-H U^-H P_c
        return permuted_apply(lambda Bp: self._solve_permuted(Bp, True), B, self._col_perm, self._row_perm)

    def _solve_permuted(self, Bp, adj):
        """``(L U)^-1 Bp`` (``(L U)^-H Bp`` when ``adj``) in permuted coordinates, a new array."""
        Y = np.array(Bp, dtype=np.result_type(self.dtype, Bp.dtype), order="C", copy=True)
        with blas_single_thread():
            if adj:
                trsm_dense(self._eng, self._root, Y, lower=False, unit=False, adj=True)
                trsm_dense(self._eng, self._root, Y, lower=True, unit=True, adj=True)
            else:
                trsm_dense(self._eng, self._root, Y, lower=True, unit=True)
                trsm_dense(self._eng, self._root, Y, lower=False, unit=False)
        return Y

    # ----------------------------------------------------------------- factors
    @property
    def L(self):
        """Unit lower triangular factor as an :class:`~hmat.HBlock` (rows in H's order).

        ``F.L`` carries ``row_perm = H.row_perm`` and no column permutation, ``F.U`` no row
        permutation and ``col_perm = H.col_perm``, so ``F.L @ F.U`` approximates ``H`` as
        operators; both are triangular in the cluster ordering.
        """
        if self._L is None:
            self._L = to_root(_triangle(self._root, lower=True, unit=True), self.dtype, self._row_perm, None)
        return self._L

    @property
    def U(self):
        """Upper triangular factor as an :class:`~hmat.HBlock`; see :attr:`L`."""
        if self._U is None:
            self._U = to_root(_triangle(self._root, lower=False, unit=False), self.dtype, None, self._col_perm)
        return self._U

    def logdet(self):
        """Sign and natural log of ``|det H|`` from the diagonal of ``U`` (and the perms).

        Returns
        -------
        (sign, logabsdet) : (float or complex, float)
            Like :func:`numpy.linalg.slogdet`: ``det H ~ sign * exp(logabsdet)``.
        """
        sign, logabs = _diag_slogdet(self._root)
        sign *= _perm_sign(self._row_perm) * _perm_sign(self._col_perm)
        return sign, logabs

    @property
    def nbytes(self):
        return int(sum(leaf_nbytes(nd) for _, _, nd in leaves(self._root)))

    def astype(self, dtype):
        raise NotImplementedError("refactor H.astype(dtype) instead")

    def __repr__(self):
        n = self.shape[0]
        return f"<{n}x{n} LUFactorization dtype={self.dtype} tol={self.tol:g} {self.nbytes / 2**20:.2f} MiB>"


# ------------------------------------------------------------------ shared helpers

def _triangle(node, lower, unit, diag=True):
    """Copy of the lower (or upper) part of a diagonal node; the other part is zero."""
    if node.kind == LeafKind.DENSE:
        if not diag:
            return Node.dense(node.a.copy())
        a = np.tril(node.a, -1) if lower else np.triu(node.a)
        if unit:
            a[np.diag_indices_from(a)] = 1
        return Node.dense(a)
    if node.kind == LeafKind.LOWRANK:
        return Node.lowrank(node.U, node.V)
    if not diag:
        return copy_tree(node)
    ch = []
    for i, row in enumerate(node.ch):
        r = []
        for j, c in enumerate(row):
            if i == j:
                r.append(_triangle(c, lower, unit, True))
            elif (i > j) == lower:
                r.append(_triangle(c, lower, unit, False))
            else:
                r.append(zero_like(c))
        ch.append(r)
    return Node.hier(ch)


def _diag_slogdet(node):
    d = np.concatenate(diag_values(node, []))
    absd = np.abs(d)
    if np.any(absd == 0):
        return (0.0 if d.dtype.kind == "f" else 0j), -np.inf
    logabs = float(np.sum(np.log(absd)))
    if d.dtype.kind == "c":
        sign = complex(np.prod(d / absd))
        sign /= abs(sign)
    else:
        sign = float((-1) ** int(np.count_nonzero(d < 0)))
    return sign, logabs


def _perm_sign(p):
    """Sign of a permutation (cycle decomposition)."""
    if p is None:
        return 1
    p = np.asarray(p)
    seen = np.zeros(p.size, bool)
    sign = 1
    for i in range(p.size):
        if seen[i]:
            continue
        j, length = i, 0
        while not seen[j]:
            seen[j] = True
            j = int(p[j])
            length += 1
        if length % 2 == 0:
            sign = -sign
    return sign
