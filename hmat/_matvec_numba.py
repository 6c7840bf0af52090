"""Compiled matvec/matmat over packed leaves (private).

A *segment* packs many leaves into one flat buffer. Leaf ``q`` covers permuted rows
``r0[q]:r0[q]+m[q]`` and columns ``c0[q]:c0[q]+n[q]``; ``kind[q]`` is a
:class:`hmat.LeafKind` value: ``DENSE`` stores the block row-major at
``buf[off[q]:off[q]+m*n]``; ``LOWRANK`` (rank ``k = rank[q]``) stores ``U @ V^H``
*component-major*: ``U^T`` (k x m, row-major: the ``m`` entries of component ``l`` are
contiguous) followed by ``V^T`` (k x n). Every inner loop therefore runs over a block
dimension (tens to hundreds of entries), never over the rank (often below 10), so it
vectorises; dense rows and low-rank components are taken four / two at a time, so each
load of ``x`` and each load and store of ``y`` serves several rows of the block.

Every inner loop runs over a zero-based slice (``row[j]``, ``xs[j]``): with indices that
are provably non-negative Numba emits no wrap-around test and LLVM vectorises the loop
(about 5x faster than indexing ``buf[base + j]``). Fast-math is limited to reassociation
and contraction (and the sign of zero), so results differ from a sequential sum by
rounding only; infinities and NaN propagate as usual.
"""

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .partition import LeafKind

_FM = {"reassoc", "contract", "nsz"}

DENSE = int(LeafKind.DENSE)  # a compile-time constant in the kernels

#: Software prefetch distance in bytes: while a leaf is applied, the buffer this far beyond
#: its data is requested (the hardware prefetcher alone leaves the core waiting on memory
#: between the compute-heavy passes over a leaf: about 10-15 % of the one-thread matvec).
PREFETCH_BYTES = 4096

_PREFETCH_NAME = "llvm.prefetch.p0" if _llvm.llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the cache to load ``arr[idx]`` (read, high locality); no effect on results."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.PointerType(ir.IntType(8))
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH_NAME)
        builder.call(fn, [builder.bitcast(builder.gep(ary.data, [args[1]]), i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


_INLINE = dict(cache=True, nogil=True, fastmath=_FM, inline="always")


# ------------------------------------------------------------------ building blocks
@njit(**_INLINE)
def _prefetch_ahead(buf, o, size):
    """Prefetch ``buf[o + d : o + size + d]`` (``d``: :data:`PREFETCH_BYTES`), one request per
    64-byte line, clipped to the buffer."""
    step = 64 // buf.itemsize
    p = o + PREFETCH_BYTES // buf.itemsize
    e = min(p + size, buf.size)
    while p < e:
        _prefetch(buf, p)
        p += step


@njit(**_INLINE)
def _rows4(a, i, nq):
    """Rows ``i .. i+3`` of the row-major block ``a`` with ``nq`` columns."""
    return a[i * nq:(i + 1) * nq], a[(i + 1) * nq:(i + 2) * nq], a[(i + 2) * nq:(i + 3) * nq], a[(i + 3) * nq:(i + 4) * nq]


@njit(**_INLINE)
def _add4(ys, i, s0, s1, s2, s3):
    ys[i] += s0
    ys[i + 1] += s1
    ys[i + 2] += s2
    ys[i + 3] += s3


@njit(**_INLINE)
def _dot(a, xs, zero):
    """``sum_j a[j] xs[j]``."""
    s = zero
    for j in range(a.size):
        s += a[j] * xs[j]
    return s


@njit(**_INLINE)
def _cdot(v, xs, zero):
    """``sum_j conj(v[j]) xs[j]``."""
    s = zero
    for j in range(v.size):
        s += np.conj(v[j]) * xs[j]
    return s


@njit(**_INLINE)
def _cdot2(v0, v1, xs, zero):
    """``(sum_j conj(v0[j]) xs[j], sum_j conj(v1[j]) xs[j])`` in one pass over ``xs``."""
    t0 = zero
    t1 = zero
    for j in range(v0.size):
        xj = xs[j]
        t0 += np.conj(v0[j]) * xj
        t1 += np.conj(v1[j]) * xj
    return t0, t1


@njit(**_INLINE)
def _axpy(u, t, ys):
    """``ys += u t``."""
    for i in range(u.size):
        ys[i] += u[i] * t


@njit(**_INLINE)
def _axpy2(u0, u1, t0, t1, ys):
    """``ys += u0 t0 + u1 t1``."""
    for i in range(u0.size):
        ys[i] += u0[i] * t0 + u1[i] * t1


# ------------------------------------------------------------------ leaf kernels
@njit(**_INLINE)
def _dense_rows(a, mq, nq, xs, ys, zero):
    """``ys += A xs`` for the row-major ``mq x nq`` block ``a``; four rows per pass."""
    i = 0
    while i + 4 <= mq:
        a0, a1, a2, a3 = _rows4(a, i, nq)
        s0 = s1 = s2 = s3 = zero
        for j in range(nq):
            xj = xs[j]
            s0 += a0[j] * xj
            s1 += a1[j] * xj
            s2 += a2[j] * xj
            s3 += a3[j] * xj
        _add4(ys, i, s0, s1, s2, s3)
        i += 4
    while i < mq:
        ys[i] += _dot(a[i * nq:(i + 1) * nq], xs, zero)
        i += 1


@njit(**_INLINE)
def _dense_cols(a, mq, nq, xs, ys):
    """``ys += A^H xs`` for the row-major ``mq x nq`` block ``a``; four rows per pass."""
    i = 0
    while i + 4 <= mq:
        a0, a1, a2, a3 = _rows4(a, i, nq)
        x0, x1, x2, x3 = xs[i], xs[i + 1], xs[i + 2], xs[i + 3]
        for j in range(nq):
            ys[j] += np.conj(a0[j]) * x0 + np.conj(a1[j]) * x1 + np.conj(a2[j]) * x2 + np.conj(a3[j]) * x3
        i += 4
    while i < mq:
        a0 = a[i * nq:(i + 1) * nq]
        x0 = xs[i]
        for j in range(nq):
            ys[j] += np.conj(a0[j]) * x0
        i += 1


@njit(**_INLINE)
def _dense_both(a, mq, nq, xs, xms, ys, zs, zero):
    """``ys += A xs`` and ``zs += A^H xms`` in one pass over ``a`` (row-major ``mq x nq``),
    four rows per pass. ``ys`` and ``zs`` must not overlap."""
    i = 0
    while i + 4 <= mq:
        a0, a1, a2, a3 = _rows4(a, i, nq)
        x0, x1, x2, x3 = xms[i], xms[i + 1], xms[i + 2], xms[i + 3]
        s0 = s1 = s2 = s3 = zero
        for j in range(nq):
            b0 = a0[j]
            b1 = a1[j]
            b2 = a2[j]
            b3 = a3[j]
            xj = xs[j]
            s0 += b0 * xj
            s1 += b1 * xj
            s2 += b2 * xj
            s3 += b3 * xj
            zs[j] += np.conj(b0) * x0 + np.conj(b1) * x1 + np.conj(b2) * x2 + np.conj(b3) * x3
        _add4(ys, i, s0, s1, s2, s3)
        i += 4
    while i < mq:
        a0 = a[i * nq:(i + 1) * nq]
        x0 = xms[i]
        s0 = zero
        for j in range(nq):
            b0 = a0[j]
            s0 += b0 * xs[j]
            zs[j] += np.conj(b0) * x0
        ys[i] += s0
        i += 1


@njit(**_INLINE)
def _lowrank(fin, fout, k, nin, nout, xs, ys, zero):
    """``ys += Fout^T conj(Fin) xs`` for component-major factors ``fin`` (k x nin) and
    ``fout`` (k x nout): ``U V^H x`` with (fin, fout) = (V^T, U^T), its adjoint with
    (U^T, V^T). Two components per pass."""
    l = 0
    while l + 2 <= k:
        t0, t1 = _cdot2(fin[l * nin:(l + 1) * nin], fin[(l + 1) * nin:(l + 2) * nin], xs, zero)
        _axpy2(fout[l * nout:(l + 1) * nout], fout[(l + 1) * nout:(l + 2) * nout], t0, t1, ys)
        l += 2
    if l < k:
        _axpy(fout[l * nout:(l + 1) * nout], _cdot(fin[l * nin:(l + 1) * nin], xs, zero), ys)


@njit(**_INLINE)
def _lowrank_both(fu, fv, k, mq, nq, xs, xms, ys, zs, zero):
    """``ys += U V^H xs`` and ``zs += V U^H xms`` (component-major ``fu`` = U^T, ``fv`` =
    V^T): each component of ``U`` is read once, of ``V`` twice (the second time from
    cache). Two components per pass."""
    l = 0
    while l + 2 <= k:
        v0 = fv[l * nq:(l + 1) * nq]
        v1 = fv[(l + 1) * nq:(l + 2) * nq]
        t0, t1 = _cdot2(v0, v1, xs, zero)
        u0 = fu[l * mq:(l + 1) * mq]
        u1 = fu[(l + 1) * mq:(l + 2) * mq]
        s0 = zero
        s1 = zero
        for i in range(mq):  # ys += U t and s = U^H xms in one pass over U
            b0 = u0[i]
            b1 = u1[i]
            xi = xms[i]
            ys[i] += b0 * t0 + b1 * t1
            s0 += np.conj(b0) * xi
            s1 += np.conj(b1) * xi
        _axpy2(v0, v1, s0, s1, zs)
        l += 2
    if l < k:
        v0 = fv[l * nq:(l + 1) * nq]
        u0 = fu[l * mq:(l + 1) * mq]
        _axpy(u0, _cdot(v0, xs, zero), ys)
        _axpy(v0, _cdot(u0, xms, zero), zs)


@njit(cache=True, nogil=True, fastmath=_FM)
def apply_segment(r0, m, c0, n, kind, rank, off, buf, XT, YT, adjoint):
    """Accumulate ``Y += A_seg @ X`` (or ``A_seg^H @ X`` when ``adjoint``) for right-hand
    sides stored as rows: ``XT`` (nrhs, ncols_in) and ``YT`` (nrhs, nrows_out), both
    C-contiguous (one right-hand side: shape (1, n)). Each leaf's data are streamed once;
    every right-hand side after the first re-reads them from cache.
    """
    zero = np.zeros(1, YT.dtype)[0]
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        o = off[q]
        if adjoint:
            yo, xo = c0[q], r0[q]
        else:
            yo, xo = r0[q], c0[q]
        _prefetch_ahead(buf, o, mq * nq if kind[q] == DENSE else rank[q] * (mq + nq))
        if kind[q] == DENSE:
            a = buf[o:o + mq * nq]
            for r in range(XT.shape[0]):
                if adjoint:
                    _dense_cols(a, mq, nq, XT[r, xo:xo + mq], YT[r, yo:yo + nq])
                else:
                    _dense_rows(a, mq, nq, XT[r, xo:xo + nq], YT[r, yo:yo + mq], zero)
            continue
        k = rank[q]
        fu = buf[o:o + mq * k]
        fv = buf[o + mq * k:o + (mq + nq) * k]
        for r in range(XT.shape[0]):
            if adjoint:
                _lowrank(fu, fv, k, mq, nq, XT[r, xo:xo + mq], YT[r, yo:yo + nq], zero)
            else:
                _lowrank(fv, fu, k, nq, mq, XT[r, xo:xo + nq], YT[r, yo:yo + mq], zero)


@njit(cache=True, nogil=True, fastmath=_FM)
def apply_segment_sym(r0, m, c0, n, kind, rank, off, buf, XT, XmT, YT, ZT):
    """Symmetric storage, fused: for every leaf ``L`` of the (mirrored) rows given and every
    right-hand side ``r``, ``YT[r, rows] += L XT[r, cols]`` and ``ZT[r, cols] += L^H
    XmT[r, rows]`` (the mirrored leaf, see :meth:`hmat._packed.Packed.apply`) in one pass
    over the leaf's data: a dense leaf is read once, a low-rank leaf's ``U`` once and its
    ``V`` twice (the second time from cache), per right-hand side (the ones after the first
    from cache). Arrays as in :func:`apply_segment`; ``ZT`` may be ``YT`` (a mirrored leaf
    is off the diagonal: its row and column ranges are disjoint).
    """
    zero = np.zeros(1, YT.dtype)[0]
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        o = off[q]
        ra, ca = r0[q], c0[q]
        _prefetch_ahead(buf, o, mq * nq if kind[q] == DENSE else rank[q] * (mq + nq))
        if kind[q] == DENSE:
            a = buf[o:o + mq * nq]
            for r in range(XT.shape[0]):
                _dense_both(a, mq, nq, XT[r, ca:ca + nq], XmT[r, ra:ra + mq], YT[r, ra:ra + mq], ZT[r, ca:ca + nq], zero)
            continue
        k = rank[q]
        fu = buf[o:o + mq * k]
        fv = buf[o + mq * k:o + (mq + nq) * k]
        for r in range(XT.shape[0]):
            _lowrank_both(fu, fv, k, mq, nq, XT[r, ca:ca + nq], XmT[r, ra:ra + mq], YT[r, ra:ra + mq], ZT[r, ca:ca + nq],
                          zero)
