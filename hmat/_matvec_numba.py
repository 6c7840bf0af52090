"""Compiled matvec/matmat over packed leaves (private).

A *segment* packs many leaves into one flat buffer. Leaf ``q`` covers permuted rows
``r0[q]:r0[q]+m[q]`` and columns ``c0[q]:c0[q]+n[q]``; ``rank[q] < 0`` marks a dense leaf
stored row-major at ``buf[off[q]:off[q]+m*n]``; ``rank[q] = k >= 0`` a low-rank leaf
``U @ V^H`` stored as ``U`` (m x k, row-major) followed by ``V`` (n x k, row-major).

Every inner loop runs over a zero-based slice (``row[j]``, ``xs[j]``): with indices that
are provably non-negative Numba emits no wrap-around test and LLVM vectorises the loop
(about 5x faster than indexing ``buf[base + j]``). Fast-math is limited to reassociation
and contraction, so results differ from a sequential sum by rounding only.
"""

import numpy as np
from numba import njit

_FM = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True, fastmath=_FM)
def apply_segment_vec(r0, m, c0, n, rank, off, buf, x, y, adjoint):
    """One right-hand side: ``y += A_seg @ x`` (or the adjoint); x, y 1-D contiguous."""
    zero = np.zeros(1, y.dtype)[0]
    tmp = np.zeros(64, dtype=y.dtype)
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        k = rank[q]
        o = off[q]
        if adjoint:
            ri, ci = c0[q], r0[q]
            rows_out, cols_in = nq, mq
        else:
            ri, ci = r0[q], c0[q]
            rows_out, cols_in = mq, nq
        ys = y[ri:ri + rows_out]
        xs = x[ci:ci + cols_in]
        if k < 0:
            if not adjoint:
                for i in range(mq):
                    row = buf[o + i * nq:o + (i + 1) * nq]
                    acc = zero
                    for j in range(nq):
                        acc += row[j] * xs[j]
                    ys[i] += acc
            else:
                for i in range(mq):
                    row = buf[o + i * nq:o + (i + 1) * nq]
                    xi = xs[i]
                    for j in range(nq):
                        ys[j] += np.conj(row[j]) * xi
            continue
        if k == 0:
            continue
        if tmp.size < k:
            tmp = np.zeros(k, dtype=y.dtype)
        t = tmp[:k]
        for l in range(k):
            t[l] = zero
        if adjoint:
            fin = buf[o:o + mq * k]
            fout = buf[o + mq * k:o + (mq + nq) * k]
        else:
            fin = buf[o + mq * k:o + (mq + nq) * k]
            fout = buf[o:o + mq * k]
        # two input rows per step, four output rows per step: independent accumulators
        j = 0
        while j + 2 <= cols_in:
            f0 = fin[j * k:(j + 1) * k]
            f1 = fin[(j + 1) * k:(j + 2) * k]
            x0 = xs[j]
            x1 = xs[j + 1]
            for l in range(k):
                t[l] += np.conj(f0[l]) * x0 + np.conj(f1[l]) * x1
            j += 2
        if j < cols_in:
            f0 = fin[j * k:(j + 1) * k]
            x0 = xs[j]
            for l in range(k):
                t[l] += np.conj(f0[l]) * x0
        i = 0
        while i + 4 <= rows_out:
            f0 = fout[i * k:(i + 1) * k]
            f1 = fout[(i + 1) * k:(i + 2) * k]
            f2 = fout[(i + 2) * k:(i + 3) * k]
            f3 = fout[(i + 3) * k:(i + 4) * k]
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for l in range(k):
                tl = t[l]
                a0 += f0[l] * tl
                a1 += f1[l] * tl
                a2 += f2[l] * tl
                a3 += f3[l] * tl
            ys[i] += a0
            ys[i + 1] += a1
            ys[i + 2] += a2
            ys[i + 3] += a3
            i += 4
        while i < rows_out:
            f0 = fout[i * k:(i + 1) * k]
            a0 = zero
            for l in range(k):
                a0 += f0[l] * t[l]
            ys[i] += a0
            i += 1


@njit(cache=True, nogil=True, fastmath=_FM)
def apply_segment(r0, m, c0, n, rank, off, buf, X, Y, adjoint):
    """Accumulate ``Y += A_seg @ X`` (or ``A_seg^H @ X`` when ``adjoint``).

    X: (ncols_in, nrhs) C-contiguous, Y: (nrows_out, nrhs) C-contiguous.
    """
    nrhs = X.shape[1]
    zero = np.zeros(1, Y.dtype)[0]
    tmp = np.zeros((64, nrhs), dtype=Y.dtype)
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        k = rank[q]
        o = off[q]
        if adjoint:
            ri, ci = c0[q], r0[q]
            rows_out, cols_in = nq, mq
        else:
            ri, ci = r0[q], c0[q]
            rows_out, cols_in = mq, nq
        Ys = Y[ri:ri + rows_out]
        Xs = X[ci:ci + cols_in]
        if k < 0:
            if not adjoint:
                for i in range(mq):
                    row = buf[o + i * nq:o + (i + 1) * nq]
                    yi = Ys[i]
                    for j in range(nq):
                        a = row[j]
                        xj = Xs[j]
                        for r in range(nrhs):
                            yi[r] += a * xj[r]
            else:
                for i in range(mq):
                    row = buf[o + i * nq:o + (i + 1) * nq]
                    xi = Xs[i]
                    for j in range(nq):
                        a = np.conj(row[j])
                        yj = Ys[j]
                        for r in range(nrhs):
                            yj[r] += a * xi[r]
            continue
        if k == 0:
            continue
        if tmp.shape[0] < k:
            tmp = np.zeros((k, nrhs), dtype=Y.dtype)
        t = tmp[:k]
        for l in range(k):
            for r in range(nrhs):
                t[l, r] = zero
        if adjoint:
            fin = buf[o:o + mq * k]
            fout = buf[o + mq * k:o + (mq + nq) * k]
        else:
            fin = buf[o + mq * k:o + (mq + nq) * k]
            fout = buf[o:o + mq * k]
        for j in range(cols_in):
            f = fin[j * k:(j + 1) * k]
            xj = Xs[j]
            for l in range(k):
                a = np.conj(f[l])
                tl = t[l]
                for r in range(nrhs):
                    tl[r] += a * xj[r]
        for i in range(rows_out):
            f = fout[i * k:(i + 1) * k]
            yi = Ys[i]
            for l in range(k):
                a = f[l]
                tl = t[l]
                for r in range(nrhs):
                    yi[r] += a * tl[r]


@njit(cache=True, nogil=True, fastmath=_FM)
def apply_segment_sym_vec(r0, m, c0, n, rank, off, buf, x, xm, y, z):
    """Symmetric storage, one right-hand side, fused: for every leaf ``L`` of the (mirrored)
    rows given, ``y[r] += L x[c]`` and ``z[c] += L^H xm[r]`` (the mirrored leaf, see
    :meth:`hmat._packed.Packed.apply`) in one pass over the leaf's data: a dense leaf is
    read once, a low-rank leaf's ``U`` once and its ``V`` twice (the second time from
    cache). ``z`` may be ``y``.
    """
    zero = np.zeros(1, y.dtype)[0]
    tmp = np.zeros(64, dtype=y.dtype)
    tmp2 = np.zeros(64, dtype=y.dtype)
    for q in range(r0.size):
        mq = m[q]
        nq = n[q]
        k = rank[q]
        o = off[q]
        ys = y[r0[q]:r0[q] + mq]
        xs = x[c0[q]:c0[q] + nq]
        zs = z[c0[q]:c0[q] + nq]
        xms = xm[r0[q]:r0[q] + mq]
        if k < 0:
            for i in range(mq):
                row = buf[o + i * nq:o + (i + 1) * nq]
                acc = zero
                xi = xms[i]
                for j in range(nq):
                    a = row[j]
                    acc += a * xs[j]
                    zs[j] += np.conj(a) * xi
                ys[i] += acc
            continue
        if k == 0:
            continue
        if tmp.size < k:
            tmp = np.zeros(k, dtype=y.dtype)
            tmp2 = np.zeros(k, dtype=y.dtype)
        t = tmp[:k]
        t2 = tmp2[:k]
        for l in range(k):
            t[l] = zero
            t2[l] = zero
        fu = buf[o:o + mq * k]
        fv = buf[o + mq * k:o + (mq + nq) * k]
        for j in range(nq):  # t = V^H x
            f0 = fv[j * k:(j + 1) * k]
            x0 = xs[j]
            for l in range(k):
                t[l] += np.conj(f0[l]) * x0
        for i in range(mq):  # y += U t and t2 = U^H xm in one pass over U
            f0 = fu[i * k:(i + 1) * k]
            a0 = zero
            xi = xms[i]
            for l in range(k):
                a = f0[l]
                a0 += a * t[l]
                t2[l] += np.conj(a) * xi
            ys[i] += a0
        for j in range(nq):  # z += V t2
            f0 = fv[j * k:(j + 1) * k]
            a0 = zero
            for l in range(k):
                a0 += f0[l] * t2[l]
            zs[j] += a0
