"""Coarsening: replace a subtree by one low-rank block where that stores less."""

from __future__ import annotations

import numpy as np

from ._norms import fro, hypot_all, lowrank_fro
from ._validate import check_tol
from .dense import Dense
from .hblock import HBlock, trusted_node
from .lowrank import LowRank, trusted_lowrank
from .svd import recompress
from .truncate import check_tol_for_dtype

__all__ = ["coarsen"]


def coarsen(H, tol):
    """Merge sibling leaves into one low-rank block where that is cheaper within ``tol``.

    Works bottom-up. A node whose children are all leaves (after coarsening below) is
    written as one low-rank product (dense children as ``D @ I``), recompressed by QR + SVD
    with the absolute budget ``tol ||N||_F - e`` (``N`` the node in ``H``, ``e`` the error
    already spent below it), and replaced when that stores fewer entries. By the triangle
    inequality every node keeps ``||N - N'||_F <= tol ||N||_F``; disjoint blocks add in
    squares, so ``||H - H'||_F <= tol ||H||_F``.

    Parameters
    ----------
    H : HBlock
    tol : float
        0 < tol < 1.

    Returns
    -------
    HBlock
        New operator with ``error_estimate`` = achieved relative error bound of this step.
    """
    if not isinstance(H, HBlock):
        raise TypeError(f"H must be an HBlock, got {type(H).__name__}")
    tol = check_tol_for_dtype(check_tol(tol), H.dtype)
    op, err, norm = _coarsen(H, tol)
    if not isinstance(op, HBlock):
        op = HBlock([[op]])
    est = err / norm if norm > 0 else 0.0
    return HBlock(op.blocks, H.row_perm, H.col_perm, H.provenance.replace(tol=tol, error_estimate=est))


def _norm(op):
    """``||op||_F``, scale-safe (low-rank: from QR factors, accurate under cancellation)."""
    if isinstance(op, Dense):
        return fro(op.array)
    return lowrank_fro(op.U, op.V)


def _coarsen(node, tol):
    """Return (new op, error spent, ||node||_F)."""
    grid, errs, norms = [], [], []
    for row in node.blocks:
        new_row = []
        for op in row:
            if isinstance(op, HBlock):
                c, e, nrm = _coarsen(op, tol)
            else:
                c, e, nrm = op, 0.0, _norm(op)
            new_row.append(c)
            errs.append(e)
            norms.append(nrm)
        grid.append(tuple(new_row))
    grid = tuple(grid)
    err = hypot_all(errs)
    norm = hypot_all(norms)
    rebuilt = trusted_node(grid, node.dtype, node.shape)
    if any(isinstance(op, HBlock) for row in grid for op in row):
        return rebuilt, err, norm
    budget = tol * norm - err
    current = sum(op.nbytes for row in grid for op in row) // node.dtype.itemsize
    m, n = node.shape
    if budget <= 0 or current <= 0:
        return rebuilt, err, norm
    # one factor pair for the whole node
    cols_u, cols_v = [], []
    r = 0
    for row in grid:
        c = 0
        h = row[0].shape[0]
        for op in row:
            w = op.shape[1]
            if isinstance(op, LowRank):
                fu, fv = op.U, op.V
            else:
                fu, fv = op.array, np.eye(w, dtype=node.dtype)
            k = fu.shape[1]
            if k:
                U = np.zeros((m, k), node.dtype)
                V = np.zeros((n, k), node.dtype)
                U[r:r + h] = fu
                V[c:c + w] = fv
                cols_u.append(U)
                cols_v.append(V)
            c += w
        r += h
    if not cols_u:
        return trusted_lowrank(np.zeros((m, 0), node.dtype), np.zeros((n, 0), node.dtype)), err, norm
    Ubig, Vbig = np.hstack(cols_u), np.hstack(cols_v)
    if Ubig.shape[1] > min(m, n):
        # more factor columns than the block has: recompress the explicit block instead
        from .svd import svd_truncate

        U2, V2, e2 = svd_truncate(rebuilt._to_dense(), abs_err=budget)
    else:
        U2, V2, e2 = recompress(Ubig, Vbig, abs_err=budget)
    if U2.shape[1] * (m + n) < current:
        return trusted_lowrank(U2.astype(node.dtype), V2.astype(node.dtype)), err + e2, norm
    return rebuilt, err, norm
