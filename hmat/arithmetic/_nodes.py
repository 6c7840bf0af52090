"""Mutable block trees for H-matrix arithmetic (private).

The public operators (:class:`~hmat.Dense`, :class:`~hmat.LowRank`, :class:`~hmat.HBlock`)
are immutable and validate on construction. Formatted arithmetic rewrites blocks many
thousands of times, so it works on this light mirror instead: a :class:`Node` is a dense
block (``a``), a low-rank block (``U @ V^H`` plus a list of *pending* low-rank updates that
are truncated once, when the block is next read) or a grid of child nodes (``ch``). All
coordinates are the permuted ones of an :class:`~hmat.HBlock` root.

The primitives here are shared by :mod:`.add`, :mod:`.multiply`, :mod:`.triangular`,
:mod:`.lu` and :mod:`.cholesky`:

* ``apply(X, node, adj)`` – ``op(node) @ X`` for a dense array ``X``;
* ``muladd(C, A, B, alpha, adjB)`` – ``C += alpha * A @ op(B)``, truncated;
* ``add_lr(C, U, V)`` – ``C += U V^H`` (pending on low-rank leaves);
* ``flush(node)`` – truncate pending updates of a low-rank leaf.

``op(B)`` is ``B`` or ``B^H`` (``adjB``). Truncation is blockwise relative Frobenius at the
engine's ``tol``: every low-rank leaf ``L`` that received updates becomes ``L'`` with
``||L_exact - L'||_F <= tol ||L_exact||_F`` at its flush.
"""

from __future__ import annotations

import numpy as np

from ..dense import Dense, trusted_dense
from ..hblock import HBlock
from ..lowrank import LowRank, trusted_lowrank
from ..partition import LeafKind, Partition
from ._recompress import recompress, truncate_dense


class StructureError(ValueError):
    """Two operands whose block partitions do not nest (different cluster trees)."""


class Node:
    """One block: dense ``a``, low-rank ``U V^H`` (+ pending pieces), or a grid ``ch``."""

    __slots__ = ("kind", "m", "n", "a", "U", "V", "pend", "acc", "ch", "ro", "co")

    def __init__(self, kind, m, n):
        self.kind = kind
        self.m = m
        self.n = n
        self.a = self.U = self.V = self.ch = self.ro = self.co = None
        self.pend = None
        self.acc = None  # dense accumulator of pending updates (small low-rank leaves)

    @staticmethod
    def dense(a):
        nd = Node(LeafKind.DENSE, a.shape[0], a.shape[1])
        nd.a = a
        return nd

    @staticmethod
    def lowrank(U, V):
        nd = Node(LeafKind.LOWRANK, U.shape[0], V.shape[0])
        nd.U, nd.V = U, V
        return nd

    @staticmethod
    def hier(ch):
        ro = np.zeros(len(ch) + 1, np.int64)
        co = np.zeros(len(ch[0]) + 1, np.int64)
        ro[1:] = np.cumsum([r[0].m for r in ch])
        co[1:] = np.cumsum([c.n for c in ch[0]])
        nd = Node(LeafKind.INTERNAL, int(ro[-1]), int(co[-1]))
        nd.ch, nd.ro, nd.co = ch, ro, co
        return nd

    def __repr__(self):  # pragma: no cover - debugging aid
        k = ("dense", "lowrank", "hier")[self.kind]
        return f"<Node {k} {self.m}x{self.n}>"


# --------------------------------------------------------------------------- conversion

def from_op(op, dtype, copy=True):
    """Mirror an operator (Dense, LowRank or HBlock) as nodes of ``dtype``.

    An :class:`~hmat.HBlock` is mirrored from its :class:`~hmat.Partition` (the tree) and
    its leaf operators (the data), see :func:`from_partition`.
    """
    if isinstance(op, HBlock):
        return from_partition(op.partition, [lf.op for lf in op.leaves()], dtype, copy)
    return _leaf_node(op, dtype, copy)


def from_partition(partition, leaf_ops, dtype, copy=True):
    """The node tree of ``partition`` with leaf ``q`` mirroring ``leaf_ops[q]``.

    Parameters
    ----------
    partition : Partition
    leaf_ops : sequence of Dense or LowRank
        One per leaf, in the partition's leaf order.
    dtype : numpy dtype
        Working dtype of the nodes.
    copy : bool
        Copy dense arrays (arithmetic updates them in place); low-rank factors are only
        ever replaced, never written, so they are shared when no cast is needed.

    Returns
    -------
    Node
        An ``INTERNAL`` root (a partition that is one leaf gives a 1 x 1 grid).
    """
    leaf_of = dict(zip(partition.leaf_nodes.tolist(), range(partition.n_leaves)))

    def make(b):
        q = leaf_of.get(b)
        if q is not None:
            return _leaf_node(leaf_ops[q], dtype, copy)
        return Node.hier([[make(c) for c in row] for row in partition.children(b)])

    root = make(0)
    return root if root.kind == LeafKind.INTERNAL else Node.hier([[root]])


def _leaf_node(op, dtype, copy):
    if isinstance(op, Dense):
        a = op.array
        a = a.astype(dtype, copy=copy) if (copy or a.dtype != dtype) else a
        return Node.dense(np.ascontiguousarray(a) if copy else a)
    if isinstance(op, LowRank):
        return Node.lowrank(op.U.astype(dtype, copy=False), op.V.astype(dtype, copy=False))
    raise TypeError(f"unsupported block type {type(op).__name__}")


def densify_small(node, limit):
    """Replace every grid of at most ``limit x limit`` entries by one dense leaf (in place).

    Fewer, larger leaves: BLAS on a 128 x 128 block beats a Python recursion over its
    64-point children, and near-field grids are nearly dense anyway.
    """
    if node.kind != LeafKind.INTERNAL:
        return node
    if node.m * node.n <= limit * limit:
        a = np.ascontiguousarray(to_dense(node))
        node.kind, node.a, node.ch, node.ro, node.co = LeafKind.DENSE, a, None, None, None
        return node
    for row in node.ch:
        for c in row:
            densify_small(c, limit)
    return node


def to_root(node, dtype, row_perm=None, col_perm=None, provenance=None):
    """The :class:`~hmat.HBlock` of a flushed node tree: its :class:`~hmat.Partition` (leaf
    kinds from the nodes; a single leaf becomes a 1 x 1 grid) and its leaves of ``dtype``."""
    dtype = np.dtype(dtype)
    table, ops = [], []

    def walk(nd, r, c):
        if nd.kind == LeafKind.INTERNAL:
            return [[walk(ch, r + int(nd.ro[i]), c + int(nd.co[j])) for j, ch in enumerate(row)]
                    for i, row in enumerate(nd.ch)]
        table.append((r, nd.m, c, nd.n, nd.kind))
        if nd.kind == LeafKind.DENSE:
            ops.append(trusted_dense(np.ascontiguousarray(nd.a, dtype=dtype)))
        else:
            flush_exact(nd)
            ops.append(trusted_lowrank(np.ascontiguousarray(nd.U, dtype=dtype), np.ascontiguousarray(nd.V, dtype=dtype)))
        return len(ops) - 1

    tree = walk(node, 0, 0)
    r0, m, c0, n, kind = (np.array(col, np.int64) for col in zip(*table))
    p = Partition((node.m, node.n), r0, m, c0, n, kind, row_perm, col_perm,
                  tree=tree if isinstance(tree, list) else [[tree]])
    return HBlock.from_partition(p, ops, provenance)


def copy_tree(node):
    """Deep copy (dense arrays copied, low-rank factors shared: they are never written)."""
    if node.kind == LeafKind.DENSE:
        return Node.dense(node.a.copy())
    if node.kind == LeafKind.LOWRANK:
        nd = Node.lowrank(node.U, node.V)
        nd.pend = None if node.pend is None else list(node.pend)
        nd.acc = None if node.acc is None else node.acc.copy()
        return nd
    return Node.hier([[copy_tree(c) for c in row] for row in node.ch])


def zeros_like(node, dtype):
    """Same partition, every leaf zero (dense zeros, rank-0 low-rank)."""
    if node.kind == LeafKind.DENSE:
        return Node.dense(np.zeros((node.m, node.n), dtype))
    if node.kind == LeafKind.LOWRANK:
        return Node.lowrank(np.zeros((node.m, 0), dtype), np.zeros((node.n, 0), dtype))
    return Node.hier([[zeros_like(c, dtype) for c in row] for row in node.ch])


def leaves(node, r0=0, c0=0, out=None):
    """``[(r0, c0, leaf_node), ...]`` depth-first."""
    if out is None:
        out = []
    if node.kind != LeafKind.INTERNAL:
        out.append((r0, c0, node))
        return out
    for i, row in enumerate(node.ch):
        for j, c in enumerate(row):
            leaves(c, r0 + int(node.ro[i]), c0 + int(node.co[j]), out)
    return out


def to_dense(node, adj=False):
    """The block as a dense array (``op(node)``)."""
    if node.kind == LeafKind.DENSE:
        return node.a.conj().T if adj else node.a
    if node.kind == LeafKind.LOWRANK:
        flush_exact(node)
        U, V = node.U, node.V
        return V @ U.conj().T if adj else U @ V.conj().T
    dt = _dtype_of(node)
    out = np.zeros((node.n, node.m) if adj else (node.m, node.n), dt)
    for i, row in enumerate(node.ch):
        for j, c in enumerate(row):
            if adj:
                out[node.co[j]:node.co[j + 1], node.ro[i]:node.ro[i + 1]] = to_dense(c, True)
            else:
                out[node.ro[i]:node.ro[i + 1], node.co[j]:node.co[j + 1]] = to_dense(c)
    return out


def _dtype_of(node):
    while node.kind == LeafKind.INTERNAL:
        node = node.ch[0][0]
    return node.a.dtype if node.kind == LeafKind.DENSE else node.U.dtype


# --------------------------------------------------------------------------- engine

class Engine:
    """Formatted arithmetic at blockwise relative Frobenius tolerance ``tol``.

    Parameters
    ----------
    tol : float
        Truncation tolerance of every low-rank recompression.
    dtype : numpy dtype
        Working dtype of all blocks.
    """

    def __init__(self, tol, dtype):
        self.tol = float(tol)
        self.dtype = np.dtype(dtype)
        self.n_recompress = 0

    # ------------------------------------------------------------------ low-rank leaves
    def lr(self, node):
        """Flushed factors ``(U, V)`` of a low-rank node."""
        if node.pend or node.acc is not None:
            self.flush(node)
        return node.U, node.V

    def flush(self, node):
        """Truncate the pending updates of a low-rank leaf (one QR+SVD for all of them)."""
        if node.acc is not None:
            acc, node.acc = node.acc, None
            if node.U.shape[1]:
                acc += node.U @ node.V.conj().T
            U, V = truncate_dense(acc, self.tol, rank_guess=node.U.shape[1])
        elif node.pend:
            Us = [node.U] + [p[0] for p in node.pend]
            Vs = [node.V] + [p[1] for p in node.pend]
            node.pend = None
            U, V = recompress(np.concatenate(Us, axis=1), np.concatenate(Vs, axis=1), self.tol)
        else:
            return
        self.n_recompress += 1
        node.U, node.V = U.astype(self.dtype, copy=False), V.astype(self.dtype, copy=False)

    def flush_all(self, node):
        if node.kind == LeafKind.LOWRANK:
            self.flush(node)
        elif node.kind == LeafKind.INTERNAL:
            for row in node.ch:
                for c in row:
                    self.flush_all(c)

    def add_lr(self, C, U, V):
        """``C += U V^H`` (``U`` of shape (C.m, k), ``V`` of shape (C.n, k))."""
        if U.shape[1] == 0:
            return
        if C.kind == LeafKind.DENSE:
            C.a += U @ V.conj().T
        elif C.kind == LeafKind.LOWRANK:
            if C.acc is not None:
                C.acc += U @ V.conj().T
                return
            if C.pend is None:
                C.pend = []
            C.pend.append((U, V))
            pending = sum(p[0].shape[1] for p in C.pend)
            m, n = C.m, C.n
            if 2 * pending * (m + n) >= m * n or (pending > max(32, 2 * C.U.shape[1]) and pending > min(m, n) // 4):
                # the pieces are about as large as the block (or many): accumulate densely
                # (at most about four times the memory of the pieces), one SVD at the flush. Never
                # truncate a partial sum: its norm can be far above the final sum's (terms
                # that cancel), and a relative truncation of it would break the bound.
                acc = np.zeros((m, n), self.dtype)
                for pu, pv in C.pend:
                    acc += pu @ pv.conj().T
                C.acc, C.pend = acc, None
        else:
            for i, row in enumerate(C.ch):
                Ui = U[C.ro[i]:C.ro[i + 1]]
                for j, c in enumerate(row):
                    self.add_lr(c, Ui, V[C.co[j]:C.co[j + 1]])

    def add_dense(self, C, D):
        """``C += D`` for a dense array ``D`` of C's shape (low-rank leaves: exact SVD pieces)."""
        if C.kind == LeafKind.DENSE:
            C.a += D
        elif C.kind == LeafKind.LOWRANK:
            k = min(D.shape)
            if k:
                # exact: pending piece of full rank, truncated at the flush
                if D.shape[0] <= D.shape[1]:
                    self.add_lr(C, np.eye(D.shape[0], dtype=self.dtype), D.conj().T.astype(self.dtype))
                else:
                    self.add_lr(C, D.astype(self.dtype), np.eye(D.shape[1], dtype=self.dtype))
        else:
            for i, row in enumerate(C.ch):
                for j, c in enumerate(row):
                    self.add_dense(c, D[C.ro[i]:C.ro[i + 1], C.co[j]:C.co[j + 1]])

    # ------------------------------------------------------------------ products with arrays
    def apply(self, node, X, adj=False):
        """``op(node) @ X`` for a dense 2-D array ``X``."""
        if node.kind == LeafKind.DENSE:
            return (node.a.conj().T @ X) if adj else (node.a @ X)
        if node.kind == LeafKind.LOWRANK:
            U, V = self.lr(node)
            if adj:
                return V @ (U.conj().T @ X)
            return U @ (V.conj().T @ X)
        Y = np.zeros((node.n if adj else node.m, X.shape[1]), np.result_type(self.dtype, X.dtype))
        ro, co = node.ro, node.co
        for i, row in enumerate(node.ch):
            for j, c in enumerate(row):
                if adj:
                    Y[co[j]:co[j + 1]] += self.apply(c, X[ro[i]:ro[i + 1]], True)
                else:
                    Y[ro[i]:ro[i + 1]] += self.apply(c, X[co[j]:co[j + 1]])
        return Y

    def dense_of(self, node, adj=False):
        if node.kind == LeafKind.LOWRANK:
            self.flush(node)
        elif node.kind == LeafKind.INTERNAL:
            self.flush_all(node)
        return to_dense(node, adj)

    # ------------------------------------------------------------------ grids
    def grid(self, node, ro, co, adj):
        """``op(node)`` cut by row offsets ``ro`` and column offsets ``co``.

        Returns a list of lists of ``(node, adj)``. A grid node must already have exactly
        this partition; a leaf is sliced (views).
        """
        if node.kind == LeafKind.INTERNAL:
            nro, nco = (node.co, node.ro) if adj else (node.ro, node.co)
            if not (np.array_equal(nro, ro) and np.array_equal(nco, co)):
                raise StructureError(
                    "block partitions do not match (operands built on different cluster trees?)"
                )
            if adj:
                return [[(node.ch[j][i], True) for j in range(len(co) - 1)] for i in range(len(ro) - 1)]
            return [[(node.ch[i][j], False) for j in range(len(co) - 1)] for i in range(len(ro) - 1)]
        if node.kind == LeafKind.DENSE:
            a = node.a.conj().T if adj else node.a
            return [[(Node.dense(a[ro[i]:ro[i + 1], co[j]:co[j + 1]]), False) for j in range(len(co) - 1)]
                    for i in range(len(ro) - 1)]
        U, V = self.lr(node)
        if adj:
            U, V = V, U
        return [[(Node.lowrank(U[ro[i]:ro[i + 1]], V[co[j]:co[j + 1]]), False) for j in range(len(co) - 1)]
                for i in range(len(ro) - 1)]

    @staticmethod
    def offsets(node, adj, rows):
        """Row (``rows``) or column offsets of ``op(node)`` if it is a grid, else None."""
        if node.kind != LeafKind.INTERNAL:
            return None
        if rows:
            return node.co if adj else node.ro
        return node.ro if adj else node.co

    # ------------------------------------------------------------------ C += alpha A op(B)
    def product_lr(self, A, B, adjB):
        """Exact low-rank factors ``(U, V)`` of ``A @ op(B)`` (no truncation)."""
        if A.kind == LeafKind.LOWRANK:
            U, V = self.lr(A)
            return U, self.apply(B, V, not adjB)
        if B.kind == LeafKind.LOWRANK:
            U, V = self.lr(B)
            if adjB:
                U, V = V, U
            return self.apply(A, U), V
        m = A.m
        n = B.m if adjB else B.n
        if A.kind == LeafKind.DENSE or B.kind == LeafKind.DENSE or min(m, n) <= 64:
            P = self.dense_product(A, B, adjB)
            if m <= n:
                return np.eye(m, dtype=self.dtype), P.conj().T
            return P, np.eye(n, dtype=self.dtype)
        # both grids: exact pieces per block of the result, stacked
        ro = A.ro
        co = self.offsets(B, adjB, rows=False)
        inner = A.co
        Ag = self.grid(A, ro, inner, False)
        Bg = self.grid(B, inner, co, adjB)
        Us, Vs = [], []
        for i in range(len(ro) - 1):
            for k in range(len(co) - 1):
                for j in range(len(inner) - 1):
                    a, _ = Ag[i][j]
                    b, bad = Bg[j][k]
                    U, V = self.product_lr(a, b, bad)
                    r = U.shape[1]
                    if r == 0:
                        continue
                    Uf = np.zeros((m, r), self.dtype)
                    Vf = np.zeros((n, r), self.dtype)
                    Uf[ro[i]:ro[i + 1]] = U
                    Vf[co[k]:co[k + 1]] = V
                    Us.append(Uf)
                    Vs.append(Vf)
        if not Us:
            return np.zeros((m, 0), self.dtype), np.zeros((n, 0), self.dtype)
        U = np.concatenate(Us, axis=1)
        V = np.concatenate(Vs, axis=1)
        if U.shape[1] > min(m, n) // 2:
            # keep the stack small; 0.1 tol of this partial product
            U, V = recompress(U, V, 0.1 * self.tol)
            self.n_recompress += 1
        return U, V

    def dense_product(self, A, B, adjB):
        """``A @ op(B)`` as a dense array."""
        if A.kind == LeafKind.DENSE:
            return self.apply(B, A.a.conj().T, not adjB).conj().T
        if B.kind == LeafKind.DENSE:
            return self.apply(A, B.a.conj().T if adjB else B.a)
        if A.kind == LeafKind.LOWRANK:
            U, V = self.lr(A)
            return U @ self.apply(B, V, not adjB).conj().T
        if B.kind == LeafKind.LOWRANK:
            U, V = self.lr(B)
            if adjB:
                U, V = V, U
            return self.apply(A, U) @ V.conj().T
        return self.apply(A, self.dense_of(B, adjB))

    def muladd(self, C, A, B, alpha=-1.0, adjB=False):
        """``C += alpha * A @ op(B)`` in place, truncated at ``tol``."""
        if A.kind == LeafKind.LOWRANK or B.kind == LeafKind.LOWRANK:
            U, V = self.product_lr(A, B, adjB)
            self.add_lr(C, U * alpha, V)
            return
        if C.kind == LeafKind.DENSE:
            C.a += alpha * self.dense_product(A, B, adjB)
            return
        if C.kind == LeafKind.LOWRANK:
            U, V = self.product_lr(A, B, adjB)
            self.add_lr(C, U * alpha, V)
            return
        if A.kind == LeafKind.DENSE and B.kind == LeafKind.DENSE:
            self.add_dense(C, alpha * self.dense_product(A, B, adjB))
            return
        # C is a grid; A and op(B) are grids or dense blocks
        ro, co = C.ro, C.co
        inner = self.offsets(A, False, rows=False)
        if inner is None:
            inner = self.offsets(B, adjB, rows=True)
        Ag = self.grid(A, ro, inner, False)
        Bg = self.grid(B, inner, co, adjB)
        for i, row in enumerate(C.ch):
            for k, c in enumerate(row):
                for j in range(len(inner) - 1):
                    a, _ = Ag[i][j]
                    b, bad = Bg[j][k]
                    self.muladd(c, a, b, alpha, bad)

    # ------------------------------------------------------------------ C += B (tree add)
    def add_tree(self, C, B, beta=1.0):
        """``C += beta * B`` for node trees on nested partitions; C takes the finer one."""
        if B.kind == LeafKind.LOWRANK:
            U, V = self.lr(B)
            self.add_lr(C, U * beta, V)
        elif B.kind == LeafKind.DENSE:
            self.add_dense(C, beta * B.a)
        elif C.kind == LeafKind.INTERNAL:
            Bg = self.grid(B, C.ro, C.co, False)
            for i, row in enumerate(C.ch):
                for j, c in enumerate(row):
                    self.add_tree(c, Bg[i][j][0], beta)
        elif C.kind == LeafKind.DENSE:
            C.a += beta * self.dense_of(B)
        else:  # C low-rank, B a grid: C adopts B's finer partition
            U, V = self.lr(C)
            new = copy_tree(B)
            if beta != 1.0:
                scale_tree(new, beta)
            self.add_lr(new, U, V)
            C.kind, C.ch, C.ro, C.co = LeafKind.INTERNAL, new.ch, new.ro, new.co
            C.U = C.V = C.pend = C.acc = None


def scale_tree(node, alpha):
    """``node *= alpha`` in place (pending pieces included)."""
    if node.kind == LeafKind.DENSE:
        node.a *= alpha
    elif node.kind == LeafKind.LOWRANK:
        node.U = node.U * alpha
        if node.pend:
            node.pend = [(u * alpha, v) for u, v in node.pend]
        if node.acc is not None:
            node.acc *= alpha
    else:
        for row in node.ch:
            for c in row:
                scale_tree(c, alpha)


def flush_exact(node):
    """Concatenate pending pieces without truncation (used only as a safety net)."""
    if node.acc is not None:
        acc, node.acc = node.acc, None
        if node.U.shape[1]:
            acc += node.U @ node.V.conj().T
        node.U, node.V = acc, np.eye(node.n, dtype=acc.dtype)
    if node.pend:
        node.U = np.concatenate([node.U] + [p[0] for p in node.pend], axis=1)
        node.V = np.concatenate([node.V] + [p[1] for p in node.pend], axis=1)
        node.pend = None
