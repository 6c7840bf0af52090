"""HBlock: a hierarchical block operator whose children are Dense, LowRank or HBlock."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._packed import leaf_size, pack_leaves
from ._validate import check_dtype
from . import _threads
from .dense import Dense
from .linalg import permuted_apply
from .lowrank import LowRank
from .operator import LinearOperator
from .partition import LeafKind, Partition, permutation_or_none
from .provenance import UNKNOWN, BuildInfo

__all__ = ["HBlock", "Leaf"]

#: One leaf of an :class:`HBlock`, in permuted coordinates.
Leaf = namedtuple("Leaf", ["row_start", "col_start", "op"])


class HBlock(LinearOperator):
    """A block operator whose children form a grid of ``Dense | LowRank | HBlock``.

    Parameters
    ----------
    blocks : 2-D nested list of operators
        ``blocks[i][j]`` is the child in block row ``i`` and block column ``j``; children
        in one block row share their number of rows, in one block column their number of
        columns (like :func:`numpy.block`). All children share one dtype and have at
        least one row and one column.
    row_perm, col_perm : int array, optional
        Only for a root: the operator acts in the caller's original index order,
        ``(H @ x)[row_perm] = B @ x[col_perm]`` where ``B`` is the block matrix.
        ``row_perm[p]`` is the original index at permuted position ``p``. An identity
        permutation is the same as none: the attribute is then None (as in
        :class:`~hmat.Partition`).
    provenance : BuildInfo, optional
        How the operator was made (tol, kernel evaluations, error estimate); default
        unknown. Read it as :attr:`provenance` (or :attr:`tol`, :attr:`error_estimate`).

    Raises
    ------
    TypeError
        A child that is not ``Dense | LowRank | HBlock``, or children of different dtypes.
    ValueError
        An empty or ragged grid, mismatched or zero block sizes, a child HBlock with
        permutations, or a permutation that is not one.

    Notes
    -----
    Matrix-vector products walk a packed copy of the leaves (one flat buffer per segment,
    built once and cached), in compiled code, in parallel over segments.
    ``H[i, j]`` is deliberately unsupported: entry access would hide slow code.
    """

    def __init__(self, blocks, row_perm=None, col_perm=None, provenance=None):
        grid = [list(r) for r in blocks]
        if not grid or not grid[0]:
            raise ValueError("blocks must be a non-empty 2-D nested list")
        ncols = len(grid[0])
        for r in grid:
            if len(r) != ncols:
                raise ValueError("blocks: every block row must have the same number of children")
            for op in r:
                if not isinstance(op, (Dense, LowRank, HBlock)):
                    raise TypeError(f"blocks: children must be Dense, LowRank or HBlock, got {type(op).__name__}")
                if isinstance(op, HBlock) and (op.row_perm is not None or op.col_perm is not None):
                    raise ValueError("blocks: a child HBlock must not carry permutations")
        dtypes = {op.dtype for r in grid for op in r}
        if len(dtypes) != 1:
            raise TypeError(f"blocks: children must share one dtype, got {sorted(map(str, dtypes))}")
        heights = [r[0].shape[0] for r in grid]
        widths = [op.shape[1] for op in grid[0]]
        for i, r in enumerate(grid):
            for j, op in enumerate(r):
                if op.shape != (heights[i], widths[j]):
                    raise ValueError(
                        f"blocks[{i}][{j}] has shape {op.shape}, expected ({heights[i]}, {widths[j]})"
                    )
        for i, h in enumerate(heights):
            for j, w in enumerate(widths):
                if h == 0 or w == 0:
                    raise ValueError(f"blocks[{i}][{j}] has shape ({h}, {w}): every block has at least one row and "
                                     f"one column (an H-matrix has no empty blocks)")
        shape = (sum(heights), sum(widths))
        super().__init__(dtypes.pop(), shape)
        self._blocks = tuple(tuple(r) for r in grid)
        self.row_perm = permutation_or_none(row_perm, shape[0], "row_perm")
        self.col_perm = permutation_or_none(col_perm, shape[1], "col_perm")
        self._init_state(provenance)

    def _init_state(self, provenance=None):
        if provenance is not None and not isinstance(provenance, BuildInfo):
            raise TypeError(f"provenance must be an hmat.BuildInfo, got {type(provenance).__name__}")
        self._pack = None
        self._adjoint_of = None
        self._partition = None
        self._provenance = UNKNOWN if provenance is None else provenance

    @property
    def provenance(self):
        """:class:`~hmat.BuildInfo`: how this operator was made (immutable)."""
        return self._provenance

    @property
    def tol(self):
        """The tolerance a builder or arithmetic was asked for (None when built by hand)."""
        return self._provenance.tol

    @property
    def error_estimate(self):
        """Relative Frobenius error: exact for from_dense, sampled for from_kernel; None if unknown."""
        return self._provenance.error_estimate

    @classmethod
    def from_partition(cls, partition, leaf_ops, provenance=None):
        """The H-matrix with block structure ``partition`` and leaf ``i`` equal to ``leaf_ops[i]``.

        Parameters
        ----------
        partition : Partition
        leaf_ops : sequence of Dense or LowRank
            One per leaf, in the partition's (depth-first) leaf order, each of that leaf's
            shape ``(m[i], n[i])``, all of one dtype. A ``LOWRANK`` leaf may hold a Dense
            operator (where low rank does not pay); a ``DENSE`` leaf holds a Dense one.
        provenance : BuildInfo, optional

        Returns
        -------
        HBlock
            Acting in the original index order (``partition.row_perm``/``col_perm``).
        """
        if not isinstance(partition, Partition):
            raise TypeError(f"partition must be an hmat.Partition, got {type(partition).__name__}")
        leaf_ops = list(leaf_ops)
        if len(leaf_ops) != partition.n_leaves:
            raise ValueError(f"leaf_ops has {len(leaf_ops)} entries, expected {partition.n_leaves} (one per leaf)")
        pm, pn, kind = partition.m, partition.n, partition.kind
        for i, op in enumerate(leaf_ops):
            if not isinstance(op, (Dense, LowRank)):
                raise TypeError(f"leaf_ops[{i}] must be Dense or LowRank, got {type(op).__name__}")
            if op.shape != (int(pm[i]), int(pn[i])):
                raise ValueError(f"leaf_ops[{i}] has shape {op.shape}, expected ({pm[i]}, {pn[i]})")
            if kind[i] == LeafKind.DENSE and not isinstance(op, Dense):
                raise TypeError(f"leaf_ops[{i}] must be Dense: leaf {i} is a dense (inadmissible) leaf")
        dtypes = {op.dtype for op in leaf_ops}
        if len(dtypes) != 1:
            raise TypeError(f"leaf_ops must share one dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        leaves = [(int(r), int(c), op) for r, c, op in zip(partition.r0, partition.c0, leaf_ops)]
        packed = pack_leaves(leaves, dtype, max(1, 4 * _threads.get_num_threads()))
        return packed_root(partition, packed, dtype, provenance)

    @property
    def partition(self):
        """:class:`~hmat.Partition`: the block structure (leaf table, tree, permutations).

        Leaf kinds: the built structure's (admissible or not) for a built operator; for one
        assembled from blocks, the kind of each leaf's operator.
        """
        if self._partition is None:
            self._partition = _partition_of(self)
        return self._partition

    @property
    def blocks(self):
        """The children grid, a tuple of tuples of operators."""
        if self._blocks is None:
            if self._adjoint_of is not None:  # an adjoint view: its source's children, transposed
                src = self._adjoint_of.blocks
                self._blocks = tuple(tuple(src[i][j].H for i in range(len(src))) for j in range(len(src[0])))
            else:
                self._blocks = _blocks_from_tree(self)
        return self._blocks

    @property
    def row_sizes(self):
        """Rows of each block row, int64 array."""
        return np.array([r[0].shape[0] for r in self.blocks], np.int64)

    @property
    def col_sizes(self):
        """Columns of each block column, int64 array."""
        return np.array([op.shape[1] for op in self.blocks[0]], np.int64)

    # ------------------------------------------------------------------ structure
    def __getitem__(self, key):
        raise TypeError("HBlock does not support entry access; use to_dense() or matvec with unit vectors")

    def leaves(self):
        """All leaves in depth-first, row-major order.

        Returns
        -------
        list of Leaf
            ``Leaf(row_start, col_start, op)`` in permuted coordinates; ``op`` is a
            :class:`~hmat.Dense` or :class:`~hmat.LowRank`.
        """
        if self._blocks is None and self._adjoint_of is None:  # a packed root: no children grid needed
            p = self._partition
            return [Leaf(r, c, op) for r, c, op in zip(p.r0.tolist(), p.c0.tolist(), self._packed.leaf_ops())]
        out = []
        _collect(self, 0, 0, out)
        return out

    def replace_leaves(self, ops, provenance=None):
        """A new HBlock with leaf ``i`` (in :meth:`leaves` order) replaced by ``ops[i]``.

        Parameters
        ----------
        ops : sequence of Dense, LowRank or HBlock
            One per leaf, each of the shape of the leaf it replaces (an HBlock splits it).
        provenance : BuildInfo, optional
            Of the result (default unknown).
        """
        ops = list(ops)
        leaves = self.leaves()
        if len(ops) != len(leaves):
            raise ValueError(f"ops has {len(ops)} entries, expected {len(leaves)} (one per leaf)")
        for i, (lf, op) in enumerate(zip(leaves, ops)):
            if not isinstance(op, (Dense, LowRank, HBlock)):
                raise TypeError(f"ops[{i}] must be Dense, LowRank or HBlock, got {type(op).__name__}")
            if op.shape != lf.op.shape:
                raise ValueError(f"ops[{i}] has shape {op.shape}, expected {lf.op.shape}")
        new = _rebuild(self, iter(ops))
        out = trusted_node(new.blocks, new.dtype, self.shape, provenance)
        out.row_perm, out.col_perm = self.row_perm, self.col_perm
        return out

    @property
    def symmetry(self):
        """Symmetric storage: ``"symmetric"`` (``A^T = A``), ``"hermitian"`` (``A^H = A``) or
        None (every leaf stored). With it only the leaves on or above the diagonal are
        stored; :meth:`leaves` still lists every leaf, mirrored ones as transposes."""
        if self._pack is None and self._adjoint_of is None:
            return None
        return self._packed.sym

    @property
    def depth(self) -> int:
        """Nesting depth (1 for a grid of leaves)."""
        if self._blocks is None and self._adjoint_of is not None:
            return self._adjoint_of.depth
        if self._blocks is None:  # a packed root: from its partition, without leaf objects
            return _tree_depth(self._partition)
        return 1 + max((op.depth if isinstance(op, HBlock) else 0) for r in self.blocks for op in r)

    # ------------------------------------------------------------------ packed matvec
    @property
    def _packed(self):
        if self._pack is None:
            if self._adjoint_of is not None:
                return self._adjoint_of._packed
            leaves = self.leaves()
            nseg = max(1, 4 * _threads.get_num_threads())
            self._pack = pack_leaves(leaves, self.dtype, nseg)
        return self._pack

    def _apply(self, X, adjoint):
        """``self @ X`` (``self^H @ X`` when adjoint) through the packed leaves."""
        if adjoint:
            in_perm, out_perm, rows = self.row_perm, self.col_perm, self.shape[1]
        else:
            in_perm, out_perm, rows = self.col_perm, self.row_perm, self.shape[0]
        # an adjoint view walks its source's packed leaves with the flag flipped
        flag = bool(adjoint) ^ (self._adjoint_of is not None)
        return permuted_apply(lambda Xp: self._packed.apply(Xp, rows, flag), X, in_perm, out_perm)

    def _matmat(self, X):
        return self._apply(X, False)

    def _matvec(self, x):
        return self._apply(x, False)

    def _rmatmat(self, X):
        return self._apply(X, True)

    def _rmatvec(self, x):
        return self._apply(x, True)

    def _adjoint(self):
        if self._adjoint_of is not None:
            return self._adjoint_of
        out = trusted_node(None, self.dtype, self.shape[::-1], self._provenance)  # children made when asked for
        out.row_perm, out.col_perm = self.col_perm, self.row_perm
        out._adjoint_of = self
        return out

    def _transpose(self):
        if self.dtype.kind != "c":
            return self._adjoint()
        grid = [[self.blocks[i][j].T for i in range(len(self.blocks))] for j in range(len(self.blocks[0]))]
        return HBlock(grid, self.col_perm, self.row_perm, self._provenance)

    # ------------------------------------------------------------------ storage
    def _to_dense(self):
        Ap = np.zeros(self.shape, dtype=self.dtype)
        for r0, c0, op in self.leaves():
            Ap[r0:r0 + op.shape[0], c0:c0 + op.shape[1]] = op._to_dense()
        if self.row_perm is None and self.col_perm is None:
            return Ap
        rp = np.arange(self.shape[0]) if self.row_perm is None else self.row_perm
        cp = np.arange(self.shape[1]) if self.col_perm is None else self.col_perm
        A = np.empty_like(Ap)
        A[np.ix_(rp, cp)] = Ap
        return A

    @property
    def nbytes(self) -> int:
        """Bytes of the stored data (as stored: reduced-precision parts at their own size)."""
        if self._pack is not None or self._adjoint_of is not None:
            return int(self._packed.nbytes)
        return int(sum(op.nbytes for _, _, op in self.leaves()))

    def astype(self, dtype):
        dtype = check_dtype(dtype)
        return self.replace_leaves([lf.op.astype(dtype) for lf in self.leaves()], self._provenance)

    def stats(self):
        """Structure and storage statistics.

        Returns
        -------
        dict
            ``shape``, ``dtype``, ``depth``, ``n_leaves``, ``n_dense``, ``n_lowrank``,
            ``rank_min``, ``rank_mean``, ``rank_max``, ``rank_histogram`` (counts of each
            rank 0..max), ``stored_entries`` (entries actually stored: under symmetric storage
            those of the stored leaves), ``nbytes``, ``dense_nbytes``,
            ``compression_ratio``, ``kernel_evaluations`` (0 unless built from a kernel),
            ``error_estimate``, ``nbytes_by_dtype`` (stored bytes per storage dtype, e.g.
            ``{"float64": ..., "float32": ...}`` for adaptive precision), ``symmetry``
            (see :attr:`symmetry`), ``n_stored_leaves`` (leaves whose data are stored: the
            ``n_leaves`` logical ones less the mirrored ones under symmetric storage).
        """
        stored = None
        if self._pack is not None or self._adjoint_of is not None:  # no leaf objects needed
            _, m, _, n, kind, rank = self._packed.logical_table()
            by_dtype = self._packed.nbytes_by_dtype()
            ids, mids, _ = self._packed.leaf_ids()
            stored = int(np.unique(ids).size)
        else:
            leaves = self.leaves()
            m = np.array([lf.op.shape[0] for lf in leaves], np.int64)
            n = np.array([lf.op.shape[1] for lf in leaves], np.int64)
            kind = np.array([LeafKind.LOWRANK if isinstance(lf.op, LowRank) else LeafKind.DENSE for lf in leaves], np.int64)
            rank = np.array([lf.op.rank if isinstance(lf.op, LowRank) else 0 for lf in leaves], np.int64)
            by_dtype = {self.dtype.name: self.nbytes}
        lr = rank[kind == LeafKind.LOWRANK]
        entries = int(leaf_size(m, n, kind, rank).sum())
        if stored is not None:  # as stored: mirrored leaves share their partners' entries
            entries = int(sum(leaf_size(s.m, s.n, s.kind, s.rank).sum() for s in self._packed.segments))
        return {
            "shape": self.shape,
            "dtype": str(self.dtype),
            "depth": self.depth,
            "n_leaves": int(m.size),
            "n_dense": int((kind == LeafKind.DENSE).sum()),
            "n_lowrank": int(lr.size),
            "rank_min": int(lr.min()) if lr.size else 0,
            "rank_mean": float(lr.mean()) if lr.size else 0.0,
            "rank_max": int(lr.max()) if lr.size else 0,
            "rank_histogram": np.bincount(lr).tolist() if lr.size else [],
            "stored_entries": entries,
            "nbytes": self.nbytes,
            "dense_nbytes": self.shape[0] * self.shape[1] * self.dtype.itemsize,
            "compression_ratio": self.compression_ratio,
            "kernel_evaluations": self._provenance.kernel_evaluations,
            "error_estimate": self.error_estimate,
            "nbytes_by_dtype": by_dtype,
            "symmetry": self.symmetry,
            "n_stored_leaves": int(m.size) if stored is None else stored,
        }

    def truncate(self, tol):
        """Recompress every low-rank leaf to blockwise relative Frobenius error ``tol``.

        Each leaf: QR of both factors, SVD of the small core, keep the fewest singular
        values with ``||L - L_k||_F <= tol ||L||_F``. So ``||H - H'||_F <= tol ||H||_F``.
        Returns a new HBlock.
        """
        from .truncate import truncate

        return truncate(self, tol)

    def coarsen(self, tol):
        """Replace subtrees by one low-rank block where that stores less within ``tol``.

        Returns a new HBlock with ``||H - H'||_F <= tol ||H||_F``; see :func:`hmat.coarsen`.
        """
        from .coarsen import coarsen

        return coarsen(self, tol)

    def __repr__(self):
        s = self.stats()
        return (
            f"<{self.shape[0]}x{self.shape[1]} HBlock dtype={self.dtype} leaves={s['n_leaves']} "
            f"(dense {s['n_dense']}, low-rank {s['n_lowrank']}, rank<={s['rank_max']}) "
            f"{self.nbytes / 2**20:.2f} MiB, ratio {self.compression_ratio:.1f}>"
        )


def _collect(node, r0, c0, out):
    r = r0
    for row in node.blocks:
        c = c0
        for op in row:
            if isinstance(op, HBlock):
                _collect(op, r, c, out)
            else:
                out.append(Leaf(r, c, op))
            c += int(op.shape[1])
        r += int(row[0].shape[0])


def _tree_depth(p):
    """Nesting depth of the HBlock over a :class:`Partition` (at least 1)."""
    first, nr, nc = p.node_first, p.node_nr, p.node_nc
    level, frontier = 0, np.array([0], np.int64)
    while True:
        split = frontier[nr[frontier] * nc[frontier] > 0]
        if split.size == 0:
            return max(level, 1)
        counts = nr[split] * nc[split]
        frontier = np.repeat(first[split], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        level += 1


def packed_root(partition, packed, dtype, provenance=None):
    """The HBlock over ``partition`` whose leaves (in its leaf order) are stored in ``packed``
    (internal to hmat: builders and ``load`` that made the packed store themselves).

    Parameters
    ----------
    partition : Partition
    packed : hmat._packed.Packed
        The leaves' data, in the partition's leaf order; not validated.
    dtype : numpy dtype
    provenance : BuildInfo, optional

    Returns
    -------
    HBlock
        Its permutations are the partition's (None where the identity); the nested
        children are made when asked for, as views of the packed buffers.
    """
    H = HBlock.__new__(HBlock)
    LinearOperator.__init__(H, dtype, partition.shape)
    rows, cols = partition.permuted
    H.row_perm = partition.row_perm if rows else None
    H.col_perm = partition.col_perm if cols else None
    H._init_state(provenance)
    H._blocks = None
    H._pack = packed
    H._partition = partition
    return H


def packed_store(H):
    """The packed leaves (``hmat._packed.Packed``) that ``H``'s products walk, made on first
    use (internal to hmat). An adjoint view shares its source's store (walked adjoint)."""
    return H._packed


def stored_packed(H):
    """``H``'s packed store if its data live only there (a built or loaded operator, or an
    adjoint view of one: symmetric storage or single-precision parts possible), else None
    (internal to hmat)."""
    if H._pack is None and H._adjoint_of is None:
        return None
    return H._packed


def adjoint_source(H):
    """The HBlock that ``H`` is the adjoint view of (``H is src.H``), or None (internal)."""
    return H._adjoint_of


def trusted_node(grid, dtype, shape, provenance=None):
    """An HBlock node over ``grid`` (nested tuples of operators, or None for a lazily made
    view) without validation: for callers inside hmat that built a consistent grid."""
    node = HBlock.__new__(HBlock)
    LinearOperator.__init__(node, dtype, shape)
    node._blocks = grid
    node.row_perm = node.col_perm = None
    node._init_state(provenance)
    return node


def _partition_of(H):
    """The Partition of a nested HBlock (leaf kinds from the operators)."""
    leaves = H.leaves()
    count = iter(range(len(leaves)))

    def nest(op):
        return [[nest(c) for c in row] for row in op.blocks] if isinstance(op, HBlock) else next(count)

    r0 = np.array([lf.row_start for lf in leaves], np.int64)
    c0 = np.array([lf.col_start for lf in leaves], np.int64)
    m = np.array([lf.op.shape[0] for lf in leaves], np.int64)
    n = np.array([lf.op.shape[1] for lf in leaves], np.int64)
    lk = np.array([LeafKind.LOWRANK if isinstance(lf.op, LowRank) else LeafKind.DENSE for lf in leaves], np.int64)
    return Partition(H.shape, r0, m, c0, n, lk, H.row_perm, H.col_perm, tree=nest(H))


def _blocks_from_tree(root):
    """Nested children of a packed root, leaf ops viewing the packed buffers."""
    p = root._partition
    dtype = root.dtype
    ops = root._packed.leaf_ops()
    pos = {int(b): i for i, b in enumerate(p.leaf_nodes)}
    rs, re, cs, ce = p.node_row_start, p.node_row_stop, p.node_col_start, p.node_col_stop

    def make(b):
        if b in pos:
            return ops[pos[b]]
        grid = tuple(tuple(make(c) for c in row) for row in p.children(b))
        return trusted_node(grid, dtype, (int(re[b] - rs[b]), int(ce[b] - cs[b])))

    top = make(0)
    if isinstance(top, HBlock):
        return top.blocks
    return ((top,),)


def _rebuild(node, it):
    grid = tuple(
        tuple(_rebuild(op, it) if isinstance(op, HBlock) else next(it) for op in row) for row in node.blocks
    )
    dtypes = {op.dtype for row in grid for op in row}
    if len(dtypes) != 1:
        raise TypeError(f"ops must share one dtype, got {sorted(map(str, dtypes))}")
    return trusted_node(grid, dtypes.pop(), node.shape)
