"""Packed leaves: the flat layout the compiled matvec walks (private).

A :class:`Packed` is a list of segments; each segment holds the leaf table (int64 arrays
``r0, m, c0, n, kind, rank, off``; ``kind`` holds :class:`hmat.LeafKind` values) and one
flat data buffer: a dense leaf row-major, a low-rank leaf ``U V^H`` component-major
(``U^T`` then ``V^T``, see :mod:`hmat._matvec_numba`). Segments let a parallel build write
its results without a final concatenation, and let a parallel matvec give each thread a
disjoint set of leaves with its own output buffer (race-free accumulation).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import _threads
from ._matvec_numba import apply_segment, apply_segment_sym
from .partition import LeafKind

DENSE = int(LeafKind.DENSE)
LOWRANK = int(LeafKind.LOWRANK)

#: Symmetric storage: apply a leaf and its mirror in one pass (fused kernels); False: two
#: passes (the general kernels), kept for comparison.
FUSED = True

_FIELDS = ("r0", "m", "c0", "n", "kind", "rank", "off")


class Segment:
    """Leaf table ``r0, m, c0, n, kind, rank, off`` (int64, shape (q,)) and data ``buf``.

    ``kind[q]`` is a :class:`hmat.LeafKind` value (``DENSE`` or ``LOWRANK``), ``rank[q]`` the
    rank of a low-rank leaf (0 for a dense one).

    ``ids`` (int64, shape (q,), optional) names the logical leaf (depth-first index) of each
    row; None means the rows are consecutive logical leaves continuing the previous segment.
    Two rows may share a logical leaf (a low-rank leaf split by precision: same block,
    components in two buffers of different dtypes). ``mids`` (int64, shape (q,), optional,
    symmetric storage only) is the logical index of the mirrored leaf a row also stands
    for (its transpose, see :class:`Packed`), -1 for none. ``cost`` is in units of 8 bytes.
    """

    __slots__ = ("r0", "m", "c0", "n", "kind", "rank", "off", "buf", "cost", "ids", "mids", "_mtab", "_ptab")

    def __init__(self, r0, m, c0, n, kind, rank, off, buf, ids=None, mids=None):
        self.r0, self.m, self.c0, self.n, self.kind = r0, m, c0, n, kind
        self.rank, self.off, self.buf = rank, off, buf
        self.ids, self.mids = ids, mids
        self._mtab = self._ptab = None
        nm = 0 if mids is None else int((mids >= 0).sum())
        self.cost = int(buf.nbytes) // 8 + int(r0.size) * 8 + (0 if nm == 0 else int(buf.nbytes) // 16 + nm * 8)

    def mirror_table(self):
        """The leaf table of the rows that stand for a mirrored leaf too (cached)."""
        if self._mtab is None:
            sel = np.zeros(self.r0.size, bool) if self.mids is None else self.mids >= 0
            self._mtab = tuple(np.ascontiguousarray(a[sel]) for a in self.table())
        return self._mtab

    def plain_table(self):
        """The leaf table of the other rows (cached)."""
        if self._ptab is None:
            sel = np.ones(self.r0.size, bool) if self.mids is None else self.mids < 0
            self._ptab = tuple(np.ascontiguousarray(a[sel]) for a in self.table())
        return self._ptab

    def table(self):
        """``(r0, m, c0, n, kind, rank, off)``, the arguments of the compiled kernels."""
        return (self.r0, self.m, self.c0, self.n, self.kind, self.rank, self.off)

    def is_dense(self):
        """Boolean mask of the dense rows (shape (q,))."""
        return self.kind == DENSE

    def file_buf(self):
        """The data with low-rank factors row-major (``U`` (m x k) then ``V`` (n x k)), the
        layout of saved files (a copy when the segment holds low-rank leaves)."""
        return _relaid(self.kind, self.m, self.n, self.rank, self.off, self.buf, False)

    @classmethod
    def from_file(cls, r0, m, c0, n, kind, rank, off, buf, ids=None, mids=None):
        """A segment from a table and data in the saved-file layout (see :meth:`file_buf`)."""
        return cls(r0, m, c0, n, kind, rank, off, _relaid(kind, m, n, rank, off, buf, True), ids, mids)


def _relaid(kind, m, n, rank, off, buf, to_components):
    """``buf`` with its low-rank factors converted by :func:`_relayout` (a copy), or ``buf``
    itself when it holds no low-rank leaf."""
    if not (kind == LOWRANK).any():
        return buf
    out = np.empty_like(buf)
    _relayout(kind, m, n, rank, off, buf, out, to_components)
    return out


@njit(cache=True, nogil=True)
def _relayout(kind, m, n, rank, off, src, dst, to_components):
    """Copy ``src`` into ``dst`` with each low-rank leaf's factors converted from row-major
    (``U``, ``V``) to component-major (``U^T``, ``V^T``) or back; dense leaves copied."""
    for q in range(kind.size):
        mq = m[q]
        nq = n[q]
        o = off[q]
        if kind[q] == DENSE:
            dst[o:o + mq * nq] = src[o:o + mq * nq]
            continue
        k = rank[q]
        for rows, base in ((mq, o), (nq, o + mq * k)):
            for i in range(rows):
                for l in range(k):
                    if to_components:
                        dst[base + l * rows + i] = src[base + i * k + l]
                    else:
                        dst[base + i * k + l] = src[base + l * rows + i]


def leaf_size(m, n, kind, rank):
    """Entries stored by a leaf (int64 arrays of one shape; ``kind``: LeafKind values)."""
    return np.where(kind == DENSE, m * n, rank * (m + n))


class BuiltLeaves:
    """Where each built leaf lives, for the compiled builders (serial and MPI): for every leaf
    id (of ``n`` in all), the buffer that holds it (``where``, -1 when not built here), its
    offset there, its kind and rank (int64 arrays of shape (n,)), and the buffers.

    Filled by :meth:`add`; :meth:`seal` then fixes the buffers for :meth:`mirrors` (which
    may run on several threads)."""

    def __init__(self, n):
        self.where = np.full(n, -1, np.int64)
        self.off, self.kind, self.rank = (np.zeros(n, np.int64) for _ in range(3))
        self.bufs, self._typed = [], None

    def add(self, idx, kind, rank, off, buf):
        """Leaves ``idx`` (int64 array) stored in ``buf`` at ``off`` with ``kind`` and ``rank``."""
        if self._typed is not None:
            raise RuntimeError("BuiltLeaves.add after seal")
        self.where[idx], self.off[idx], self.kind[idx], self.rank[idx] = len(self.bufs), off, kind, rank
        self.bufs.append(buf)

    def data(self, p, size):
        """The ``size`` stored entries of leaf ``p``."""
        o = self.off[p]
        return self.bufs[self.where[p]][o:o + size]

    def seal(self):
        """Freeze the buffers (as the typed list :meth:`mirrors` passes to compiled code)."""
        from numba.typed import List

        self._typed = List([np.ascontiguousarray(b) for b in self.bufs])
        return self

    def mirrors(self, buf, pos, m, n, p):
        """Append after ``buf[:pos]`` the transposes (``m x n``, int64 arrays) of the built
        leaves ``p`` (see :func:`hmat._aca_numba.append_mirrors`): ``(buf, off, end)``."""
        from ._aca_numba import append_mirrors

        if self._typed is None:
            raise RuntimeError("BuiltLeaves.mirrors before seal")
        return append_mirrors(buf, pos, m, n, self.where[p], self.off[p], self.kind[p], self.rank[p], self._typed)


def pack_leaves(leaves, dtype, nseg=1, ids=None, mids=None):
    """Pack ``[(r0, c0, op)]`` (Dense / LowRank ops) into ``nseg`` segments of similar cost.

    ``ids``, ``mids`` (int arrays, one per leaf, optional) are the logical leaf indices
    recorded in the segments (see :class:`Segment`); the data are cast to ``dtype``.
    """
    from .dense import Dense
    from .lowrank import LowRank

    q = len(leaves)
    r0 = np.fromiter((lf[0] for lf in leaves), np.int64, q)
    c0 = np.fromiter((lf[1] for lf in leaves), np.int64, q)
    m = np.fromiter((lf[2].shape[0] for lf in leaves), np.int64, q)
    n = np.fromiter((lf[2].shape[1] for lf in leaves), np.int64, q)
    kind = np.fromiter((LOWRANK if isinstance(lf[2], LowRank) else DENSE for lf in leaves), np.int64, q)
    rank = np.fromiter((lf[2].rank if isinstance(lf[2], LowRank) else 0 for lf in leaves), np.int64, q)
    sizes = leaf_size(m, n, kind, rank)
    bounds = _split_by_cost(sizes, nseg)
    segs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        off = np.zeros(b - a, np.int64)
        if b - a > 1:
            np.cumsum(sizes[a:b - 1], out=off[1:])
        buf = np.empty(int(sizes[a:b].sum()), dtype=dtype)
        for t in range(a, b):
            op = leaves[t][2]
            o = off[t - a]
            if isinstance(op, Dense):
                buf[o:o + m[t] * n[t]] = np.asarray(op.array).reshape(-1)
            elif isinstance(op, LowRank):
                k = rank[t]
                buf[o:o + m[t] * k] = np.asarray(op.U).T.reshape(-1)  # component-major
                buf[o + m[t] * k:o + (m[t] + n[t]) * k] = np.asarray(op.V).T.reshape(-1)
            else:  # pragma: no cover - guarded by HBlock
                raise TypeError(f"cannot pack leaf of type {type(op).__name__}")
        sid = None if ids is None else np.asarray(ids[a:b], np.int64).copy()
        mid = None if mids is None else np.asarray(mids[a:b], np.int64).copy()
        segs.append(Segment(r0[a:b].copy(), m[a:b].copy(), c0[a:b].copy(), n[a:b].copy(), kind[a:b].copy(),
                            rank[a:b].copy(), off, buf, sid, mid))
    return Packed(segs, dtype=dtype)


def pack_parts(parts, dtype, low, nseg=1, mirror=None, sym=None):
    """Pack leaves given in two precisions.

    Parameters
    ----------
    parts : pair of lists of ``(leaf id, r0, c0, op)``
        Parts stored in ``dtype`` and in ``low``; every stored leaf id occurs at least once
        (a low-rank leaf may occur in both: its components split by precision).
    mirror : dict, optional
        Symmetric storage: ``{stored leaf id: mirrored leaf id}``.
    sym : {None, "symmetric", "hermitian"}
    dtype, low : numpy dtypes
        The operator's dtype and the single-precision storage dtype (None: no second list).
    nseg : int
        Segments per precision.

    Returns
    -------
    Packed
    """
    segs = []
    for items, dt in zip(parts, (dtype, low)):
        if items or dt is dtype:
            ids = np.array([it[0] for it in items], np.int64)
            mids = None if mirror is None else np.array([mirror.get(int(i), -1) for i in ids], np.int64)
            segs += pack_leaves([it[1:] for it in items], dt, nseg, ids, mids).segments
    return Packed(segs, dtype=dtype, sym=sym)


def _split_by_cost(sizes, nseg):
    q = sizes.size
    nseg = max(1, min(nseg, q))
    if nseg == 1 or q == 0:
        return [0, q]
    c = np.cumsum(sizes)
    targets = c[-1] * np.arange(1, nseg) / nseg
    cuts = np.searchsorted(c, targets, side="left") + 1
    return [0, *sorted(set(int(x) for x in cuts if 0 < x < q)), q]


class Packed:
    """Segments of packed leaves of one H-matrix, in permuted coordinates.

    ``dtype`` is the operator's dtype (default: that of the widest buffer); buffers may be
    of a lower precision (see :mod:`hmat._precision`), products accumulate in ``dtype``.

    ``sym``: None (every leaf stored), ``"symmetric"`` (``A^T = A``) or ``"hermitian"``
    (``A^H = A``): only one leaf of each mirrored pair is stored (the segments' ``mids``
    name the other), and the mirrored leaf is applied as its partner's transpose
    (``"symmetric"``) or conjugate transpose (``"hermitian"``) in the same pass.
    """

    def __init__(self, segments, dtype=None, sym=None):
        self.segments = list(segments)
        if dtype is None:
            dtype = np.result_type(*(s.buf.dtype for s in self.segments)) if self.segments else np.float64
        self.dtype = np.dtype(dtype)
        if sym not in (None, "symmetric", "hermitian"):
            raise ValueError(f"sym must be None, 'symmetric' or 'hermitian', got {sym!r}")
        self.sym = sym

    @property
    def nbytes(self):
        return sum(s.buf.nbytes for s in self.segments)

    def nbytes_by_dtype(self):
        """Stored bytes per buffer dtype, ``{dtype name: bytes}`` (dtypes holding data; the
        operator's dtype with 0 when nothing is stored)."""
        out = {}
        for s in self.segments:
            if s.buf.nbytes:
                out[s.buf.dtype.name] = out.get(s.buf.dtype.name, 0) + int(s.buf.nbytes)
        return out or {self.dtype.name: 0}

    @property
    def nleaves(self):
        """Logical leaves (rows of a leaf split by precision count once, mirrored leaves count)."""
        return self.leaf_ids()[2]

    def leaf_ids(self):
        """``(ids, mids, q)``: logical index of every table row and of the leaf it mirrors
        (-1: none), segments concatenated, and the number of logical leaves."""
        parts, mparts, nxt = [], [], 0
        for s in self.segments:
            if s.ids is None:
                parts.append(np.arange(nxt, nxt + s.r0.size, dtype=np.int64))
            else:
                parts.append(s.ids)
            mparts.append(np.full(s.r0.size, -1, np.int64) if s.mids is None else s.mids)
            if parts[-1].size:
                nxt = max(nxt, int(parts[-1].max()) + 1, int(mparts[-1].max()) + 1)
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        return np.concatenate(parts), np.concatenate(mparts), nxt

    def row_ids(self):
        """Logical leaf index of every table row, segments concatenated (int64)."""
        return self.leaf_ids()[0]

    def logical_table(self):
        """``(r0, m, c0, n, kind, rank)`` per logical leaf (depth-first order; ``kind``:
        LeafKind values); ``rank`` sums the rows of a split leaf (0 for dense); mirrored
        leaves are their partners transposed."""
        ids, mids, q = self.leaf_ids()
        cat = [np.concatenate([getattr(s, f) for s in self.segments]) if self.segments else np.zeros(0, np.int64)
               for f in ("r0", "m", "c0", "n", "kind", "rank")]
        out = [np.zeros(q, np.int64) for _ in range(6)]
        mir = mids >= 0
        for j, jm in zip(range(5), (2, 3, 0, 1, 4)):
            out[j][ids] = cat[j]
            out[j][mids[mir]] = cat[jm][mir]
        allid = np.concatenate([ids, mids[mir]])
        allrank = np.concatenate([cat[5], cat[5][mir]])
        out[5] = np.bincount(allid, weights=allrank, minlength=q).astype(np.int64)
        return tuple(out)

    def leaf_ops(self):
        """The logical leaves as :class:`~hmat.Dense` / :class:`~hmat.LowRank` of ``dtype``, in
        depth-first order: full-precision data are views of the buffers, lower-precision
        data are converted (copies); the rows of a split leaf are joined; a mirrored leaf
        is its partner's transpose (``sym="symmetric"``) or conjugate transpose."""
        from .dense import Dense, trusted_dense
        from .lowrank import trusted_lowrank

        ids, mids, q = self.leaf_ids()
        parts = [[] for _ in range(q)]
        mirror = {}
        t = 0
        for seg in self.segments:
            for r in range(seg.r0.size):
                parts[ids[t]].append((seg, r))
                if mids[t] >= 0:
                    mirror[int(ids[t])] = int(mids[t])
                t += 1
        ops = [None] * q
        for i, rows in enumerate(parts):
            us, vs = [], []
            for seg, r in rows:
                m, n, k, o = int(seg.m[r]), int(seg.n[r]), int(seg.rank[r]), int(seg.off[r])
                if seg.kind[r] == DENSE:
                    a = seg.buf[o:o + m * n].reshape(m, n)
                    ops[i] = trusted_dense(a if a.dtype == self.dtype else a.astype(self.dtype))
                    break
                us.append(seg.buf[o:o + m * k].reshape(k, m).T)  # component-major: views
                vs.append(seg.buf[o + m * k:o + (m + n) * k].reshape(k, n).T)
            else:
                if not rows:
                    continue  # a mirrored leaf: made below
                if len(us) == 1 and us[0].dtype == self.dtype:
                    ops[i] = trusted_lowrank(us[0], vs[0])
                else:
                    ops[i] = trusted_lowrank(np.hstack([u.astype(self.dtype) for u in us]),
                                             np.hstack([v.astype(self.dtype) for v in vs]))
        conj = self.sym == "symmetric" and self.dtype.kind == "c"  # transpose = conj of the adjoint
        for i, j in mirror.items():
            op = ops[i]
            if isinstance(op, Dense):
                ops[j] = trusted_dense(op.array.T if self.sym == "symmetric" else op.array.conj().T)
            else:
                ops[j] = trusted_lowrank(op.V.conj(), op.U.conj()) if conj else trusted_lowrank(op.V, op.U)
        return ops

    def expanded(self):
        """This storage with every logical leaf stored (itself when not symmetric)."""
        if self.sym is None:
            return self
        r0, _, c0, _, _, _ = self.logical_table()
        leaves = list(zip(r0.tolist(), c0.tolist(), self.leaf_ops()))
        return pack_leaves(leaves, self.dtype, max(1, len(self.segments)))

    def sample(self, pi, pj, out):
        """Add the entries at permuted positions ``(pi[s], pj[s])`` into ``out`` (1-D)."""
        from ._aca_numba import sample_entries

        for s in self.segments:
            sample_entries(*s.table(), s.buf, pi, pj, out)
        if self.sym is not None:  # entries of mirrored leaves: their partners' at (j, i)
            extra = np.zeros_like(out)
            for s in self.segments:
                mt = s.mirror_table()
                if mt[0].size:
                    sample_entries(*mt, s.buf, pj, pi, extra)
            out += np.conj(extra) if self.sym == "hermitian" else extra

    def apply(self, X, out_rows, adjoint=False, threads=None):
        """Return ``A @ X`` (``A^H @ X`` if adjoint) for permuted ``X`` of shape (n, k) or (n,)."""
        threads = _threads.get_num_threads() if threads is None else threads
        segs = self.segments
        out_dtype = np.result_type(X.dtype, self.dtype)
        # complex symmetric (A^T = A): mirrored leaves add L^T x = conj(L^H conj(x)), into Z
        cs = self.sym == "symmetric" and self.dtype.kind == "c"
        if self.sym is not None and adjoint:
            if cs:  # A^H x = conj(A conj(x))
                return np.conj(self.apply(np.conj(X), out_rows, False, threads))
            adjoint = False  # A^H = A
        # the kernels take right-hand sides as rows: XT (nrhs, n), YT (nrhs, out_rows)
        XT = np.ascontiguousarray(X[None, :] if X.ndim == 1 else X.T, dtype=out_dtype)
        XmT = np.conj(XT) if cs else XT
        shape = (XT.shape[0], out_rows)
        total = sum(s.cost for s in segs)
        sym = self.sym is not None

        def run(group):
            Y = np.zeros(shape, dtype=out_dtype)
            Z = np.zeros(shape, dtype=out_dtype) if cs else Y
            for s in group:
                if sym and FUSED:  # one pass over each mirrored leaf's data
                    apply_segment(*s.plain_table(), s.buf, XT, Y, False)
                    apply_segment_sym(*s.mirror_table(), s.buf, XT, XmT, Y, Z)
                    continue
                apply_segment(*s.table(), s.buf, XT, Y, adjoint)
                if sym:
                    mt = s.mirror_table()
                    if mt[0].size:
                        apply_segment(*mt, s.buf, XmT, Z, True)
            if cs:
                Y += np.conj(Z)
            return Y

        if threads <= 1 or len(segs) <= 1 or total < 200_000:
            YT = run(segs)
        else:
            parts = list(_threads.executor().map(run, _assign(segs, threads)))
            YT = parts[0]
            for P in parts[1:]:
                YT += P
        return YT[0] if X.ndim == 1 else np.ascontiguousarray(YT.T)

    def astype(self, dtype):
        return Packed([Segment(s.r0, s.m, s.c0, s.n, s.kind, s.rank, s.off, s.buf.astype(dtype), s.ids, s.mids)
                       for s in self.segments], dtype=dtype, sym=self.sym)


def _assign(segs, threads):
    """Greedy longest-processing-time assignment of segments to threads."""
    order = sorted(range(len(segs)), key=lambda i: -segs[i].cost)
    loads = [0] * min(threads, len(segs))
    groups = [[] for _ in loads]
    for i in order:
        t = int(np.argmin(loads))
        groups[t].append(segs[i])
        loads[t] += segs[i].cost
    return [g for g in groups if g]


def cost_chunks(cost, threads):
    """Contiguous index ranges ``[(a, b)]`` of similar total ``cost`` (enough for ``threads``)."""
    q = cost.size
    if q == 0:
        return []
    nchunks = int(min(q, max(16 * threads, math.ceil(q / 256))))
    csum = np.cumsum(cost)
    cuts = np.searchsorted(csum, csum[-1] * np.arange(1, nchunks) / nchunks, side="left") + 1
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < q)), q]
    return list(zip(bounds[:-1], bounds[1:]))


def mirror_partner(Xp, Yp, r0, m, c0, n, symmetric):
    """For a symmetric kernel on identical row and column points: the index of each leaf's
    transposed twin (``partner[q]`` covers ``(c0[q], r0[q])``), or None when the leaf set is
    not symmetric (then every leaf is built)."""
    from . import _aca_numba

    if not _aca_numba.SYMMETRIC_BUILD or not symmetric or r0.size == 0:
        return None
    if Xp.shape != Yp.shape or not (Xp is Yp or np.array_equal(Xp, Yp)):
        return None
    return partner_index(r0, m, c0, n)


def partner_index(r0, m, c0, n):
    """The index of each leaf's transposed twin (``partner[q]`` covers ``(c0[q], r0[q])`` with
    the transposed shape; ``partner[q] = q`` on the diagonal), or None when some leaf has no
    twin (the leaf set is not symmetric)."""
    if r0.size == 0:
        return None
    N = int(max((r0 + m).max(), (c0 + n).max())) + 1
    key = r0 * N + c0
    order = np.argsort(key, kind="stable")
    skey = key[order]
    pos = np.searchsorted(skey, c0 * N + r0)
    if np.any(pos >= skey.size):
        return None
    partner = order[pos]
    if not (np.array_equal(skey[pos], c0 * N + r0) and np.array_equal(m[partner], n) and np.array_equal(n[partner], m)):
        return None
    return partner


__all__ = ["Packed", "Segment", "pack_leaves", "pack_parts", "cost_chunks", "mirror_partner", "partner_index"]
