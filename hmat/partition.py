"""Partition: the one block structure of an H-matrix (public, immutable).

A :class:`Partition` is what every form of an H-matrix shares: the leaf table (row and
column start and size of each leaf, and its :class:`LeafKind`, in permuted coordinates and
depth-first, row-major order), the tree topology (breadth-first node arrays, as
:class:`~hmat.BlockTree` has them) and the row and column permutations. An
:class:`~hmat.HBlock` is a Partition plus leaf data (:meth:`hmat.HBlock.from_partition`);
the packed, arithmetic-node and CSR forms are private execution formats built from it.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["LeafKind", "Partition"]


class LeafKind(enum.IntEnum):
    """Kind of a block-tree node; the one code used everywhere (compiled code uses the ints).

    ``DENSE`` (0) and ``LOWRANK`` (1) are leaves; ``INTERNAL`` (2) is a node with children.
    """

    DENSE = 0
    LOWRANK = 1
    INTERNAL = 2


_LEAF = ("r0", "m", "c0", "n", "kind")
_TREE = ("node_kind", "node_first", "node_nr", "node_nc")
_EXTENT = ("node_row_start", "node_row_stop", "node_col_start", "node_col_stop")
_ARRAYS = ("row_perm", "col_perm") + _LEAF + _TREE + _EXTENT + ("leaf_nodes",)


class Partition:
    """The block partition of an ``m x n`` matrix into dense and low-rank leaves.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``, both >= 1.
    r0, m, c0, n : array_like of int, shape (n_leaves,)
        Row start, rows, column start and columns of each leaf, in permuted coordinates,
        in depth-first, row-major order of the tree. Each leaf has at least one row and
        one column; the leaves tile ``[0, m) x [0, n)`` exactly once.
    kind : array_like of int, shape (n_leaves,)
        :class:`LeafKind` of each leaf: ``DENSE`` (inadmissible: its operator is always
        dense) or ``LOWRANK`` (admissible: its operator is low-rank, or dense where a
        builder found that low rank does not pay at the tolerance).
    row_perm, col_perm : array_like of int, shape (m,) / (n,), optional
        ``row_perm[p]`` is the original row index at permuted position ``p``; default
        identity.
    tree : tuple of 4 array_like of int, or nested list, optional
        Either the tuple ``(node_kind, node_first, node_nr, node_nc)``, shape (n_nodes,)
        each: the nodes in breadth-first order (node 0 the root); an ``INTERNAL`` node's
        children are the ``node_nr x node_nc`` grid ``node_first + i * node_nc + j``; a
        leaf node has ``node_first = -1`` and ``node_nr = node_nc = 0``. Or a nested list
        grid: a list of rows (lists) whose entries are leaf indices or grids, e.g.
        ``[[0, 1], [2, [[3], [4]]]]``, the leaf indices ``0 .. n_leaves - 1`` in
        depth-first, row-major order. Default: derived from the leaf
        order (each split in two, where the leaves fall into full-width or full-height
        strips; two stacked 1 x 2 rows with the same column cut become one 2 x 2 grid).

    Attributes
    ----------
    shape : tuple of int
    row_perm, col_perm : ndarray of int64
    r0, m, c0, n : ndarray of int64, shape (n_leaves,)
    kind : ndarray of int8, shape (n_leaves,)
    node_kind : ndarray of int8, shape (n_nodes,)
    node_first, node_nr, node_nc : ndarray of int64, shape (n_nodes,)
    node_row_start, node_row_stop, node_col_start, node_col_stop : ndarray of int64
        Extent of each node in permuted coordinates.
    leaf_nodes : ndarray of int64, shape (n_leaves,)
        Node id of each leaf.

    All arrays are read-only; a Partition never changes after construction.

    Raises
    ------
    ValueError
        Naming the argument: sizes that do not match, a leaf outside the matrix, leaves
        that overlap or leave a gap, leaves not in depth-first order of the tree, a tree
        that is not breadth-first, permutations that are not permutations.
    """

    __slots__ = ("_shape", "_row_identity", "_col_identity") + tuple("_" + a for a in _ARRAYS)

    def __init__(self, shape, r0, m, c0, n, kind, row_perm=None, col_perm=None, tree=None):
        shape = _check_shape(shape)
        r0, m, c0, n = (_int_array(v, name) for v, name in ((r0, "r0"), (m, "m"), (c0, "c0"), (n, "n")))
        kind = _int_array(kind, "kind")
        L = r0.size
        for v, name in ((m, "m"), (c0, "c0"), (n, "n"), (kind, "kind")):
            if v.size != L:
                raise ValueError(f"{name} has {v.size} entries, expected {L} (one per leaf, as r0)")
        if L == 0:
            raise ValueError("r0: a partition has at least one leaf")
        if not np.isin(kind, (LeafKind.DENSE, LeafKind.LOWRANK)).all():
            raise ValueError("kind: leaf kinds must be LeafKind.DENSE (0) or LeafKind.LOWRANK (1)")
        if (m < 1).any() or (n < 1).any():
            raise ValueError(f"{'m' if (m < 1).any() else 'n'}: every leaf has at least one row and one column")
        if (r0 < 0).any() or (r0 + m > shape[0]).any():
            raise ValueError(f"r0, m: a leaf lies outside the {shape[0]} rows")
        if (c0 < 0).any() or (c0 + n > shape[1]).any():
            raise ValueError(f"c0, n: a leaf lies outside the {shape[1]} columns")
        rp = permutation_or_none(row_perm, shape[0], "row_perm")
        cp = permutation_or_none(col_perm, shape[1], "col_perm")
        if tree is None:
            nested = _derive(r0, r0 + m, c0, c0 + n, 0, shape[0], 0, shape[1], 0, L)
            tree = _linearize(nested, kind)
            name = "leaf order"
        else:
            if isinstance(tree, list):
                tree = _linearize(_check_nested(tree, L), kind)
            elif isinstance(tree, tuple) and len(tree) == 4:
                tree = tuple(_int_array(v, f"tree[{i}]") for i, v in enumerate(tree))
            else:
                raise ValueError("tree must be a tuple (node_kind, node_first, node_nr, node_nc) or a nested list grid")
            name = "tree"
        nk, first, nr, nc = tree
        leaf_nodes = _check_bfs(nk, first, nr, nc, L)
        if not np.array_equal(nk[leaf_nodes], kind):
            raise ValueError("tree: node kinds of the leaves differ from kind")
        ext = _extents(nk, first, nr, nc, leaf_nodes, r0, m, c0, n, shape, name)
        self._set(shape, rp, cp, (r0, m, c0, n, kind), (nk, first, nr, nc), ext, leaf_nodes)

    def _set(self, shape, rp, cp, leaf, tree, ext, leaf_nodes):
        put = object.__setattr__
        put(self, "_shape", (int(shape[0]), int(shape[1])))
        put(self, "_row_identity", _is_identity(rp))
        put(self, "_col_identity", _is_identity(cp))
        rp = np.arange(shape[0], dtype=np.int64) if rp is None else rp
        cp = np.arange(shape[1], dtype=np.int64) if cp is None else cp
        dts = {"kind": np.int8, "node_kind": np.int8}
        vals = (rp, cp) + tuple(leaf) + tuple(tree) + tuple(ext) + (leaf_nodes,)
        for name, v in zip(_ARRAYS, vals):
            a = np.array(v, dtype=dts.get(name, np.int64), copy=True)
            a.setflags(write=False)
            put(self, "_" + name, a)

    @classmethod
    def _trusted(cls, shape, row_perm, col_perm, leaf, tree, ext, leaf_nodes):
        """Without validation (the arguments come from a correct construction)."""
        self = cls.__new__(cls)
        self._set(shape, row_perm, col_perm, leaf, tree, ext, leaf_nodes)
        return self

    def __setattr__(self, name, value):
        raise AttributeError("Partition is immutable")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_blocktree(cls, bt):
        """The partition of a :class:`~hmat.BlockTree` (permutations of its cluster trees).

        Parameters
        ----------
        bt : BlockTree

        Returns
        -------
        Partition
        """
        from .blocktree import BlockTree

        if not isinstance(bt, BlockTree):
            raise TypeError(f"bt must be a BlockTree, got {type(bt).__name__}")
        R, C = bt.row_tree, bt.col_tree
        ids = bt.leaf_ids
        rs, cs = bt.rnode, bt.cnode
        ext = (R.start[rs], R.stop[rs], C.start[cs], C.stop[cs])
        leaf = (ext[0][ids], ext[1][ids] - ext[0][ids], ext[2][ids], ext[3][ids] - ext[2][ids], bt.kind[ids])
        return cls._trusted((R.n, C.n), R.perm, C.perm, leaf, (bt.kind, bt.first, bt.nr, bt.nc), ext, ids)

    @classmethod
    def hodlr(cls, n_rows, n_cols, leaf_size):
        """Balanced binary HODLR partition (weak admissibility on index bisection).

        A block with ``m <= leaf_size`` or ``n <= leaf_size`` is a dense leaf; otherwise it
        is split at ``(m // 2, n // 2)`` into a 2 x 2 grid whose off-diagonal blocks are
        low-rank leaves and whose diagonal blocks are split again. Identity permutations.

        Parameters
        ----------
        n_rows, n_cols, leaf_size : int
            >= 1.

        Returns
        -------
        Partition
        """
        n_rows = _check_count(n_rows, "n_rows")
        n_cols = _check_count(n_cols, "n_cols")
        leaf_size = _check_count(leaf_size, "leaf_size")
        table = []

        def build(r0, c0, m, n):
            if m <= leaf_size or n <= leaf_size:
                table.append((r0, m, c0, n, LeafKind.DENSE))
                return len(table) - 1
            m1, n1 = m // 2, n // 2
            tl = build(r0, c0, m1, n1)
            table.append((r0, m1, c0 + n1, n - n1, LeafKind.LOWRANK))
            tr = len(table) - 1
            table.append((r0 + m1, m - m1, c0, n1, LeafKind.LOWRANK))
            bl = len(table) - 1
            br = build(r0 + m1, c0 + n1, m - m1, n - n1)
            return [[tl, tr], [bl, br]]

        nested = build(0, 0, n_rows, n_cols)
        r0, m, c0, n, kind = (np.array(col, np.int64) for col in zip(*table))
        return cls((n_rows, n_cols), r0, m, c0, n, kind, tree=nested if isinstance(nested, list) else None)

    # ------------------------------------------------------------------ fields
    shape = property(lambda self: self._shape, doc="``(m, n)``.")
    row_perm = property(lambda self: self._row_perm, doc="Original row index at each permuted position.")
    col_perm = property(lambda self: self._col_perm, doc="Original column index at each permuted position.")
    r0 = property(lambda self: self._r0, doc="Row start of each leaf (permuted coordinates).")
    m = property(lambda self: self._m, doc="Rows of each leaf.")
    c0 = property(lambda self: self._c0, doc="Column start of each leaf (permuted coordinates).")
    n = property(lambda self: self._n, doc="Columns of each leaf.")
    kind = property(lambda self: self._kind, doc="LeafKind of each leaf (int8).")
    node_kind = property(lambda self: self._node_kind, doc="LeafKind of each node (int8, breadth-first).")
    node_first = property(lambda self: self._node_first, doc="First child of each node (-1 for a leaf).")
    node_nr = property(lambda self: self._node_nr, doc="Block rows of each node's children grid.")
    node_nc = property(lambda self: self._node_nc, doc="Block columns of each node's children grid.")
    node_row_start = property(lambda self: self._node_row_start, doc="First row of each node.")
    node_row_stop = property(lambda self: self._node_row_stop, doc="One past the last row of each node.")
    node_col_start = property(lambda self: self._node_col_start, doc="First column of each node.")
    node_col_stop = property(lambda self: self._node_col_stop, doc="One past the last column of each node.")
    leaf_nodes = property(lambda self: self._leaf_nodes, doc="Node id of each leaf.")

    @property
    def n_leaves(self) -> int:
        return int(self._r0.size)

    @property
    def n_nodes(self) -> int:
        return int(self._node_kind.size)

    @property
    def n_lowrank(self) -> int:
        """Number of low-rank (admissible) leaves."""
        return int(np.count_nonzero(self._kind == LeafKind.LOWRANK))

    @property
    def permuted(self) -> tuple:
        """``(rows, cols)``: whether each permutation differs from the identity."""
        return (not self._row_identity, not self._col_identity)

    def leaves(self):
        """Yield ``(r0, m, c0, n, kind)`` of each leaf (ints and a :class:`LeafKind`)."""
        for q in range(self.n_leaves):
            yield (int(self._r0[q]), int(self._m[q]), int(self._c0[q]), int(self._n[q]), LeafKind(int(self._kind[q])))

    def children(self, node):
        """Children node ids of ``node`` as an ``nr x nc`` nested tuple (empty for a leaf)."""
        f, a, b = int(self._node_first[node]), int(self._node_nr[node]), int(self._node_nc[node])
        return tuple(tuple(f + i * b + j for j in range(b)) for i in range(a))

    def transpose(self):
        """The partition of the transposed matrix (rows and columns swapped).

        Leaves and children grids are transposed, so the leaf order changes; the returned
        order (``order[i]`` = leaf of ``self`` that is leaf ``i`` of the transpose) is the
        second element: ``(Partition, order)``.
        """
        leaf_of = np.full(self.n_nodes, -1, np.int64)
        leaf_of[self._leaf_nodes] = np.arange(self.n_leaves)

        def nest(b):
            if self._node_kind[b] != LeafKind.INTERNAL:
                return int(leaf_of[b])
            g = self.children(b)
            return [[nest(g[i][j]) for i in range(len(g))] for j in range(len(g[0]))]

        tree = nest(0)
        order = []

        def collect(x):
            if isinstance(x, list):
                for row in x:
                    for c in row:
                        collect(c)
            else:
                order.append(x)

        collect(tree)
        order = np.array(order, np.int64)
        renum = np.empty_like(order)
        renum[order] = np.arange(order.size)

        def relabel(x):
            return [[relabel(c) for c in row] for row in x] if isinstance(x, list) else int(renum[x])

        p = Partition(
            (self._shape[1], self._shape[0]), self._c0[order], self._n[order], self._r0[order], self._m[order],
            self._kind[order], None if self._col_identity else self._col_perm,
            None if self._row_identity else self._row_perm, tree=relabel(tree) if isinstance(tree, list) else None,
        )
        return p, order

    # ------------------------------------------------------------------ comparisons
    def __eq__(self, other):
        if not isinstance(other, Partition):
            return NotImplemented
        return self._shape == other._shape and all(
            np.array_equal(getattr(self, "_" + a), getattr(other, "_" + a)) for a in _ARRAYS
        )

    __hash__ = None

    def __repr__(self):
        perm = {(False, False): "", (True, False): " row-permuted", (False, True): " col-permuted",
                (True, True): " permuted"}[self.permuted]
        return (f"<Partition {self._shape[0]}x{self._shape[1]} leaves={self.n_leaves} "
                f"(dense {self.n_leaves - self.n_lowrank}, low-rank {self.n_lowrank}) nodes={self.n_nodes}{perm}>")

    def __reduce__(self):
        return (_unpickle, (self._shape, self._row_perm, self._col_perm,
                            tuple(getattr(self, "_" + a) for a in _LEAF + _TREE + _EXTENT), self._leaf_nodes,
                            self._row_identity, self._col_identity))


def _unpickle(shape, rp, cp, arrays, leaf_nodes, rid, cid):
    return Partition._trusted(shape, None if rid else rp, None if cid else cp, arrays[:5], arrays[5:9],
                              arrays[9:], leaf_nodes)


# ---------------------------------------------------------------------- validation

def _check_shape(shape):
    try:
        a, b = shape
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (m, n), got {shape!r}") from None
    return _check_count(a, "shape[0]"), _check_count(b, "shape[1]")


def _check_count(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def _int_array(v, name):
    a = np.asarray(v)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
    return a.astype(np.int64)


def permutation_or_none(p, n, name):
    """The one identity rule for permutations: None for the identity (given or omitted),
    else ``p`` as an int64 array, after checking it is a permutation of ``0 .. n-1``.

    Used by :class:`Partition` and :class:`~hmat.HBlock` (internal to hmat).

    Parameters
    ----------
    p : array_like of int, shape (n,), or None
    n : int
    name : str
        The argument's name, for the error message.

    Returns
    -------
    ndarray of int64, shape (n,), or None

    Raises
    ------
    ValueError
        Naming ``name``: not an integer array of length ``n``, or not a permutation.
    """
    if p is None:
        return None
    p = np.asarray(p)
    if p.ndim != 1 or p.size != n or (p.size and p.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be an integer array of length {n}")
    p = p.astype(np.int64)
    if n and (p.min() < 0 or p.max() >= n):
        raise ValueError(f"{name} is not a permutation of 0..{n - 1}")
    seen = np.zeros(n, bool)
    seen[p] = True
    if not seen.all():
        raise ValueError(f"{name} is not a permutation of 0..{n - 1}")
    return None if _is_identity(p) else p


def _is_identity(p):
    return p is None or bool(np.array_equal(p, np.arange(p.size)))


def _check_bfs(nk, first, nr, nc, n_leaves):
    """Leaf node ids in depth-first order, after checking the breadth-first layout."""
    N = nk.size
    for v, name in ((first, "node_first"), (nr, "node_nr"), (nc, "node_nc")):
        if v.size != N:
            raise ValueError(f"tree: {name} has {v.size} entries, expected {N} (as node_kind)")
    if N == 0:
        raise ValueError("tree: no nodes")
    if not np.isin(nk, (LeafKind.DENSE, LeafKind.LOWRANK, LeafKind.INTERNAL)).all():
        raise ValueError("tree: node_kind values must be LeafKind values 0, 1 or 2")
    internal = nk == LeafKind.INTERNAL
    if (first[~internal] != -1).any() or (nr[~internal] != 0).any() or (nc[~internal] != 0).any():
        raise ValueError("tree: a leaf node must have node_first = -1 and node_nr = node_nc = 0")
    if (nr[internal] < 1).any() or (nc[internal] < 1).any():
        raise ValueError("tree: an internal node needs node_nr >= 1 and node_nc >= 1")
    counts = np.where(internal, nr * nc, 0)
    expect = 1 + np.concatenate(([0], np.cumsum(counts)[:-1]))
    if (first[internal] != expect[internal]).any() or 1 + counts.sum() != N:
        raise ValueError("tree: nodes are not in breadth-first order (children of node b at node_first[b], "
                         "consecutive, in order of b)")
    if (expect[internal] <= np.flatnonzero(internal)).any():
        raise ValueError("tree: a child precedes its parent")
    if int((~internal).sum()) != n_leaves:
        raise ValueError(f"tree has {int((~internal).sum())} leaf nodes, expected {n_leaves}")
    out = []
    stack = [0]
    while stack:
        b = stack.pop()
        if internal[b]:
            f, k = int(first[b]), int(nr[b] * nc[b])
            stack.extend(range(f + k - 1, f - 1, -1))
        else:
            out.append(b)
    return np.array(out, np.int64)


def _extents(nk, first, nr, nc, leaf_nodes, r0, m, c0, n, shape, name):
    """Node extents, bottom-up; checks that every children grid tiles its parent."""
    N = nk.size
    rs, re, cs, ce = (np.full(N, -1, np.int64) for _ in range(4))
    rs[leaf_nodes], re[leaf_nodes], cs[leaf_nodes], ce[leaf_nodes] = r0, r0 + m, c0, c0 + n
    for b in np.flatnonzero(nk == LeafKind.INTERNAL)[::-1]:
        f, a, w = int(first[b]), int(nr[b]), int(nc[b])
        g = np.arange(f, f + a * w).reshape(a, w)
        ok = (
            (rs[g] == rs[g[:, :1]]).all() and (re[g] == re[g[:, :1]]).all()
            and (cs[g] == cs[g[:1, :]]).all() and (ce[g] == ce[g[:1, :]]).all()
            and (rs[g[1:, 0]] == re[g[:-1, 0]]).all() and (cs[g[0, 1:]] == ce[g[0, :-1]]).all()
        )
        if not ok:
            raise ValueError(f"{name}: the leaves do not tile node {int(b)}'s {a}x{w} children grid "
                             "(overlap, gap, or not in depth-first row-major order)")
        rs[b], re[b], cs[b], ce[b] = rs[g[0, 0]], re[g[-1, 0]], cs[g[0, 0]], ce[g[0, -1]]
    if (rs[0], re[0], cs[0], ce[0]) != (0, shape[0], 0, shape[1]):
        raise ValueError(f"{name}: the leaves cover rows [{rs[0]}, {re[0]}) x columns [{cs[0]}, {ce[0]}), "
                         f"not the whole {shape[0]}x{shape[1]} matrix")
    return rs, re, cs, ce


def _derive(r0, r1, c0, c1, R0, R1, C0, C1, a, b):
    """Nested grid (lists; leaf = its index) of the leaves ``a:b`` tiling the region, from
    their order: the prefixes that fill full-width (or else full-height) strips are the cuts;
    stacked single-row grids with the same column cuts merge into one grid."""
    if b - a == 1:
        if (r0[a], r1[a], c0[a], c1[a]) != (R0, R1, C0, C1):
            raise ValueError("r0, m, c0, n: the leaves overlap or leave a gap")
        return a
    s = slice(a, b - 1)
    area = np.cumsum((r1[s] - r0[s]) * (c1[s] - c0[s]))
    rmax, cmax = np.maximum.accumulate(r1[s]), np.maximum.accumulate(c1[s])
    rmin, cmin = np.minimum.accumulate(r0[s]), np.minimum.accumulate(c0[s])
    base = (rmin == R0) & (cmin == C0)
    rows = np.flatnonzero(base & (cmax == C1) & (rmax < R1) & (area == (rmax - R0) * (C1 - C0)))
    cols = np.flatnonzero(base & (rmax == R1) & (cmax < C1) & (area == (cmax - C0) * (R1 - R0)))
    if rows.size == 0 and cols.size == 0:
        raise ValueError("r0, m, c0, n: the leaves overlap, leave a gap, or are not in depth-first "
                         "row-major order of a grid tree")
    hits = rows if rows.size else cols
    ends = [a + int(k) + 1 for k in hits] + [b]
    cuts = [int(v) for v in (rmax if rows.size else cmax)[hits]]
    lo, parts = a, []
    for i, hi in enumerate(ends):
        u0 = cuts[i - 1] if i else (R0 if rows.size else C0)
        u1 = cuts[i] if i < len(cuts) else (R1 if rows.size else C1)
        if rows.size:
            parts.append(_derive(r0, r1, c0, c1, u0, u1, C0, C1, lo, hi))
        else:
            parts.append(_derive(r0, r1, c0, c1, R0, R1, u0, u1, lo, hi))
        lo = hi
    if not rows.size:
        return [parts]
    if all(isinstance(x, list) and len(x) == 1 for x in parts):
        heads = [[c0[_first_leaf(c)] for c in x[0]] for x in parts]
        if all(h == heads[0] for h in heads):
            return [x[0] for x in parts]
    return [[x] for x in parts]


def _first_leaf(x):
    while isinstance(x, list):
        x = x[0][0]
    return x


def _check_nested(tree, n_leaves):
    """The nested list grid, after checking its shape and that its leaves are 0.. in DFS order."""
    seen = []

    def walk(x, depth):
        if isinstance(x, list):
            if depth > 10_000 or not x or not all(isinstance(r, list) and len(r) == len(x[0]) and r for r in x):
                raise ValueError("tree: every grid is a non-empty list of equally long non-empty rows")
            for row in x:
                for c in row:
                    walk(c, depth + 1)
        elif isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            seen.append(int(x))
        else:
            raise ValueError(f"tree: entries are leaf indices or grids, got {type(x).__name__}")

    walk(tree, 0)
    if seen != list(range(n_leaves)):
        raise ValueError(f"tree: the leaf indices must be 0..{n_leaves - 1} in depth-first, row-major order")
    return tree


def _linearize(nested, leaf_kind):
    """Breadth-first ``(node_kind, node_first, node_nr, node_nc)`` of a nested grid."""
    nodes = [nested]
    kind, first, nr, nc = [], [], [], []
    head = 0
    while head < len(nodes):
        x = nodes[head]
        if isinstance(x, list):
            kind.append(LeafKind.INTERNAL)
            first.append(len(nodes))
            nr.append(len(x))
            nc.append(len(x[0]))
            nodes.extend(c for row in x for c in row)
        else:
            kind.append(int(leaf_kind[x]))
            first.append(-1)
            nr.append(0)
            nc.append(0)
        head += 1
    as64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return as64(kind), as64(first), as64(nr), as64(nc)
