"""Packed leaves: the flat layout the compiled matvec walks (private).

A :class:`Packed` is a list of segments; each segment holds the leaf table (int64 arrays
``r0, m, c0, n, rank, off``) and one flat data buffer. Segments let a parallel build write
its results without a final concatenation, and let a parallel matvec give each thread a
disjoint set of leaves with its own output buffer (race-free accumulation).
"""

from __future__ import annotations

import math

import numpy as np

from . import _threads
from ._matvec_numba import apply_segment, apply_segment_vec

_FIELDS = ("r0", "m", "c0", "n", "rank", "off")


class Segment:
    __slots__ = ("r0", "m", "c0", "n", "rank", "off", "buf", "cost")

    def __init__(self, r0, m, c0, n, rank, off, buf):
        self.r0, self.m, self.c0, self.n = r0, m, c0, n
        self.rank, self.off, self.buf = rank, off, buf
        self.cost = int(buf.size) + int(r0.size) * 8

    def table(self):
        return (self.r0, self.m, self.c0, self.n, self.rank, self.off)


def leaf_size(m, n, rank):
    """Entries stored by a leaf (rank < 0: dense)."""
    return np.where(rank < 0, m * n, np.maximum(rank, 0) * (m + n))


def pack_leaves(leaves, dtype, nseg=1):
    """Pack ``[(r0, c0, op)]`` (Dense / LowRank ops) into ``nseg`` segments of similar cost."""
    from .dense import Dense
    from .lowrank import LowRank

    q = len(leaves)
    r0 = np.fromiter((lf[0] for lf in leaves), np.int64, q)
    c0 = np.fromiter((lf[1] for lf in leaves), np.int64, q)
    m = np.fromiter((lf[2].shape[0] for lf in leaves), np.int64, q)
    n = np.fromiter((lf[2].shape[1] for lf in leaves), np.int64, q)
    rank = np.fromiter((lf[2].rank if isinstance(lf[2], LowRank) else -1 for lf in leaves), np.int64, q)
    sizes = leaf_size(m, n, rank)
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
                buf[o:o + m[t] * k] = np.asarray(op.U).reshape(-1)
                buf[o + m[t] * k:o + (m[t] + n[t]) * k] = np.asarray(op.V).reshape(-1)
            else:  # pragma: no cover - guarded by HBlock
                raise TypeError(f"cannot pack leaf of type {type(op).__name__}")
        segs.append(Segment(r0[a:b].copy(), m[a:b].copy(), c0[a:b].copy(), n[a:b].copy(), rank[a:b].copy(), off, buf))
    return Packed(segs)


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
    """Segments of packed leaves of one H-matrix, in permuted coordinates."""

    def __init__(self, segments):
        self.segments = list(segments)

    @property
    def nbytes(self):
        return sum(s.buf.nbytes for s in self.segments)

    @property
    def nleaves(self):
        return sum(s.r0.size for s in self.segments)

    def apply(self, X, out_rows, adjoint=False, threads=None):
        """Return ``A @ X`` (``A^H @ X`` if adjoint) for permuted ``X`` of shape (n, k) or (n,)."""
        threads = _threads.get_num_threads() if threads is None else threads
        segs = self.segments
        out_dtype = np.result_type(X.dtype, *(s.buf.dtype for s in segs[:1]))
        X = np.ascontiguousarray(X, dtype=out_dtype)
        shape = (out_rows,) + X.shape[1:]
        total = sum(s.cost for s in segs)
        kernel = apply_segment_vec if X.ndim == 1 else apply_segment
        if threads <= 1 or len(segs) <= 1 or total < 200_000:
            Y = np.zeros(shape, dtype=out_dtype)
            for s in segs:
                kernel(*s.table(), s.buf, X, Y, adjoint)
            return Y
        groups = _assign(segs, threads)

        def work(group):
            Yt = np.zeros(shape, dtype=out_dtype)
            for s in group:
                kernel(*s.table(), s.buf, X, Yt, adjoint)
            return Yt

        parts = list(_threads.executor().map(work, groups))
        Y = parts[0]
        for P in parts[1:]:
            Y += P
        return Y

    def astype(self, dtype):
        return Packed([Segment(*s.table(), s.buf.astype(dtype)) for s in self.segments])


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
    N = int(Xp.shape[0]) + 1
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


__all__ = ["Packed", "Segment", "pack_leaves", "cost_chunks", "mirror_partner"]
