"""Block trees: (row tree, column tree, admissibility) -> the leaf partition of the matrix."""

from __future__ import annotations

import numpy as np

from ._blocktree_numba import KIND_DENSE, KIND_INTERNAL, KIND_LOWRANK, build_block_tree, leaves_dfs
from .admissibility import StrongAdmissibility, WeakAdmissibility
from .cluster import ClusterNode, ClusterTree

__all__ = ["BlockTree"]


class BlockTree:
    """The hierarchical partition of ``rows x cols`` into dense and admissible leaves.

    Parameters
    ----------
    row_tree, col_tree : ClusterTree
    admissibility : StrongAdmissibility, WeakAdmissibility or callable
        ``admissibility(row_node, col_node) -> bool``. The built-in conditions run in
        compiled code; a Python callable is called once per visited block.

    Attributes
    ----------
    rnode, cnode, kind, first, nr, nc : ndarray, shape (nblocks,), int64
        Block nodes in breadth-first order: row/column cluster ids, kind (a
        :class:`~hmat.LeafKind` code: 0 dense leaf, 1 admissible leaf, 2 internal), first
        child id, children grid size.
    leaf_ids : ndarray, int64
        Leaf block ids in depth-first, row-major order.

    A block is a leaf when it is admissible or both clusters are leaves; otherwise the
    clusters that have children are split (a leaf cluster is kept whole).
    """

    def __init__(self, row_tree, col_tree, admissibility=None):
        if not isinstance(row_tree, ClusterTree):
            raise TypeError(f"row_tree must be a ClusterTree, got {type(row_tree).__name__}")
        if not isinstance(col_tree, ClusterTree):
            raise TypeError(f"col_tree must be a ClusterTree, got {type(col_tree).__name__}")
        if admissibility is None:
            admissibility = StrongAdmissibility()
        if not callable(admissibility):
            raise TypeError("admissibility must be callable (row_node, col_node) -> bool")
        self.row_tree, self.col_tree, self.admissibility = row_tree, col_tree, admissibility
        R, C = row_tree, col_tree
        if isinstance(admissibility, (StrongAdmissibility, WeakAdmissibility)):
            if isinstance(admissibility, StrongAdmissibility) and R.dim != C.dim:
                raise ValueError(
                    f"row and column points differ in dimension ({R.dim} vs {C.dim}); "
                    "strong admissibility needs one space"
                )
            out = build_block_tree(
                R.left, R.right, R.bbox_lo, R.bbox_hi, R.start, R.stop,
                C.left, C.right, C.bbox_lo, C.bbox_hi, C.start, C.stop,
                admissibility.code, float(admissibility.eta),
            )
        else:
            out = _build_python(R, C, admissibility)
        self.rnode, self.cnode, self.kind, self.first, self.nr, self.nc = out
        self.leaf_ids = leaves_dfs(self.kind, self.first, self.nr, self.nc)
        self._partition = None

    @property
    def nblocks(self) -> int:
        return int(self.kind.size)

    def partition(self):
        """The :class:`~hmat.Partition` of this block tree (built once, cached).

        Returns
        -------
        Partition
            Leaves in depth-first order, the breadth-first node arrays, and the
            permutations of the two cluster trees.
        """
        if self._partition is None:
            from .partition import Partition

            self._partition = Partition.from_blocktree(self)
        return self._partition

    def leaf_arrays(self):
        """``(r0, m, c0, n, admissible)`` of the leaves, in depth-first order."""
        ids = self.leaf_ids
        R, C = self.row_tree, self.col_tree
        rs, cs = self.rnode[ids], self.cnode[ids]
        r0 = R.start[rs]
        c0 = C.start[cs]
        return r0, R.stop[rs] - r0, c0, C.stop[cs] - c0, self.kind[ids] == KIND_LOWRANK

    def __repr__(self):
        nl = self.leaf_ids.size
        na = int((self.kind == KIND_LOWRANK).sum())
        return f"<BlockTree {self.row_tree.n}x{self.col_tree.n} blocks={self.nblocks} leaves={nl} admissible={na}>"


def _build_python(R, C, adm):
    rnode, cnode, kind, first, nr, nc = [0], [0], [], [], [], []
    head = 0
    while head < len(rnode):
        s, t = rnode[head], cnode[head]
        ns, nt = ClusterNode(R, s), ClusterNode(C, t)
        a = 2 if R.left[s] >= 0 else 1
        b = 2 if C.left[t] >= 0 else 1
        if bool(adm(ns, nt)):
            kind.append(KIND_LOWRANK)
            first.append(-1), nr.append(0), nc.append(0)
        elif a == 1 and b == 1:
            kind.append(KIND_DENSE)
            first.append(-1), nr.append(0), nc.append(0)
        else:
            kind.append(KIND_INTERNAL)
            first.append(len(rnode)), nr.append(a), nc.append(b)
            rows = [s] if a == 1 else [int(R.left[s]), int(R.right[s])]
            cols = [t] if b == 1 else [int(C.left[t]), int(C.right[t])]
            for si in rows:
                for tj in cols:
                    rnode.append(si)
                    cnode.append(tj)
        head += 1
    as64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return as64(rnode), as64(cnode), as64(kind), as64(first), as64(nr), as64(nc)


