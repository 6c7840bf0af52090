"""Compiled kernel evaluation, ACA with partial pivoting, recompression and the per-chunk
build loop for the built-in kernels (private).

Kernel codes (see :mod:`hmat.kernels`): 0 Laplace 2-D, 1 Laplace 3-D, 2 Helmholtz 3-D,
3 Gaussian, 4 Exponential, 5 Matern nu=3/2, 6 Matern nu=5/2. ``p`` holds the parameter
(length scale or wavenumber). Values are computed in float64 and stored in the dtype of
the output buffer.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

INV4PI = 1.0 / (4.0 * math.pi)
INV2PI = 1.0 / (2.0 * math.pi)
SQRT3 = math.sqrt(3.0)
SQRT5 = math.sqrt(5.0)


def _value(a, re, im):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_value)
def _value_impl(a, re, im):
    if isinstance(a.dtype, types.Complex):
        return lambda a, re, im: complex(re, im)
    return lambda a, re, im: re


@njit(cache=True, nogil=True, inline="always")
def _entry(code, p, x, y):
    d = x.shape[0]
    r2 = 0.0
    for k in range(d):
        t = x[k] - y[k]
        r2 += t * t
    r = math.sqrt(r2)
    if code == 0:
        return (-math.log(r) * INV2PI, 0.0) if r > 0.0 else (0.0, 0.0)
    if code == 1:
        return (INV4PI / r, 0.0) if r > 0.0 else (0.0, 0.0)
    if code == 2:
        if r == 0.0:
            return (0.0, 0.0)
        s = INV4PI / r
        return (math.cos(p * r) * s, math.sin(p * r) * s)
    if code == 3:
        return (math.exp(-0.5 * r2 / (p * p)), 0.0)
    if code == 4:
        return (math.exp(-r / p), 0.0)
    if code == 5:
        t = SQRT3 * r / p
        return ((1.0 + t) * math.exp(-t), 0.0)
    t = SQRT5 * r / p
    return ((1.0 + t + t * t / 3.0) * math.exp(-t), 0.0)


@njit(cache=True, nogil=True)
def eval_block(code, p, X, Y, out):
    """``out[i, j] = k(X[i], Y[j])`` for all i, j."""
    for i in range(X.shape[0]):
        for j in range(Y.shape[0]):
            re, im = _entry(code, p, X[i], Y[j])
            out[i, j] = _value(out, re, im)


@njit(cache=True, nogil=True)
def _row(code, p, x, Y, c0, n, out):
    for j in range(n):
        re, im = _entry(code, p, x, Y[c0 + j])
        out[j] = _value(out, re, im)


@njit(cache=True, nogil=True)
def _col(code, p, X, r0, m, y, out):
    for i in range(m):
        re, im = _entry(code, p, X[r0 + i], y)
        out[i] = _value(out, re, im)


@njit(cache=True, nogil=True)
def _hash(a, b, c):
    h = (a * 2654435761 + b * 40503 + c * 97) % 2147483647
    return (h * 48271) % 2147483647


@njit(cache=True, nogil=True)
def _pick_unused(used, h):
    m = used.size
    start = h % m
    for t in range(m):
        i = (start + t) % m
        if not used[i]:
            return i
    return -1


@njit(cache=True, nogil=True)
def aca(code, p, X, r0, m, Y, c0, n, tol, tol_check, kmax, proto):
    """ACA with partial pivoting and residual checks on random rows and columns (ACA+ style).

    Returns ``(U, V, k, evals, ok)``: ``U`` (k, m) and ``V`` (k, n) with the block
    approximated by ``sum_l U[l][:, None] * conj(V[l])[None, :]``. ``ok`` is False when ACA
    reached ``kmax`` (low rank not profitable or no convergence): use the exact block.
    """
    kcap = max(1, min(16, kmax))
    U = np.empty((kcap, m), proto.dtype)
    V = np.empty((kcap, n), proto.dtype)
    row = np.empty(n, proto.dtype)
    col = np.empty(m, proto.dtype)
    used_r = np.zeros(m, np.bool_)
    used_c = np.zeros(n, np.bool_)
    norm2 = 0.0
    k = 0
    evals = 0
    i = 0
    zero_rows = 0
    checks = 0
    tiny = 1e-300
    while True:
        if k >= kmax:
            return U, V, k, evals, False
        verify = False
        if i < 0:
            verify = True
        else:
            _row(code, p, X[r0 + i], Y, c0, n, row)
            evals += n
            for l in range(k):
                a = U[l, i]
                for j in range(n):
                    row[j] -= a * np.conj(V[l, j])
            used_r[i] = True
            jp = -1
            best = -1.0
            for j in range(n):
                if not used_c[j]:
                    v = abs(row[j])
                    if v > best:
                        best = v
                        jp = j
            if jp < 0 or best <= tiny or best * best * n * m <= (1e-3 * tol) ** 2 * norm2:
                zero_rows += 1
                if zero_rows >= 3 or jp < 0:
                    verify = True
                else:
                    i = _pick_unused(used_r, _hash(r0, c0, k + 7 * zero_rows))
                    if i < 0:
                        verify = True
                    continue
            else:
                zero_rows = 0
                _col(code, p, X, r0, m, Y[c0 + jp], col)
                evals += m
                for l in range(k):
                    b = np.conj(V[l, jp])
                    for ii in range(m):
                        col[ii] -= U[l, ii] * b
                piv = row[jp]
                used_c[jp] = True
                if k == kcap:
                    kcap2 = min(2 * kcap, max(kmax, 1))
                    U2 = np.empty((kcap2, m), proto.dtype)
                    V2 = np.empty((kcap2, n), proto.dtype)
                    U2[:k] = U[:k]
                    V2[:k] = V[:k]
                    U, V, kcap = U2, V2, kcap2
                for ii in range(m):
                    U[k, ii] = col[ii] / piv
                for j in range(n):
                    V[k, j] = np.conj(row[j])
                nu = 0.0
                for ii in range(m):
                    nu += abs(U[k, ii]) ** 2
                nv = 0.0
                for j in range(n):
                    nv += abs(V[k, j]) ** 2
                cross = 0.0
                for l in range(k):
                    a = U[l, 0] * 0
                    for ii in range(m):
                        a += np.conj(U[l, ii]) * U[k, ii]
                    b = V[l, 0] * 0
                    for j in range(n):
                        b += np.conj(V[k, j]) * V[l, j]
                    cross += (a * b).real
                norm2 = max(norm2 + 2.0 * cross + nu * nv, 0.0)
                k += 1
                # next pivot row: largest entry of the new column among unused rows
                i = -1
                best = -1.0
                for ii in range(m):
                    if not used_r[ii]:
                        v = abs(U[k - 1, ii])
                        if v > best:
                            best = v
                            i = ii
                if nu * nv <= tol * tol * norm2 or i < 0:
                    verify = True
                else:
                    continue
        if not verify:
            continue
        # verification on one unused row and one unused column (fresh residuals)
        checks += 1
        ir = _pick_unused(used_r, _hash(r0, c0, 1000 + checks))
        jc = _pick_unused(used_c, _hash(c0, r0, 2000 + checks))
        bad_row = -1
        if ir >= 0:
            _row(code, p, X[r0 + ir], Y, c0, n, row)
            evals += n
            for l in range(k):
                a = U[l, ir]
                for j in range(n):
                    row[j] -= a * np.conj(V[l, j])
            s = 0.0
            for j in range(n):
                s += abs(row[j]) ** 2
            if s * m > tol_check * tol_check * norm2:
                bad_row = ir
        if bad_row < 0 and jc >= 0:
            _col(code, p, X, r0, m, Y[c0 + jc], col)
            evals += m
            for l in range(k):
                b = np.conj(V[l, jc])
                for ii in range(m):
                    col[ii] -= U[l, ii] * b
            s = 0.0
            best = -1.0
            for ii in range(m):
                v = abs(col[ii])
                s += v * v
                if not used_r[ii] and v > best:
                    best = v
                    bad_row = ii
            if not (s * n > tol_check * tol_check * norm2):
                bad_row = -1
        if bad_row < 0 or checks > 64:
            return U, V, k, evals, bad_row < 0
        i = bad_row
        zero_rows = 0


@njit(cache=True, nogil=True)
def recompress_factors(U, V, k, abs_rel, proto):
    """QR + SVD recompression of ``sum_l U[l] conj(V[l])^T`` (rows of U, V are vectors).

    Keeps the fewest singular values with tail norm <= ``abs_rel * ||S||_F``.
    Returns ``(Uo, Vo, k2)`` with ``Uo`` (m, k2) and ``Vo`` (n, k2), C-contiguous.
    """
    m = U.shape[1]
    n = V.shape[1]
    if k == 0:
        return np.empty((m, 0), proto.dtype), np.empty((n, 0), proto.dtype), 0
    Ut = np.ascontiguousarray(U[:k].T)
    Vt = np.ascontiguousarray(V[:k].T)
    Qu, Ru = np.linalg.qr(Ut)
    Qv, Rv = np.linalg.qr(Vt)
    core = Ru @ np.ascontiguousarray(np.conj(Rv).T)
    W, s, Zh = np.linalg.svd(core)
    tot = 0.0
    for t in range(s.size):
        tot += s[t] * s[t]
    lim = (abs_rel * abs_rel) * tot
    k2 = s.size
    tail = 0.0
    while k2 > 0 and tail + s[k2 - 1] * s[k2 - 1] <= lim:
        tail += s[k2 - 1] * s[k2 - 1]
        k2 -= 1
    Wk = np.empty((W.shape[0], k2), proto.dtype)
    for a in range(W.shape[0]):
        for b in range(k2):
            Wk[a, b] = W[a, b] * s[b]
    Zk = np.ascontiguousarray(np.conj(Zh[:k2]).T)
    return np.ascontiguousarray(Qu @ Wk), np.ascontiguousarray(Qv @ Zk), k2


@njit(cache=True, nogil=True)
def build_chunk(code, p, X, Y, r0s, ms, c0s, ns, adm, tol, proto):
    """Build the leaves of one chunk into one packed segment.

    Returns ``(rank, off, buf, evals)``; ``rank[q] = -1`` for a dense leaf.
    Admissible leaves use ACA (at 0.1 tol) and recompression (at 0.9 tol) and fall back to
    the exact block when ACA does not converge or low rank does not pay.
    """
    q = r0s.size
    rank = np.empty(q, np.int64)
    off = np.empty(q, np.int64)
    cap = 1024
    for t in range(q):
        if adm[t]:
            cap += 8 * (ms[t] + ns[t])
        else:
            cap += ms[t] * ns[t]
    buf = np.empty(cap, proto.dtype)
    pos = 0
    evals = 0
    for t in range(q):
        m = ms[t]
        n = ns[t]
        r0 = r0s[t]
        c0 = c0s[t]
        dense = not adm[t]
        if adm[t]:
            kmax = (m * n) // (m + n)
            U, V, k, ev, ok = aca(code, p, X, r0, m, Y, c0, n, 0.1 * tol, 0.5 * tol, kmax, proto)
            evals += ev
            if ok:
                Uo, Vo, k2 = recompress_factors(U, V, k, 0.9 * tol, proto)
                need = k2 * (m + n)
                if pos + need > buf.size:
                    nb = np.empty(max(2 * buf.size, pos + need), proto.dtype)
                    nb[:pos] = buf[:pos]
                    buf = nb
                rank[t] = k2
                off[t] = pos
                buf[pos:pos + m * k2] = Uo.ravel()
                buf[pos + m * k2:pos + need] = Vo.ravel()
                pos += need
            else:
                dense = True
        if dense:
            need = m * n
            if pos + need > buf.size:
                nb = np.empty(max(2 * buf.size, pos + need), proto.dtype)
                nb[:pos] = buf[:pos]
                buf = nb
            rank[t] = -1
            off[t] = pos
            eval_block(code, p, X[r0:r0 + m], Y[c0:c0 + n], buf[pos:pos + need].reshape((m, n)))
            evals += need
            pos += need
    return rank, off, buf[:pos].copy(), evals


@njit(cache=True, nogil=True)
def sample_entries(r0, m, c0, n, rank, off, buf, pi, pj, out):
    """Entries at permuted positions ``(pi[s], pj[s])`` of a packed segment, added into out."""
    for q in range(r0.size):
        for s in range(pi.size):
            i = pi[s] - r0[q]
            j = pj[s] - c0[q]
            if i < 0 or i >= m[q] or j < 0 or j >= n[q]:
                continue
            k = rank[q]
            if k < 0:
                out[s] += buf[off[q] + i * n[q] + j]
            else:
                acc = out[s] * 0
                ou = off[q] + i * k
                ov = off[q] + m[q] * k + j * k
                for l in range(k):
                    acc += buf[ou + l] * np.conj(buf[ov + l])
                out[s] += acc


@njit(cache=True, nogil=True)
def eval_pairs(code, p, X, Y, ii, jj, out):
    """``out[s] = k(X[ii[s]], Y[jj[s]])``."""
    for s in range(ii.size):
        re, im = _entry(code, p, X[ii[s]], Y[jj[s]])
        out[s] = _value(out, re, im)
