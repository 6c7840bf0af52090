"""Triangular solves on node trees (private; the public API is :mod:`.triangular`).

``T`` is a square node whose diagonal children are square: its *lower* part (the blocks
below the diagonal and the lower triangle of the dense diagonal leaves) or its *upper* part
is read, never the other one. ``op(T)`` is ``T`` or ``T^H`` (``adj``).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular as _lapack_trsm

from ..partition import LeafKind
from ._nodes import Node, StructureError


def _check_square_grid(T):
    p = len(T.ch)
    if len(T.ch[0]) != p or not np.array_equal(T.ro, T.co):
        raise StructureError(
            f"a triangular block of shape ({T.m}, {T.n}) has a {p}x{len(T.ch[0])} grid whose "
            "diagonal children are not square (row and column cluster trees differ)"
        )
    return p


def _dense_as_grid(T, offs):
    """A dense triangular block seen as a square grid of views cut at ``offs``."""
    k = len(offs) - 1
    return Node.hier([[Node.dense(T.a[offs[i]:offs[i + 1], offs[j]:offs[j + 1]]) for j in range(k)]
                      for i in range(k)])


def trsm_dense(eng, T, X, lower, unit, adj=False):
    """``X <- op(T)^{-1} X`` for a dense 2-D array ``X`` (in place; returns ``X``)."""
    if T.kind == LeafKind.DENSE:
        X[...] = _lapack_trsm(T.a, X, lower=lower, unit_diagonal=unit, trans=2 if adj else 0,
                              check_finite=False)
        return X
    if T.kind == LeafKind.LOWRANK:
        raise StructureError(f"a diagonal block of shape ({T.m}, {T.n}) is low-rank; it cannot be triangular")
    p = _check_square_grid(T)
    o = T.ro
    eff_lower = lower != adj
    order = range(p) if eff_lower else range(p - 1, -1, -1)
    done = []
    for i in order:
        Xi = X[o[i]:o[i + 1]]
        for k in done:
            if adj:
                Xi -= eng.apply(T.ch[k][i], X[o[k]:o[k + 1]], True)
            else:
                Xi -= eng.apply(T.ch[i][k], X[o[k]:o[k + 1]])
        trsm_dense(eng, T.ch[i][i], Xi, lower, unit, adj)
        done.append(i)
    return X


def solve_left(eng, T, B, lower, unit):
    """``B <- T^{-1} B`` for a node ``B`` (in place, truncated at ``eng.tol``)."""
    if B.kind == LeafKind.DENSE:
        trsm_dense(eng, T, B.a, lower, unit)
        return
    if B.kind == LeafKind.LOWRANK:
        U, V = eng.lr(B)
        B.U = trsm_dense(eng, T, U.copy(), lower, unit)
        return
    if T.kind != LeafKind.INTERNAL:
        if len(B.ch) != 1:
            if T.kind != LeafKind.DENSE:
                raise StructureError("a low-rank triangular block faces a right-hand side split by rows")
            T = _dense_as_grid(T, B.ro)
        else:
            for c in B.ch[0]:
                solve_left(eng, T, c, lower, unit)
            return
    p = _check_square_grid(T)
    if not np.array_equal(T.co, B.ro):
        raise StructureError("the triangular factor and the right-hand side have different row partitions")
    order = range(p) if lower else range(p - 1, -1, -1)
    done = []
    for i in order:
        for j, c in enumerate(B.ch[i]):
            for k in done:
                eng.muladd(c, T.ch[i][k], B.ch[k][j], -1.0)
            solve_left(eng, T.ch[i][i], c, lower, unit)
        done.append(i)


def solve_right(eng, T, B, lower, unit, adj=False):
    """``B <- B op(T)^{-1}`` for a node ``B`` (in place, truncated at ``eng.tol``)."""
    if B.kind == LeafKind.DENSE:
        Y = np.ascontiguousarray(B.a.conj().T)
        trsm_dense(eng, T, Y, lower, unit, not adj)
        B.a[...] = Y.conj().T
        return
    if B.kind == LeafKind.LOWRANK:
        U, V = eng.lr(B)
        B.V = trsm_dense(eng, T, V.copy(), lower, unit, not adj)
        return
    if T.kind != LeafKind.INTERNAL:
        if len(B.ch[0]) != 1:
            if T.kind != LeafKind.DENSE:
                raise StructureError("a low-rank triangular block faces a right-hand side split by columns")
            T = _dense_as_grid(T, B.co)
        else:
            for row in B.ch:
                solve_right(eng, T, row[0], lower, unit, adj)
            return
    p = _check_square_grid(T)
    if not np.array_equal(T.ro, B.co):
        raise StructureError("the triangular factor and the right-hand side have different column partitions")
    eff_upper = lower == adj  # op(T) upper: columns left to right
    order = range(p) if eff_upper else range(p - 1, -1, -1)
    done = []
    for j in order:
        for i, row in enumerate(B.ch):
            c = row[j]
            for k in done:
                # B_ij -= X_ik op(T)_kj ; op(T)_kj = T_jk^H when adj
                if adj:
                    eng.muladd(c, row[k], T.ch[j][k], -1.0, adjB=True)
                else:
                    eng.muladd(c, row[k], T.ch[k][j], -1.0)
            solve_right(eng, T.ch[j][j], c, lower, unit, adj)
        done.append(j)
