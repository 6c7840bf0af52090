"""Triangular solves with H-matrix triangles: vector, block and H-matrix right-hand sides."""

from __future__ import annotations

import numpy as np

from ..hblock import HBlock
from ..linalg import permuted_apply
from ..provenance import BuildInfo
from ..operator import array_namespace
from ._common import blas_single_thread, check_hblock, check_square, same_perm, tol_arg
from ._nodes import Engine, StructureError, from_op, to_root
from ._solve import solve_left, solve_right, trsm_dense

__all__ = ["solve_triangular"]


def solve_triangular(T, B, *, lower=True, unit_diagonal=False, side="left", trans="N", tol=None):
    """Solve ``op(T) X = B`` (``side="left"``) or ``X op(T) = B`` (``side="right"``).

    ``T`` is triangular in its cluster ordering: as an operator ``T = P_r^T T_p P_c``
    where ``(T @ x)[T.row_perm] = T_p @ x[T.col_perm]`` and ``T_p`` (the permuted block
    matrix) is lower (or upper) triangular. Only that triangle of ``T_p`` is read: the
    blocks below (above) the diagonal and the lower (upper) triangle of the dense
    diagonal leaves. The factors ``F.L``, ``F.U`` of :func:`hmat.lu` qualify.

    Parameters
    ----------
    T : HBlock, shape (n, n)
        Square diagonal blocks (one cluster tree for rows and columns).
    B : ndarray, shape (n,) or (n, k) (left) / (n,) or (k, n) (right), or HBlock
        A dense right-hand side (float or complex), or an H-matrix: for ``side="left"``
        of shape (n, k) with ``B.row_perm == T.row_perm``; for ``side="right"`` of shape
        (k, n) with ``B.col_perm == T.col_perm``.
    lower : bool
        Whether ``T_p`` is lower (else upper) triangular.
    unit_diagonal : bool
        Assume ones on the diagonal (the stored diagonal is not read).
    side : {"left", "right"}
    trans : {"N", "C"}
        ``op(T) = T`` or ``T^H``; "C" only with a dense right-hand side.
    tol : float, optional
        Required for an H-matrix ``B``: truncation tolerance ``0 < tol < 1`` of the result.

    Returns
    -------
    ndarray (shape of ``B``) or HBlock
        For an H-matrix ``B`` (left): ``row_perm = T.col_perm``, ``col_perm = B.col_perm``;
        (right): ``row_perm = B.row_perm``, ``col_perm = T.row_perm``.
    """
    check_hblock(T, "T")
    check_square(T, "T")
    for name, flag in (("lower", lower), ("unit_diagonal", unit_diagonal)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    lower, unit_diagonal = bool(lower), bool(unit_diagonal)
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if trans not in ("N", "C"):
        raise ValueError(f"trans must be 'N' or 'C', got {trans!r}")
    n = T.shape[0]
    eng = Engine(1e-6 if tol is None else tol_arg(tol), T.dtype)
    if isinstance(B, HBlock):
        if tol is None:
            raise ValueError("tol is required when B is an HBlock (the result is truncated to tol)")
        if trans != "N":
            raise ValueError("trans='C' is only supported with a dense right-hand side; pass T.H instead")
        return _solve_h(eng, T, B, lower, unit_diagonal, side)
    xp = array_namespace(B)
    b = xp.asarray(B)
    if b.ndim not in (1, 2):
        raise ValueError(f"B must be 1-D or 2-D, got shape {b.shape}")
    if b.dtype.kind not in "fciu" or b.dtype.kind == "b":
        raise TypeError(f"B must be a float or complex array, got dtype {b.dtype}")
    dt = np.result_type(T.dtype, b.dtype if b.dtype.kind in "fc" else np.float64)
    if not np.all(np.isfinite(b)):
        raise ValueError("B contains NaN or Inf")
    adj = trans == "C"
    rp, cp = T.row_perm, T.col_perm
    if adj:  # T^H = P_c^T T_p^H P_r
        rp, cp = cp, rp
    with blas_single_thread():
        root = from_op(T, T.dtype, copy=False)
        try:
            if side == "left":
                if b.shape[0] != n:
                    raise ValueError(f"B has shape {b.shape}; expected ({n},) or ({n}, k) for T of shape {T.shape}")
                def left(Bp):
                    Y = np.array(Bp, dtype=dt, order="C")
                    trsm_dense(eng, root, Y, lower, unit_diagonal, adj)
                    return Y

                return permuted_apply(left, b.reshape(n, -1), rp, cp).reshape(b.shape)
            if b.shape[-1] != n:
                raise ValueError(f"B has shape {b.shape}; expected ({n},) or (k, {n}) for T of shape {T.shape}")
            # X op(T) = B  <=>  op(T)^H X^H = B^H: a left solve of the transposes, conjugated
            def right(Bt):
                Y = np.array(Bt.conj(), dtype=dt, order="C")
                trsm_dense(eng, root, Y, lower, unit_diagonal, not adj)
                return Y.conj()

            return permuted_apply(right, b.reshape(-1, n).T, cp, rp).T.reshape(b.shape)
        except StructureError as exc:
            raise ValueError(f"T: {exc}") from None


def _solve_h(eng, T, B, lower, unit, side):
    n = T.shape[0]
    dtype = np.result_type(T.dtype, B.dtype)
    eng.dtype = dtype
    if side == "left":
        if B.shape[0] != n:
            raise ValueError(f"B has shape {B.shape}; expected ({n}, k) for T of shape {T.shape}")
        if not same_perm(B.row_perm, T.row_perm, n):
            raise ValueError("B.row_perm must equal T.row_perm (the same cluster tree for the shared index)")
    else:
        if B.shape[1] != n:
            raise ValueError(f"B has shape {B.shape}; expected (k, {n}) for T of shape {T.shape}")
        if not same_perm(B.col_perm, T.col_perm, n):
            raise ValueError("B.col_perm must equal T.col_perm (the same cluster tree for the shared index)")
    with blas_single_thread():
        Tn = from_op(T, dtype, copy=False)
        X = from_op(B, dtype, copy=True)
        try:
            if side == "left":
                solve_left(eng, Tn, X, lower, unit)
            else:
                solve_right(eng, Tn, X, lower, unit)
        except StructureError as exc:
            raise ValueError(f"T and B: {exc}") from None
        eng.flush_all(X)
    info = BuildInfo(tol=eng.tol)
    if side == "left":
        return to_root(X, dtype, T.col_perm, B.col_perm, info)
    return to_root(X, dtype, B.row_perm, T.row_perm, info)
