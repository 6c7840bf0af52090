"""Sums of H-matrices with truncation: ``add`` and ``materialize``."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..dense import Dense
from ..hblock import HBlock
from ..provenance import BuildInfo
from ..lowrank import LowRank
from ..operator import Adjoint, Product, Scaled, Sum, Transpose
from ..truncate import check_tol_for_dtype
from ._common import blas_single_thread, check_scalar, perm_or_identity, same_perm, tol_arg
from ..partition import LeafKind
from ._nodes import Engine, StructureError, from_op, scale_tree, to_root
from .diagonal import Diagonal

__all__ = ["add", "materialize"]


def add(A, B, tol=1e-6, *, alpha=1.0, beta=1.0):
    """``alpha * A + beta * B`` as an H-matrix, truncated to tolerance ``tol``.

    Parameters
    ----------
    A : HBlock, shape (m, n)
        Gives the cluster trees (permutations) of the result.
    B : HBlock, LowRank, Dense, ndarray, Diagonal, scipy.sparse matrix, or a lazy
        combination of these (``2 * H2 - LowRank(U, V)``), shape (m, n)
        An ``HBlock`` must have A's permutations (same cluster trees); its block
        structure may differ (e.g. another admissibility): where one operand has a
        dense leaf the result is dense, where one has a low-rank leaf and the other a
        grid the result takes the grid, so no block is approximated coarser than in
        either operand. ``LowRank``, ``Dense``, arrays and sparse matrices are in
        original (unpermuted) index order. Add the identity as ``sigma**2 *
        hmat.Identity(n)``.
    tol : float
        ``0 < tol < 1``, and at least 32 machine epsilons
        of the result's dtype (a smaller tolerance cannot be met). Every low-rank leaf
        ``C_b`` of the result is recompressed once,
        with ``||C_b - S_b||_F <= tol ||S_b||_F`` for the exact sum ``S``; dense leaves
        and diagonals are exact, so ``||C - S||_F <= tol ||S||_F``.
    alpha, beta : number
        Scalar coefficients.

    Returns
    -------
    HBlock
        dtype ``result_type(A, B, alpha, beta)``; ``row_perm``/``col_perm`` of ``A``.
    """
    if not isinstance(A, HBlock):
        raise TypeError(f"A must be an hmat.HBlock, got {type(A).__name__}")
    check_scalar(alpha, "alpha")
    check_scalar(beta, "beta")
    tol = tol_arg(tol)
    terms = [(alpha, A)] + _terms(B, beta, "B", tol)
    return _sum(terms, tol, A)


def materialize(expr, tol=1e-6):
    """Evaluate a lazy operator expression into one H-matrix with truncation.

    Parameters
    ----------
    expr : LinearOperator
        A combination by ``+``, ``-``, scalar ``*`` of ``HBlock`` operands on the same
        cluster trees, ``LowRank``/``Dense`` terms, ``Diagonal``/``Identity`` and sparse
        matrices, e.g. ``K + 0.1 * hmat.Identity(n)``; a product ``A @ B`` of two H-matrices
        is formed by :func:`hmat.multiply` first. At least one term must be an ``HBlock``.
    tol : float
        ``0 < tol < 1``, as in :func:`hmat.add`.

    Returns
    -------
    HBlock
    """
    tol = tol_arg(tol)
    terms = _terms(expr, 1.0, "expr", tol)
    base = next((op for _, op in terms if isinstance(op, HBlock)), None)
    if base is None:
        raise TypeError("expr must contain at least one HBlock term (it gives the block structure)")
    return _sum(terms, tol, base)


def _terms(op, coef, name, tol=None):
    """Flatten a lazy expression into ``[(coefficient, operand), ...]``."""
    if isinstance(op, (HBlock, LowRank, Dense, Diagonal)):
        return [(coef, op)]
    if isinstance(op, Sum):
        return _terms(op.A, coef, name, tol) + _terms(op.B, coef, name, tol)
    if isinstance(op, Scaled):
        return _terms(op.A, coef * op.alpha, name, tol)
    if isinstance(op, Adjoint):
        return [(np.conj(c) * coef, _adjoint(o, name)) for c, o in _terms(op.A, 1.0, name, tol)]
    if isinstance(op, Transpose):
        return [(c * coef, o.T) for c, o in _terms(op.A, 1.0, name, tol)]
    if isinstance(op, Product):
        from .multiply import multiply

        if tol is None or not (isinstance(op.A, HBlock) and isinstance(op.B, HBlock)):
            raise TypeError(f"{name}: only products of two HBlocks can be materialized (use hmat.materialize)")
        return [(coef, multiply(op.A, op.B, tol))]
    if sp.issparse(op):
        return [(coef, op)]
    if isinstance(op, np.ndarray):
        if op.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {op.shape}")
        return [(coef, Dense(op))]
    if isinstance(op, numbers.Number):
        raise TypeError(f"{name} is a scalar; to add s * I use s * hmat.Identity(n)")
    if isinstance(op, spla.LinearOperator):
        raise TypeError(f"{name}: cannot materialize a {type(op).__name__} (no explicit structure)")
    raise TypeError(f"{name} must be an operator, ndarray or sparse matrix, got {type(op).__name__}")


def _adjoint(op, name):
    if isinstance(op, (HBlock, LowRank, Dense, Diagonal)):
        return op.H
    if sp.issparse(op):
        return op.conj().T
    raise TypeError(f"{name}: cannot take the adjoint of {type(op).__name__}")


def _sum(terms, tol, base):
    m, n = base.shape
    rp, cp = base.row_perm, base.col_perm
    dtypes = []
    for c, op in terms:
        if tuple(op.shape) != (m, n):
            raise ValueError(f"operands must have the same shape, got {(m, n)} and {tuple(op.shape)}")
        dtypes += [np.result_type(op.dtype), np.result_type(c)]
    dtype = np.result_type(*dtypes)
    if dtype.kind not in "fc":
        dtype = np.dtype(np.float64)
    if dtype == np.float16:  # pragma: no cover
        dtype = np.dtype(np.float32)
    check_tol_for_dtype(tol, dtype)
    eng = Engine(tol, dtype)
    C = None
    with blas_single_thread():
        hterms = [(c, op) for c, op in terms if isinstance(op, HBlock)]
        for c, op in hterms:
            if not same_perm(op.row_perm, rp, m) or not same_perm(op.col_perm, cp, n):
                raise ValueError(
                    "the H-matrix operands have different row or column permutations "
                    "(built on different cluster trees); rebuild them on the same points"
                )
        for c, op in hterms:
            node = from_op(op, dtype, copy=C is None)
            if C is None:
                C = node
                scale_tree(C, np.asarray(c, dtype).item())
                continue
            try:
                eng.add_tree(C, node, np.asarray(c, dtype).item())
            except StructureError as exc:
                raise ValueError(f"the H-matrix operands have incompatible block structures: {exc}") from None
        ip_r = np.empty(m, np.int64)
        ip_r[perm_or_identity(rp, m)] = np.arange(m)
        ip_c = np.empty(n, np.int64)
        ip_c[perm_or_identity(cp, n)] = np.arange(n)
        for c, op in terms:
            c = np.asarray(c, dtype).item()
            if isinstance(op, HBlock):
                continue
            if isinstance(op, LowRank):
                U = op.U if rp is None else op.U[rp]
                V = op.V if cp is None else op.V[cp]
                eng.add_lr(C, (c * U).astype(dtype), V.astype(dtype))
            elif isinstance(op, Dense):
                a = op.array
                if rp is not None or cp is not None:
                    a = a[np.ix_(perm_or_identity(rp, m), perm_or_identity(cp, n))]
                eng.add_dense(C, (c * a).astype(dtype))
            elif isinstance(op, Diagonal):
                k = np.arange(min(m, n))
                _add_entries(eng, C, ip_r[k], ip_c[k], (c * op.d).astype(dtype))
            else:
                coo = sp.coo_matrix(op)
                if not np.all(np.isfinite(coo.data)):
                    raise ValueError("the sparse operand contains NaN or Inf")
                _add_entries(eng, C, ip_r[coo.row], ip_c[coo.col], (c * coo.data).astype(dtype))
        eng.flush_all(C)
    return to_root(C, dtype, rp, cp, BuildInfo(tol=tol))


def _add_entries(eng, C, rows, cols, vals):
    """``C[rows, cols] += vals`` (permuted coordinates; duplicates accumulate)."""
    if rows.size == 0:
        return
    if C.kind == LeafKind.DENSE:
        np.add.at(C.a, (rows, cols), vals)
    elif C.kind == LeafKind.INTERNAL:
        ri = np.searchsorted(C.ro, rows, side="right") - 1
        ci = np.searchsorted(C.co, cols, side="right") - 1
        key = ri * len(C.ch[0]) + ci
        order = np.argsort(key, kind="stable")
        key = key[order]
        bounds = np.flatnonzero(np.diff(key)) + 1
        for grp in np.split(order, bounds):
            i, j = int(ri[grp[0]]), int(ci[grp[0]])
            _add_entries(eng, C.ch[i][j], rows[grp] - C.ro[i], cols[grp] - C.co[j], vals[grp])
    else:
        k = rows.size
        U = np.zeros((C.m, k), eng.dtype)
        V = np.zeros((C.n, k), eng.dtype)
        U[rows, np.arange(k)] = vals
        V[cols, np.arange(k)] = 1
        eng.add_lr(C, U, V)
