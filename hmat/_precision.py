"""Adaptive-precision storage of leaves (private).

A leaf whose error budget is far above double-precision rounding does not need 8-byte
numbers. This module decides, per leaf, which part can be stored in single precision
(``float32`` for a ``float64`` operator, ``complex64`` for ``complex128``) with its rounding
inside an allowance, and splits packed segments accordingly:

* a low-rank leaf ``U V^H`` (columns ordered by decreasing importance, as recompression
  leaves them) keeps its first ``p`` rank-1 components in full precision and stores the
  other ``k - p`` in single precision, the smallest ``p`` whose rounding bound fits;
* a dense leaf is stored in single precision when its measured rounding error fits.

The operator keeps its dtype: the compiled matvec reads single-precision data and
accumulates in the operator's precision. All bounds are rigorous (round-to-nearest with a
relative error ``u = 2^-24`` per real component, plus ``2^-150`` absolute in the subnormal
range) and are computed after exact power-of-two scalings, so they hold at every scale.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .partition import LeafKind

__all__ = [
    "LOW_DTYPE",
    "ROUNDING_SHARE",
    "MIN_ADAPTIVE_TOL",
    "PRECISIONS",
    "low_dtype",
    "lowrank_split",
    "dense_rounding_fits",
    "split_segment",
    "lower_precision",
    "adaptive_for",
    "global_truncate",
    "BUDGETS",
]

#: Single-precision storage dtype of each double-precision operator dtype.
LOW_DTYPE = {np.dtype(np.float64): np.dtype(np.float32), np.dtype(np.complex128): np.dtype(np.complex64)}

#: Share of a block's relative tolerance reserved for the rounding of its single-precision part
#: (the builders approximate to ``(1 - ROUNDING_SHARE) tol`` when precision is adaptive).
ROUNDING_SHARE = 0.2

#: Below this tolerance adaptive precision is off (only tail components of negligible size
#: could be rounded; the tighter approximation would cost more than it saves).
MIN_ADAPTIVE_TOL = 1e-10

#: Accepted values of :func:`hmat.from_kernel`'s ``budget`` argument.
BUDGETS = ("block", "global")

#: Accepted values of the builders' ``precision`` argument.
PRECISIONS = ("adaptive", "full")

_U32 = 2.0**-24  # unit roundoff of float32 (round to nearest)
_ABS32 = 2.0**-150  # largest absolute rounding error in float32's subnormal range
_MAX32 = 2.0**127  # entries below this round to finite float32 values
_DENSE = int(LeafKind.DENSE)  # kind codes of the packed tables
_LOWRANK = int(LeafKind.LOWRANK)


def low_dtype(dtype):
    """The single-precision storage dtype for ``dtype``, or None (already single precision)."""
    return LOW_DTYPE.get(np.dtype(dtype))


@njit(cache=True, nogil=True)
def _abs2(z):
    return z.real * z.real + z.imag * z.imag


@njit(cache=True, nogil=True)
def _max_abs(a):
    big = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = abs(a[i, j])  # not squared: squares of tiny entries underflow to zero
            if v > big:
                big = v
    return big


@njit(cache=True, nogil=True)
def _scaled_col_norms(a, f, out):
    """``out[c] = ||a[:, c] f||_2`` with ``f`` a power of two making the entries at most 1."""
    for c in range(a.shape[1]):
        out[c] = 0.0
    for i in range(a.shape[0]):
        for c in range(a.shape[1]):
            out[c] += _abs2(a[i, c] * f)
    for c in range(a.shape[1]):
        out[c] = math.sqrt(out[c])


@njit(cache=True, nogil=True)
def lowrank_split(U, V, rel):
    """Leading components of ``U V^H`` to keep in full precision; the rest fit single precision.

    Parameters
    ----------
    U : ndarray, shape (m, k), float64 or complex128
    V : ndarray, shape (n, k), same dtype
    rel : float
        Allowance relative to ``||U V^H||_F`` (estimated as ``sqrt(sum_c ||u_c||^2 ||v_c||^2)``,
        exact when either factor has orthogonal columns, as recompressed factors do).

    Returns
    -------
    int
        ``p`` in ``0..k``: storing columns ``p:`` of both factors in single precision changes
        ``U V^H`` by at most ``sum_{c >= p} (du_c ||v_c|| + ||u_c|| dv_c + du_c dv_c)``
        ``<= rel ||U V^H||_F``, with ``du_c = u ||u_c|| + 2^-150 sqrt(2 m)`` the rounding bound of
        a column (``u = 2^-24``).
    """
    m, k = U.shape
    n = V.shape[0]
    if k == 0:
        return 0
    su = _max_abs(U)
    sv = _max_abs(V)
    if su == 0.0 or sv == 0.0:
        return 0  # the zero matrix: zeros round exactly
    if not (su < _MAX32 and sv < _MAX32):
        return k  # would overflow single precision
    eu = math.frexp(su)[1]
    ev = math.frexp(sv)[1]
    if eu < -900 or ev < -900:
        return k  # deep in the subnormal range: keep everything
    fu = math.ldexp(1.0, -eu)
    fv = math.ldexp(1.0, -ev)
    nu = np.empty(k)
    nv = np.empty(k)
    _scaled_col_norms(U, fu, nu)
    _scaled_col_norms(V, fv, nv)
    # absolute (subnormal) rounding of a column, in the scaled units; sqrt(2) covers complex
    au = math.ldexp(_ABS32 * math.sqrt(2.0 * m), -eu)
    av = math.ldexp(_ABS32 * math.sqrt(2.0 * n), -ev)
    # the bound is inflated by 1e-6 relative: covers the rounding of these float64 norms
    infl = 1.0 + 1e-6
    norm2 = 0.0
    for c in range(k):
        norm2 += (nu[c] * nv[c]) ** 2
    allow = rel * math.sqrt(norm2)
    p = k
    tail = 0.0
    while p > 0:
        c = p - 1
        du = _U32 * nu[c] + au
        dv = _U32 * nv[c] + av
        r = (du * nv[c] + nu[c] * dv + du * dv) * infl
        if tail + r > allow:
            break
        tail += r
        p -= 1
    return p


@njit(cache=True, nogil=True)
def dense_rounding_fits(D, rel, lo_proto):
    """Whether ``D`` rounded to ``lo_proto.dtype`` is within ``rel ||D||_F`` (measured exactly).

    Parameters
    ----------
    D : ndarray, shape (m, n), float64 or complex128
    rel : float
    lo_proto : ndarray of the single-precision dtype (its values are not used)
    """
    sd = _max_abs(D)
    if sd == 0.0:
        return True
    if not sd < _MAX32:
        return False
    e = math.frexp(sd)[1]
    if e < -900:
        return False
    f = math.ldexp(1.0, -e)
    t = np.empty(1, lo_proto.dtype)
    err2 = 0.0
    nrm2 = 0.0
    for i in range(D.shape[0]):
        for j in range(D.shape[1]):
            d = D[i, j]
            t[0] = d
            err2 += _abs2((d - t[0]) * f)  # d - fl(d) is exact in double precision
            nrm2 += _abs2(d * f)
    return math.sqrt(err2) * (1.0 + 1e-9) <= rel * math.sqrt(nrm2)


@njit(cache=True, nogil=True)
def split_segment(r0, m, c0, n, kind, rank, off, buf, rel_lowrank, rel_dense, lo_proto):
    """Split one packed segment into a full-precision and a single-precision segment.

    Parameters
    ----------
    r0, m, c0, n, kind, rank, off : int64 arrays, shape (q,)
        The leaf table (see :mod:`hmat._matvec_numba`).
    buf : ndarray, float64 or complex128
    rel_lowrank, rel_dense : float
        Rounding allowance of a low-rank / dense leaf, relative to its Frobenius norm
        (0: keep that kind in full precision).
    lo_proto : ndarray of the single-precision dtype

    Returns
    -------
    tuple
        ``(hi, lo)``, each ``(r0, m, c0, n, kind, rank, off, ids, buf)``: ``ids[t]`` is the index
        (in the input table) of the leaf that row ``t`` belongs to. A low-rank leaf may have
        a row in both (its leading components in ``hi``, the rest in ``lo``).
    """
    q = r0.size
    plan = np.empty(q, np.int64)  # low-rank: components kept in full precision; dense: 1 full, 0 single
    nhi = 0
    nlo = 0
    shi = 0
    slo = 0
    for t in range(q):
        k = rank[t]
        mt = m[t]
        nt = n[t]
        o = off[t]
        if kind[t] == _DENSE:
            low = rel_dense > 0.0 and dense_rounding_fits(buf[o:o + mt * nt].reshape((mt, nt)), rel_dense, lo_proto)
            plan[t] = 0 if low else 1
            if low:
                nlo += 1
                slo += mt * nt
            else:
                nhi += 1
                shi += mt * nt
            continue
        p = k
        if k > 0 and rel_lowrank > 0.0:
            p = lowrank_split(buf[o:o + mt * k].reshape((k, mt)).T, buf[o + mt * k:o + (mt + nt) * k].reshape((k, nt)).T,
                              rel_lowrank)
        plan[t] = p
        if p > 0 or k == 0:
            nhi += 1
            shi += p * (mt + nt)
        if p < k:
            nlo += 1
            slo += (k - p) * (mt + nt)
    hi = np.empty((8, nhi), np.int64)  # rows: r0, m, c0, n, kind, rank, off, ids
    lo = np.empty((8, nlo), np.int64)
    bhi = np.empty(shi, buf.dtype)
    blo = np.empty(slo, lo_proto.dtype)
    ih = 0
    il = 0
    ph = 0
    pl = 0
    for t in range(q):
        k = rank[t]
        mt = m[t]
        nt = n[t]
        o = off[t]
        if kind[t] == _DENSE:
            size = mt * nt
            if plan[t] == 1:
                _row(hi, ih, r0[t], mt, c0[t], nt, _DENSE, 0, ph, t)
                bhi[ph:ph + size] = buf[o:o + size]
                ih += 1
                ph += size
            else:
                _row(lo, il, r0[t], mt, c0[t], nt, _DENSE, 0, pl, t)
                for s in range(size):
                    blo[pl + s] = buf[o + s]
                il += 1
                pl += size
            continue
        p = plan[t]
        if p > 0 or k == 0:
            _row(hi, ih, r0[t], mt, c0[t], nt, _LOWRANK, p, ph, t)
            _copy_components(buf, o, mt, nt, k, 0, p, bhi, ph)
            ih += 1
            ph += p * (mt + nt)
        if p < k:
            _row(lo, il, r0[t], mt, c0[t], nt, _LOWRANK, k - p, pl, t)
            _copy_components(buf, o, mt, nt, k, p, k, blo, pl)
            il += 1
            pl += (k - p) * (mt + nt)
    return (hi, bhi), (lo, blo)


@njit(cache=True, nogil=True)
def _row(tab, i, r0, m, c0, n, kind, rank, off, ident):
    tab[0, i] = r0
    tab[1, i] = m
    tab[2, i] = c0
    tab[3, i] = n
    tab[4, i] = kind
    tab[5, i] = rank
    tab[6, i] = off
    tab[7, i] = ident


@njit(cache=True, nogil=True)
def _copy_components(src, o, m, n, k, a, b, dst, pos):
    """Components ``a:b`` of the component-major factors at ``src[o:]`` (``U^T`` (k x m),
    then ``V^T`` (k x n)) into ``dst[pos:]`` in the same layout, rank ``b - a`` (cast to
    dst's dtype)."""
    w = b - a
    su = src[o + a * m:o + b * m]
    sv = src[o + k * m + a * n:o + k * m + b * n]
    for t in range(w * m):
        dst[pos + t] = su[t]
    for t in range(w * n):
        dst[pos + w * m + t] = sv[t]


def lower_precision(packed, rel_lowrank, rel_dense):
    """Store what fits of a full-precision :class:`~hmat._packed.Packed` in single precision.

    Parameters
    ----------
    packed : Packed
        Of dtype float64 or complex128 (returned unchanged otherwise). Consumed: its
        segments are released one by one as they are converted (peak memory: the result
        plus the segments in flight).
    rel_lowrank, rel_dense : float
        Allowances of :func:`split_segment`.

    Returns
    -------
    Packed
        Same logical leaves (segments carry ``ids``), same dtype; each source segment
        becomes a full-precision and a single-precision segment (empty ones dropped).
    """
    from . import _threads
    from ._packed import Packed, Segment

    low = low_dtype(packed.dtype)
    if low is None or not packed.segments:
        return packed
    proto = np.zeros(0, low)
    segs = packed.segments
    packed.segments = []
    bases = Packed(segs, dtype=packed.dtype).row_ids()
    starts = np.cumsum([0] + [s.r0.size for s in segs])

    def work(i):
        seg = segs[i]
        hi, lo = split_segment(*seg.table(), seg.buf, float(rel_lowrank), float(rel_dense), proto)
        segs[i] = None  # release the source buffer as soon as it is split
        base = bases[starts[i]:starts[i + 1]]
        return [Segment(t[0], t[1], t[2], t[3], t[4], t[5], t[6], b, base[t[7]],
                        None if seg.mids is None else seg.mids[t[7]]) for t, b in (hi, lo) if t.shape[1]]

    threads = _threads.get_num_threads()
    idx = range(len(segs))
    results = _threads.map_ordered(work, idx, threads)
    out = [s for res in results for s in res]
    if not out:
        z = np.zeros(0, np.int64)
        out = [Segment(z, z, z, z, z, z, z, np.zeros(0, packed.dtype), z)]
    return Packed(out, dtype=packed.dtype, sym=packed.sym)


def adaptive_for(precision, dtype, tol):
    """Whether a builder asked for ``precision`` stores reduced-precision parts.

    Parameters
    ----------
    precision : {"adaptive", "full"}
    dtype : numpy dtype
        The operator's dtype (only float64 and complex128 have a lower precision).
    tol : float

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISIONS` (the message names the argument).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "adaptive" and low_dtype(dtype) is not None and tol >= MIN_ADAPTIVE_TOL


# ---------------------------------------------------------------------- global error budget

@njit(cache=True, nogil=True)
def component_norms(m, n, kind, rank, off, buf, e_glob, sig, dense):
    """Per leaf row: the norms ``||u_c|| ||v_c||`` of its rank-1 components (into ``sig``, at
    ``sum(rank)`` consecutive places, made non-increasing from the tail: each value is
    the largest of it and those after it) and, for a dense row, its Frobenius norm (into
    ``dense[t]``; 0 for low-rank rows). All values are scaled by ``2^-e_glob`` (scale-safe:
    each factor is normed after its own power-of-two scaling)."""
    p = 0
    for t in range(rank.size):
        k = rank[t]
        mt = m[t]
        nt = n[t]
        o = off[t]
        dense[t] = 0.0
        if kind[t] == _DENSE:
            D = buf[o:o + mt * nt].reshape((mt, nt))
            sd = _max_abs(D)
            if sd > 0.0:
                e = math.frexp(sd)[1]
                f = math.ldexp(1.0, -e)
                acc = 0.0
                for i in range(mt):
                    for j in range(nt):
                        acc += _abs2(D[i, j] * f)
                dense[t] = math.ldexp(math.sqrt(acc), e - e_glob)
            continue
        if k == 0:
            continue
        U = buf[o:o + mt * k].reshape((k, mt)).T
        V = buf[o + mt * k:o + (mt + nt) * k].reshape((k, nt)).T
        su = _max_abs(U)
        sv = _max_abs(V)
        nu = np.zeros(k)
        nv = np.zeros(k)
        eu = 0
        ev = 0
        if su > 0.0 and sv > 0.0:
            eu = math.frexp(su)[1]
            ev = math.frexp(sv)[1]
            _scaled_col_norms(U, math.ldexp(1.0, -eu), nu)
            _scaled_col_norms(V, math.ldexp(1.0, -ev), nv)
        run = 0.0
        for c in range(k - 1, -1, -1):
            v = math.ldexp(nu[c] * nv[c], eu + ev - e_glob)
            if v > run:
                run = v
            sig[p + c] = run
        p += k


@njit(cache=True, nogil=True)
def truncate_rows(m, n, kind, rank, off, buf, keep):
    """The segment with low-rank row ``t`` cut to its first ``keep[t]`` components.

    Returns ``(rank, off, buf)`` (new arrays)."""
    q = rank.size
    nrank = rank.copy()
    noff = np.empty(q, np.int64)
    size = 0
    for t in range(q):
        if kind[t] == _DENSE:
            size += m[t] * n[t]
        else:
            nrank[t] = min(keep[t], rank[t])
            size += nrank[t] * (m[t] + n[t])
    out = np.empty(size, buf.dtype)
    pos = 0
    for t in range(q):
        noff[t] = pos
        if kind[t] == _DENSE:
            s = m[t] * n[t]
            out[pos:pos + s] = buf[off[t]:off[t] + s]
            pos += s
        else:
            _copy_components(buf, off[t], m[t], n[t], rank[t], 0, nrank[t], out, pos)
            pos += nrank[t] * (m[t] + n[t])
    return nrank, noff, out


def global_truncate(packed, budget_rel):
    """Drop the rank-1 components of smallest norm per stored entry, over all leaves, while
    their energy fits ``(budget_rel ||H||_F)^2`` (a mirrored leaf's counting twice).

    ``||H||_F`` and the components' norms are taken with each leaf's columns as orthogonal
    (as recompressed factors are); a leaf's dropped components are its trailing ones, each
    valued at the largest norm of it and the components after it (conservative).
    Returns a new :class:`~hmat._packed.Packed` (same logical leaves, lower ranks).
    """
    from ._packed import Packed, Segment

    segs = packed.segments
    big = max((float(np.max(np.abs(s.buf))) for s in segs if s.buf.size), default=0.0)
    if big == 0.0 or budget_rel <= 0:
        return packed
    e_glob = math.frexp(big)[1]
    sigs, dens, owner = [], [], []
    for i, s in enumerate(segs):
        k = s.rank
        sig = np.zeros(int(k.sum()))
        dense = np.zeros(s.rank.size)
        component_norms(s.m, s.n, s.kind, s.rank, s.off, s.buf, e_glob, sig, dense)
        w = np.ones(s.rank.size) if s.mids is None else np.where(s.mids >= 0, 2.0, 1.0)
        rows = np.repeat(np.arange(s.rank.size), k)
        sigs.append((sig, w[rows], (s.m + s.n)[rows]))
        dens.append(w * dense ** 2)
        owner.append(np.stack([np.full(rows.size, i), rows]))
    sig = np.concatenate([a[0] for a in sigs])
    w = np.concatenate([a[1] for a in sigs])
    size = np.concatenate([a[2] for a in sigs]).astype(np.float64)
    energy = w * sig ** 2
    norm2 = float(sum(d.sum() for d in dens) + energy.sum())
    allow = (budget_rel ** 2) * norm2
    order = np.argsort(energy / size, kind="stable")
    ndrop = int(np.searchsorted(np.cumsum(energy[order]), allow, side="right"))
    own = np.concatenate(owner, axis=1) if owner else np.zeros((2, 0), np.int64)
    dropped = np.zeros(sig.size, bool)
    dropped[order[:ndrop]] = True
    out = []
    start = 0
    for i, s in enumerate(segs):
        k = s.rank
        cnt = int(k.sum())
        d = dropped[start:start + cnt]
        drop_per_row = np.bincount(own[1, start:start + cnt][d], minlength=s.rank.size) if cnt else np.zeros(s.rank.size, np.int64)
        start += cnt
        keep = (k - drop_per_row).astype(np.int64)
        nr, no, nb = truncate_rows(s.m, s.n, s.kind, s.rank, s.off, s.buf, keep)
        out.append(Segment(s.r0, s.m, s.c0, s.n, s.kind, nr, no, nb, s.ids, s.mids))
    return Packed(out, dtype=packed.dtype, sym=packed.sym)
