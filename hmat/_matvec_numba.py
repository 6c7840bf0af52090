"""Compiled matvec/matmat over packed leaves (private).

A *segment* packs many leaves into one flat buffer. Leaf ``q`` covers permuted rows
``r0[q]:r0[q]+m[q]`` and columns ``c0[q]:c0[q]+n[q]``; ``rank[q] < 0`` marks a dense leaf
stored row-major at ``buf[off[q]:off[q]+m*n]``; ``rank[q] = k >= 0`` a low-rank leaf
``U @ V^H`` stored as ``U`` (m x k, row-major) followed by ``V`` (n x k, row-major).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def apply_segment(r0, m, c0, n, rank, off, buf, X, Y, adjoint):
    """Accumulate ``Y += A_seg @ X`` (or ``A_seg^H @ X`` when ``adjoint``).

    X: (ncols_in, nrhs) C-contiguous, Y: (nrows_out, nrhs) C-contiguous.
    """
    nrhs = X.shape[1]
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
        if k < 0:
            if not adjoint:
                for i in range(mq):
                    base = o + i * nq
                    for j in range(nq):
                        a = buf[base + j]
                        for r in range(nrhs):
                            Y[ri + i, r] += a * X[ci + j, r]
            else:
                for i in range(mq):
                    base = o + i * nq
                    for j in range(nq):
                        a = np.conj(buf[base + j])
                        for r in range(nrhs):
                            Y[ri + j, r] += a * X[ci + i, r]
            continue
        if k == 0:
            continue
        if tmp.shape[0] < k:
            tmp = np.zeros((k, nrhs), dtype=Y.dtype)
        else:
            tmp[:k, :] = 0
        # first factor applied (conjugated): F_in (cols_in x k); then F_out (rows_out x k)
        if adjoint:
            oin, oout = o, o + mq * k
        else:
            oin, oout = o + mq * k, o
        for j in range(cols_in):
            base = oin + j * k
            for l in range(k):
                a = np.conj(buf[base + l])
                for r in range(nrhs):
                    tmp[l, r] += a * X[ci + j, r]
        for i in range(rows_out):
            base = oout + i * k
            for l in range(k):
                a = buf[base + l]
                for r in range(nrhs):
                    Y[ri + i, r] += a * tmp[l, r]


@njit(cache=True, nogil=True)
def apply_segment_vec(r0, m, c0, n, rank, off, buf, x, y, adjoint):
    """One right-hand side: ``y += A_seg @ x`` (or the adjoint); x, y 1-D contiguous."""
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
        if k < 0:
            if not adjoint:
                for i in range(mq):
                    base = o + i * nq
                    acc = y[ri + i] * 0
                    for j in range(nq):
                        acc += buf[base + j] * x[ci + j]
                    y[ri + i] += acc
            else:
                for i in range(mq):
                    base = o + i * nq
                    xi = x[ci + i]
                    for j in range(nq):
                        y[ri + j] += np.conj(buf[base + j]) * xi
            continue
        if k == 0:
            continue
        if tmp.size < k:
            tmp = np.zeros(k, dtype=y.dtype)
        else:
            tmp[:k] = 0
        if adjoint:
            oin, oout = o, o + mq * k
        else:
            oin, oout = o + mq * k, o
        for j in range(cols_in):
            base = oin + j * k
            xj = x[ci + j]
            for l in range(k):
                tmp[l] += np.conj(buf[base + l]) * xj
        for i in range(rows_out):
            base = oout + i * k
            acc = y[ri + i] * 0
            for l in range(k):
                acc += buf[base + l] * tmp[l]
            y[ri + i] += acc
