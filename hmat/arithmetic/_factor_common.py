"""Helpers shared by the H-LU and H-Cholesky factorizations (private to hmat.arithmetic)."""

from __future__ import annotations

import numpy as np

from ..partition import LeafKind
from ._nodes import Node

__all__ = ["check_diagonal", "check_diagonal_grid", "count_diag_leaves", "diag_values", "leaf_nbytes", "zero_like"]


def count_diag_leaves(node):
    if node.kind != LeafKind.INTERNAL:
        return 1
    p = min(len(node.ch), len(node.ch[0]))
    return sum(count_diag_leaves(node.ch[i][i]) for i in range(p))


def check_diagonal(A, r0, what):
    """A diagonal node must be hierarchical or a square dense leaf (one cluster tree)."""
    if A.kind == LeafKind.LOWRANK:
        raise ValueError(
            f"H: the diagonal block at rows [{r0}, {r0 + A.m}) is low-rank (admissible), so rows and "
            f"columns are on different cluster trees; {what} needs one cluster tree for both"
        )
    if A.kind == LeafKind.DENSE and A.m != A.n:
        raise ValueError(f"H: the diagonal leaf at rows [{r0}, {r0 + A.m}) is not square ({A.m}x{A.n})")


def check_diagonal_grid(A, r0, what):
    """An internal diagonal node must be a p x p grid with square diagonal children; returns p."""
    p = len(A.ch)
    if len(A.ch[0]) != p or not np.array_equal(A.ro, A.co):
        raise ValueError(
            f"H: the diagonal block at rows [{r0}, {r0 + A.m}) has a {p}x{len(A.ch[0])} grid with "
            f"non-square diagonal children; {what} needs the same cluster tree for rows and columns"
        )
    return p


def leaf_nbytes(nd):
    if nd.kind == LeafKind.DENSE:
        return nd.a.nbytes
    return nd.U.nbytes + nd.V.nbytes


def zero_like(node):
    """A rank-0 low-rank block of the shape (and dtype) of ``node``."""
    probe = node
    while probe.kind == LeafKind.INTERNAL:
        probe = probe.ch[0][0]
    dt = probe.a.dtype if probe.kind == LeafKind.DENSE else probe.U.dtype
    return Node.lowrank(np.zeros((node.m, 0), dt), np.zeros((node.n, 0), dt))


def diag_values(node, out):
    if node.kind == LeafKind.DENSE:
        out.append(np.diagonal(node.a))
    else:
        for i in range(len(node.ch)):
            diag_values(node.ch[i][i], out)
    return out
