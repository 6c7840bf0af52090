"""H-matrix times H-matrix with truncation."""

from __future__ import annotations

import numpy as np

from ..hblock import HBlock
from ..provenance import BuildInfo
from ..truncate import check_tol_for_dtype
from ._common import blas_single_thread, check_scalar, same_perm, tol_arg
from ..partition import LeafKind
from ._nodes import Engine, Node, StructureError, from_op, to_root, zeros_like

__all__ = ["multiply"]


def multiply(A, B, tol=1e-6, *, structure=None, alpha=1.0):
    """The product ``alpha * A @ B`` as an H-matrix, truncated to tolerance ``tol``.

    (The lazy ``A @ B`` of the operator algebra stays lazy; this forms the product.)

    Parameters
    ----------
    A : HBlock, shape (m, k)
    B : HBlock, shape (k, n)
        ``B.row_perm`` must equal ``A.col_perm`` (the inner index on one cluster tree).
    tol : float
        ``0 < tol < 1``, and at least 32 machine epsilons
        of the result's dtype (a smaller tolerance cannot be met). Exact low-rank
        contributions to each low-rank leaf of the result
        are accumulated and recompressed once (blockwise relative Frobenius ``tol``), so
        ``||C - AB||_F <~ tol ||AB||_F``; very long accumulations are recompressed early,
        which can add a little to this.
    structure : HBlock, shape (m, n), optional
        Block structure of the result (its leaf values are ignored), with ``row_perm`` of
        ``A`` and ``col_perm`` of ``B``. Default, for square ``A`` and ``B`` on one cluster
        tree: the finer of the two partitions of ``A`` and ``B`` in every block.
    alpha : number
        Scalar factor (finite).

    Returns
    -------
    HBlock, shape (m, n)
        dtype ``result_type(A, B, alpha)``; ``row_perm`` of ``A``, ``col_perm`` of ``B``.
    """
    for name, X in (("A", A), ("B", B)):
        if not isinstance(X, HBlock):
            raise TypeError(f"{name} must be an hmat.HBlock, got {type(X).__name__}")
    tol = tol_arg(tol)
    check_scalar(alpha, "alpha")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"A @ B: inner dimensions differ, shapes {A.shape} and {B.shape}")
    k = A.shape[1]
    if not same_perm(A.col_perm, B.row_perm, k):
        raise ValueError("A.col_perm differs from B.row_perm: the inner index must use one cluster tree")
    dtype = np.result_type(A.dtype, B.dtype, np.asarray(alpha).dtype)
    if dtype.kind not in "fc":
        dtype = np.dtype(np.float64)
    check_tol_for_dtype(tol, dtype)
    m, n = A.shape[0], B.shape[1]
    eng = Engine(tol, dtype)
    with blas_single_thread():
        An = from_op(A, dtype, copy=False)
        Bn = from_op(B, dtype, copy=False)
        if structure is None:
            if not (A.shape == B.shape and m == k and same_perm(A.row_perm, B.row_perm, m)
                    and same_perm(A.col_perm, B.col_perm, n)):
                raise ValueError(
                    "structure is required unless A and B are square on one cluster tree "
                    "(pass an HBlock of shape (m, n) whose partition the product should take)"
                )
            try:
                C = _union_zeros(An, Bn, dtype)
            except StructureError as exc:
                raise ValueError(f"A and B have incompatible block structures: {exc}") from None
        else:
            if not isinstance(structure, HBlock):
                raise TypeError(f"structure must be an hmat.HBlock, got {type(structure).__name__}")
            if structure.shape != (m, n):
                raise ValueError(f"structure has shape {structure.shape}, expected {(m, n)}")
            if not (same_perm(structure.row_perm, A.row_perm, m) and same_perm(structure.col_perm, B.col_perm, n)):
                raise ValueError("structure must have the row_perm of A and the col_perm of B")
            C = zeros_like(from_op(structure, dtype, copy=False), dtype)
        try:
            eng.muladd(C, An, Bn, np.asarray(alpha, dtype).item())
        except StructureError as exc:
            raise ValueError(f"A and B have incompatible block structures: {exc}") from None
        eng.flush_all(C)
    return to_root(C, dtype, A.row_perm, B.col_perm, BuildInfo(tol=tol))


def _union_zeros(a, b, dtype):
    """Zero node on the finer of two nested partitions."""
    if a.kind == LeafKind.INTERNAL and b.kind == LeafKind.INTERNAL:
        if not (np.array_equal(a.ro, b.ro) and np.array_equal(a.co, b.co)):
            raise StructureError("block partitions do not match (different cluster trees?)")
        return Node.hier([[_union_zeros(x, y, dtype) for x, y in zip(ra, rb)] for ra, rb in zip(a.ch, b.ch)])
    if a.kind == LeafKind.INTERNAL:
        return zeros_like(a, dtype)
    if b.kind == LeafKind.INTERNAL:
        return zeros_like(b, dtype)
    if a.kind == LeafKind.DENSE or b.kind == LeafKind.DENSE:
        return Node.dense(np.zeros((a.m, a.n), dtype))
    return Node.lowrank(np.zeros((a.m, 0), dtype), np.zeros((a.n, 0), dtype))
