"""Compiled kernel evaluation, ACA with partial pivoting, recompression and the per-chunk
build loop for compiled kernels (private).

A compiled kernel is a jitted *entry function* ``entry(X, i, Y, j, p)`` returning the value
``k(X[i], Y[j])`` (a float, or a complex number) for point arrays ``X`` (m, d), ``Y``
(n, d) and a float parameter ``p`` (see :class:`hmat.kernels.CompiledKernel`). The
functions here take the entry function as an argument: numba compiles (and caches on disk)
one specialisation per entry function, with the entry inlined, so a user's kernel runs as
fast as a built-in one and nothing here names a kernel. Values are computed in float64 and
stored in the dtype of the output buffer.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .partition import LeafKind

# reassociation and contraction only: vectorised sums, results change by rounding only
_FM = {"reassoc", "contract", "nsz"}
_DENSE = int(LeafKind.DENSE)  # kind codes of the packed tables
_LOWRANK = int(LeafKind.LOWRANK)


def _cast(a, v):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_cast)
def _cast_impl(a, v):
    """``v`` as stored in array ``a`` (the real part of a complex value for a real array)."""
    if isinstance(v, types.Complex) and not isinstance(a.dtype, types.Complex):
        return lambda a, v: v.real
    return lambda a, v: v


def _abs2(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_abs2)
def _abs2_impl(x):
    if isinstance(x, types.Complex):
        return lambda x: x.real * x.real + x.imag * x.imag
    return lambda x: x * x


@njit(cache=True, nogil=True)
def eval_block(entry, p, X, Y, out):
    """``out[i, j] = k(X[i], Y[j])`` for all i, j."""
    for i in range(X.shape[0]):
        o = out[i]
        for j in range(Y.shape[0]):
            o[j] = _cast(out, entry(X, i, Y, j, p))


@njit(cache=True, nogil=True)
def _row(entry, p, X, i, Y, c0, n, out):
    """``out[j] = k(X[i], Y[c0 + j])``, j < n."""
    o = out[:n]
    for j in range(n):
        o[j] = _cast(out, entry(X, i, Y, c0 + j, p))


@njit(cache=True, nogil=True)
def _col(entry, p, X, r0, m, Y, j, out):
    """``out[i] = k(X[r0 + i], Y[j])``, i < m."""
    o = out[:m]
    for i in range(m):
        o[i] = _cast(out, entry(X, r0 + i, Y, j, p))


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
def _scale_exponent(best):
    """0 when squares of values of magnitude ``best`` are safe, else ``-e`` with
    ``best = f 2^e`` (so that ``best * 2^-e`` is in [0.5, 1))."""
    if 1e-100 < best < 1e100:
        return 0
    return -max(math.frexp(best)[1], -1000)  # 2^se finite also for subnormal values


@njit(cache=True, nogil=True)
def twin_ids(B):
    """Group ids of equal rows of ``B`` (int64 (n, d): the bit patterns of the points):
    ``g[i]`` is the first index with the same row. Open-addressing hash table, O(n d).
    Returns ``(g, any_repeated)``."""
    n, d = B.shape
    size = 1
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, np.int64)
    g = np.empty(n, np.int64)
    dup = False
    for i in range(n):
        h = np.int64(1469598103934665603)
        for k in range(d):
            h = (h ^ B[i, k]) * np.int64(1099511628211)
        slot = (h ^ (h >> 29)) & (size - 1)
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = i
                g[i] = i
                break
            same = True
            for k in range(d):
                if B[j, k] != B[i, k]:
                    same = False
                    break
            if same:
                g[i] = g[j]
                dup = True
                break
            slot = (slot + 1) & (size - 1)
    return g, dup


@njit(cache=True, nogil=True)
def _mark_twins(used, g, start, i):
    """Mark every index ``t`` with ``g[start + t] == g[start + i]`` (the same point) used."""
    gi = g[start + i]
    for t in range(used.size):
        if g[start + t] == gi:
            used[t] = True


@njit(cache=True, nogil=True, fastmath=_FM)
def aca(entry, p, X, r0, m, Y, c0, n, tol, tol_check, kmax, proto, gx, gy):
    """ACA with partial pivoting and residual checks on random rows and columns (ACA+ style).

    Returns ``(U, V, Gu, Gv, k, evals, ok, se)``: ``U`` (k, m) and ``V`` (k, n) with the
    block approximated by ``2^se * sum_l U[l][:, None] * conj(V[l])[None, :]``. ``ok`` is
    False when ACA reached ``kmax`` (low rank not profitable or no convergence) or its
    norms left the floating-point range: use the exact block.
    ``Gu[a, b] = <U[a], U[b]>`` and ``Gv[a, b] = <V[a], V[b]>`` are the Gram matrices of the
    factors (64-bit), a by-product of the norm estimate that recompression reuses.

    Scale safety: when the first non-zero row has entries beyond ``1e+-100`` (their squares
    would overflow or underflow), every evaluated row and column is multiplied by the power
    of two ``2^-se`` that brings it to O(1), exactly; otherwise ``se = 0`` and nothing is
    scaled.

    Repeated points: ``gx`` (``gy``) gives a group id per (permuted) row (column) point,
    equal ids for equal coordinates (empty: all points distinct). The rows (columns) of a
    repeated point are equal, so once one of them is a pivot the residual of all of them is
    zero: they are marked used, so that neither pivoting nor the random checks waste a
    step on them (which would otherwise stop ACA early).
    """
    kcap = max(1, min(16, kmax))
    U = np.empty((kcap, m), proto.dtype)
    V = np.empty((kcap, n), proto.dtype)
    wide = _wide(proto)
    Gu = np.empty((kcap, kcap), wide.dtype)
    Gv = np.empty((kcap, kcap), wide.dtype)
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
    se = 0
    sc = 1.0
    scaled = False
    twins_r = gx.size > 0
    twins_c = gy.size > 0
    while True:
        if k >= kmax:
            return U, V, Gu, Gv, k, evals, False, se
        verify = False
        if i < 0:
            verify = True
        else:
            _row(entry, p, X, r0 + i, Y, c0, n, row)
            evals += n
            if not scaled:
                best = 0.0
                for j in range(n):
                    best = max(best, abs(row[j]))
                if best > 0.0:
                    scaled = True
                    se = -_scale_exponent(best)
                    sc = math.ldexp(1.0, -se)
            if sc != 1.0:
                for j in range(n):
                    row[j] *= sc
            for l in range(k):
                a = U[l, i]
                for j in range(n):
                    row[j] -= a * np.conj(V[l, j])
            used_r[i] = True
            if twins_r:
                _mark_twins(used_r, gx, r0, i)
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
                _col(entry, p, X, r0, m, Y, c0 + jp, col)
                evals += m
                if sc != 1.0:
                    for ii in range(m):
                        col[ii] *= sc
                for l in range(k):
                    b = np.conj(V[l, jp])
                    for ii in range(m):
                        col[ii] -= U[l, ii] * b
                piv = row[jp]
                used_c[jp] = True
                if twins_c:
                    _mark_twins(used_c, gy, c0, jp)
                if k == kcap:
                    kcap2 = min(2 * kcap, max(kmax, 1))
                    U2 = np.empty((kcap2, m), proto.dtype)
                    V2 = np.empty((kcap2, n), proto.dtype)
                    U2[:k] = U[:k]
                    V2[:k] = V[:k]
                    Gu2 = np.empty((kcap2, kcap2), wide.dtype)
                    Gv2 = np.empty((kcap2, kcap2), wide.dtype)
                    Gu2[:k, :k] = Gu[:k, :k]
                    Gv2[:k, :k] = Gv[:k, :k]
                    U, V, Gu, Gv, kcap = U2, V2, Gu2, Gv2, kcap2
                for ii in range(m):
                    U[k, ii] = col[ii] / piv
                for j in range(n):
                    V[k, j] = np.conj(row[j])
                nu = 0.0
                for ii in range(m):
                    nu += _abs2(U[k, ii])
                nv = 0.0
                for j in range(n):
                    nv += _abs2(V[k, j])
                cross = 0.0
                for l in range(k):
                    a = U[l, 0] * 0
                    for ii in range(m):
                        a += np.conj(U[l, ii]) * U[k, ii]
                    b = V[l, 0] * 0
                    for j in range(n):
                        b += np.conj(V[k, j]) * V[l, j]
                    cross += (a * b).real
                    Gu[l, k] = a
                    Gu[k, l] = np.conj(a)
                    Gv[k, l] = b
                    Gv[l, k] = np.conj(b)
                Gu[k, k] = nu
                Gv[k, k] = nv
                norm2 = max(norm2 + 2.0 * cross + nu * nv, 0.0)
                k += 1
                if not (norm2 < np.inf):
                    # a block whose entries span more than the floating-point range
                    return U, V, Gu, Gv, k, evals, False, se
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
            _row(entry, p, X, r0 + ir, Y, c0, n, row)
            evals += n
            if sc != 1.0:
                for j in range(n):
                    row[j] *= sc
            for l in range(k):
                a = U[l, ir]
                for j in range(n):
                    row[j] -= a * np.conj(V[l, j])
            s = 0.0
            for j in range(n):
                s += _abs2(row[j])
            if s * m > tol_check * tol_check * norm2:
                bad_row = ir
        if bad_row < 0 and jc >= 0:
            _col(entry, p, X, r0, m, Y, c0 + jc, col)
            evals += m
            if sc != 1.0:
                for ii in range(m):
                    col[ii] *= sc
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
            return U, V, Gu, Gv, k, evals, bad_row < 0, se
        i = bad_row
        zero_rows = 0


def _wide(proto):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(_wide)
def _wide_impl(proto):
    if isinstance(proto.dtype, types.Complex):
        return lambda proto: np.zeros(0, np.complex128)
    return lambda proto: np.zeros(0, np.float64)


@njit(cache=True, nogil=True, fastmath=_FM)
def _house_qr(A, k, m, R):
    """Householder QR of the m x k matrix whose column l is ``A[l, :m]`` (in place).

    On return ``A[j, j:]`` holds the j-th (unnormalised) reflector ``v_j``, ``tau[j]`` its
    factor (``H_j = I - tau_j v_j v_j^H``) and ``R[:k, :k]`` the triangular factor.
    """
    tau = np.zeros(k)
    for j in range(k):
        xn2 = 0.0
        for i in range(j, m):
            xn2 += _abs2(A[j, i])
        for l in range(k):
            R[j, l] = 0
        if xn2 == 0.0:
            for l in range(j + 1, k):
                R[j, l] = A[l, j]
            continue
        xn = math.sqrt(xn2)
        x0 = A[j, j]
        a0 = abs(x0)
        ph = x0 / a0 if a0 > 0.0 else x0 * 0 + 1
        alpha = -ph * xn
        A[j, j] = x0 - alpha
        t = 2.0 / (2.0 * xn2 + 2.0 * a0 * xn)
        tau[j] = t
        R[j, j] = alpha
        for l in range(j + 1, k):
            w = A[l, 0] * 0
            for i in range(j, m):
                w += np.conj(A[j, i]) * A[l, i]
            w *= t
            for i in range(j, m):
                A[l, i] -= w * A[j, i]
            R[j, l] = A[l, j]
    return tau


@njit(cache=True, nogil=True, fastmath=_FM)
def _apply_q(A, tau, k, m, B):
    """``B[c] <- Q @ B[c]`` for each row c (vectors of length m, zero beyond k on entry)."""
    for c in range(B.shape[0]):
        for j in range(k - 1, -1, -1):
            t = tau[j]
            if t == 0.0:
                continue
            w = B[c, 0] * 0
            for i in range(j, m):
                w += np.conj(A[j, i]) * B[c, i]
            w *= t
            for i in range(j, m):
                B[c, i] -= w * A[j, i]


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _dot_rows(A, p, B, q, k):
    g = A[p, 0] * 0
    for i in range(k):
        g += np.conj(A[p, i]) * B[q, i]
    return g


@njit(cache=True, nogil=True, fastmath=_FM, inline="always")
def _rotate(A, p, q, c, s, e, k):
    for i in range(k):
        xp = A[p, i]
        xq = A[q, i] * e
        A[p, i] = c * xp - s * xq
        A[q, i] = s * xp + c * xq


@njit(cache=True, nogil=True, fastmath=_FM)
def _jacobi(Ct, Zt, k):
    """One-sided Jacobi: orthogonalise the rows of Ct (columns of the core) by unitary
    column operations, accumulated in Zt (identity on entry), so ``core = Ct_out^T Zt^H``
    (transposed rows). Returns the row norms (singular values, unsorted).

    Convergence only affects how few columns the truncation keeps, never its accuracy:
    Zt stays unitary, so the error of dropping rows of Ct is exactly their norm.
    """
    # Stopping at |<c_p, c_q>| <= 1e-5 |c_p| |c_q| leaves the row norms within ~1e-10 of
    # the singular values (relative), far below any tolerance the truncation uses.
    eps = 1e-5
    nrm = np.empty(k)
    for sweep in range(40):
        for p in range(k):
            a = 0.0
            for i in range(k):
                a += _abs2(Ct[p, i])
            nrm[p] = a
        rotated = False
        for p in range(k - 1):
            for q in range(p + 1, k):
                a = nrm[p]
                b = nrm[q]
                g = _dot_rows(Ct, p, Ct, q, k)
                ag = abs(g)
                if ag == 0.0 or ag <= eps * math.sqrt(a * b):
                    continue
                rotated = True
                e = np.conj(g) / ag
                zeta = (b - a) / (2.0 * ag)
                if zeta >= 0.0:
                    t = 1.0 / (zeta + math.sqrt(1.0 + zeta * zeta))
                else:
                    t = -1.0 / (-zeta + math.sqrt(1.0 + zeta * zeta))
                c = 1.0 / math.sqrt(1.0 + t * t)
                s = c * t
                _rotate(Ct, p, q, c, s, e, k)
                _rotate(Zt, p, q, c, s, e, k)
                nrm[p] = max(a - t * ag, 0.0)
                nrm[q] = b + t * ag
        if not rotated:
            break
    sv = np.empty(k)
    for p in range(k):
        a = 0.0
        for i in range(k):
            a += _abs2(Ct[p, i])
        sv[p] = math.sqrt(a)
    return sv


@njit(cache=True, nogil=True)
def _order_desc(sv):
    """Indices sorting the (few) values of sv in decreasing order (insertion sort)."""
    k = sv.size
    order = np.empty(k, np.int64)
    for a in range(k):
        order[a] = a
    for a in range(1, k):
        t = order[a]
        b = a - 1
        while b >= 0 and sv[order[b]] < sv[t]:
            order[b + 1] = order[b]
            b -= 1
        order[b + 1] = t
    return order


@njit(cache=True, nogil=True)
def _core_rank(Ru, Rv, k, abs_rel):
    """SVD (one-sided Jacobi) of the core ``Ru Rv^H`` and the rank of the tail rule: the
    fewest singular values with ``||dropped|| <= abs_rel ||core||_F`` (the compiled twin of
    :func:`hmat.linalg.rank_for_tol`). Returns ``(Ct, Zt, sv, order, rank)``."""
    # Ct[p, i] = core[i, p] = sum_l Ru[i, l] conj(Rv[p, l])
    Ct = np.zeros((k, k), Ru.dtype)
    Zt = np.zeros((k, k), Ru.dtype)
    for p in range(k):
        Zt[p, p] = 1.0
        for i in range(k):
            acc = Ct[0, 0] * 0
            for l in range(max(i, p), k):
                acc += Ru[i, l] * np.conj(Rv[p, l])
            Ct[p, i] = acc
    sv = _jacobi(Ct, Zt, k)
    order = _order_desc(sv)
    tot = 0.0
    for t in range(k):
        tot += sv[t] * sv[t]
    lim = (abs_rel * abs_rel) * tot
    k2 = k
    tail = 0.0
    while k2 > 0 and tail + sv[order[k2 - 1]] * sv[order[k2 - 1]] <= lim:
        tail += sv[order[k2 - 1]] * sv[order[k2 - 1]]
        k2 -= 1
    return Ct, Zt, sv, order, k2


@njit(cache=True, nogil=True)
def recompress_into(U, V, k, abs_rel, out, pos):
    """QR + SVD recompression of ``sum_l U[l] conj(V[l])^T`` (rows of U, V are vectors),
    written to ``out[pos:]`` as U' (m x k2, row-major) then V' (n x k2, row-major).

    Keeps the fewest singular values with tail norm <= ``abs_rel * ||S||_F``; the work is
    done in 64-bit precision with compiled Householder QR and one-sided Jacobi SVD (no
    BLAS/LAPACK call, so no thread oversubscription). Returns k2; ``out`` must have room
    for ``k * (m + n)`` entries from ``pos``.
    """
    m = U.shape[1]
    n = V.shape[1]
    if k == 0:
        return 0
    w = _wide(out)
    Au = np.empty((k, m), w.dtype)
    Av = np.empty((k, n), w.dtype)
    for l in range(k):
        for i in range(m):
            Au[l, i] = U[l, i]
        for j in range(n):
            Av[l, j] = V[l, j]
    Ru = np.empty((k, k), w.dtype)
    Rv = np.empty((k, k), w.dtype)
    tu = _house_qr(Au, k, m, Ru)
    tv = _house_qr(Av, k, n, Rv)
    Ct, Zt, sv, order, k2 = _core_rank(Ru, Rv, k, abs_rel)
    if k2 == 0:
        return 0
    Bu = np.zeros((k2, m), w.dtype)
    Bv = np.zeros((k2, n), w.dtype)
    for c in range(k2):
        p = order[c]
        for i in range(k):
            Bu[c, i] = Ct[p, i]
            Bv[c, i] = Zt[p, i]
    _apply_q(Au, tu, k, m, Bu)
    _apply_q(Av, tv, k, n, Bv)
    for i in range(m):
        for c in range(k2):
            out[pos + i * k2 + c] = Bu[c, i]
    o = pos + m * k2
    for j in range(n):
        for c in range(k2):
            out[o + j * k2 + c] = Bv[c, j]
    return k2


@njit(cache=True, nogil=True)
def _chol_upper(G, k, R):
    """``G = R^H R`` with R upper triangular (in R). False when a pivot loses more than
    12 digits of its diagonal (nearly dependent columns): use Householder QR instead."""
    for j in range(k):
        for i in range(k):
            R[j, i] = 0
    for j in range(k):
        s = G[j, j].real
        for l in range(j):
            s -= _abs2(R[l, j])
        if not (s > 1e-12 * G[j, j].real) or s <= 0.0:
            return False
        d = math.sqrt(s)
        R[j, j] = d
        for i in range(j + 1, k):
            acc = G[j, i]
            for l in range(j):
                acc -= np.conj(R[l, j]) * R[l, i]
            R[j, i] = acc / d
    return True


@njit(cache=True, nogil=True)
def _back_solve(R, k, b, x):
    """Solve ``R x = b`` for upper-triangular R (k x k)."""
    for i in range(k - 1, -1, -1):
        acc = b[i]
        for l in range(i + 1, k):
            acc -= R[i, l] * x[l]
        x[i] = acc / R[i, i]


@njit(cache=True, nogil=True, fastmath=_FM)
def _combine(F, X, k, k2, length, out, o):
    """``out[o + c*length + i] = sum_l F[l, i] X[l, c]`` (rows of F are vectors of `length`;
    the result component-major, the packed layout of :mod:`hmat._matvec_numba`)."""
    Bt = out[o:o + k2 * length].reshape((k2, length))
    for c in range(k2):
        for i in range(length):
            Bt[c, i] = 0
        for l in range(k):
            a = X[l, c]
            for i in range(length):
                Bt[c, i] += F[l, i] * a


@njit(cache=True, nogil=True)
def recompress_gram(U, V, Gu, Gv, k, abs_rel, out, pos):
    """Recompression from the Gram matrices of the ACA factors (Cholesky QR).

    The terms are first balanced (``U[l] * d_l``, ``V[l] / d_l`` with equal norms) so both
    factors are moderately conditioned; ``R_u, R_v`` come from Cholesky of the balanced Gram
    matrices, the core ``R_u R_v^H`` is factored by one-sided Jacobi, and the new factors
    are ``U diag(d) R_u^{-1} (W S)_k2`` and ``V diag(1/d) R_v^{-1} Z_k2``: half the flops of
    Householder QR and no reflector application. The factors are written to ``out[pos:]``
    component-major (``U'^T`` (k2 x m) then ``V'^T`` (k2 x n), the packed layout), unlike
    :func:`recompress_into`. Returns k2, or -1 when a Cholesky pivot signals nearly
    dependent columns (the caller then keeps the ACA factors).
    """
    m = U.shape[1]
    n = V.shape[1]
    if k == 0:
        return 0
    w = _wide(out)
    d = np.empty(k)
    for l in range(k):
        gu = Gu[l, l].real
        gv = Gv[l, l].real
        d[l] = math.sqrt(math.sqrt(gv / gu)) if gu > 0.0 and gv > 0.0 else 1.0
    Bu = np.empty((k, k), w.dtype)
    Bv = np.empty((k, k), w.dtype)
    for a in range(k):
        for b in range(k):
            Bu[a, b] = Gu[a, b] * (d[a] * d[b])
            Bv[a, b] = Gv[a, b] / (d[a] * d[b])
    Ru = np.empty((k, k), w.dtype)
    Rv = np.empty((k, k), w.dtype)
    if not _chol_upper(Bu, k, Ru) or not _chol_upper(Bv, k, Rv):
        return -1
    Ct, Zt, sv, order, k2 = _core_rank(Ru, Rv, k, abs_rel)
    if k2 == 0:
        return 0
    Xu = np.empty((k, k2), w.dtype)
    Xv = np.empty((k, k2), w.dtype)
    xb = np.empty(k, w.dtype)
    for c in range(k2):
        p = order[c]
        _back_solve(Ru, k, Ct[p], xb)
        for l in range(k):
            Xu[l, c] = xb[l] * d[l]
        _back_solve(Rv, k, Zt[p], xb)
        for l in range(k):
            Xv[l, c] = xb[l] / d[l]
    _combine(U, Xu, k, k2, m, out, pos)
    _combine(V, Xv, k, k2, n, out, pos + m * k2)
    return k2


@njit(cache=True, nogil=True)
def recompress_factors(U, V, k, abs_rel, proto):
    """Recompressed factors ``(Uo (m, k2), Vo (n, k2), k2)`` of ``sum_l U[l] conj(V[l])^T``."""
    m = U.shape[1]
    n = V.shape[1]
    tmp = np.empty(max(k, 1) * (m + n), proto.dtype)
    k2 = recompress_into(U, V, k, abs_rel, tmp, 0)
    Uo = tmp[:m * k2].copy().reshape((m, k2))
    Vo = tmp[m * k2:(m + n) * k2].copy().reshape((n, k2))
    return Uo, Vo, k2


@njit(cache=True, nogil=True)
def _scale_factors(buf, pos, m, n, k, se):
    """Multiply the factors U' (m x k) and V' (n x k) at ``buf[pos:]`` by ``2^se`` in all
    (``2^(se - se // 2)`` on U', ``2^(se // 2)`` on V': powers of two, exact)."""
    if se == 0:
        return
    fu = math.ldexp(1.0, se - se // 2)
    fv = math.ldexp(1.0, se // 2)
    for t in range(m * k):
        buf[pos + t] *= fu
    o = pos + m * k
    for t in range(n * k):
        buf[o + t] *= fv


@njit(cache=True, nogil=True)
def build_chunk(entry, p, X, Y, r0s, ms, c0s, ns, adm, tol, proto, extra, gx, gy):
    """Build the leaves of one chunk into one packed segment.

    Returns ``(kind, rank, off, buf, pos, evals)``: the leaf table's kind (a
    :class:`hmat.LeafKind` code), rank (0 for a dense leaf) and offset columns (int64,
    shape (q,)); the leaves' data are ``buf[:pos]`` (dense blocks row-major, low-rank
    factors component-major, as packed). ``buf`` has room for about ``extra`` more entries
    (see :func:`append_mirrors`). Pages beyond ``pos`` were never written, so they are
    not resident: the slack costs address space only.
    Admissible leaves use ACA (at 0.1 tol) and recompression (at 0.9 tol) and fall back to
    the exact block when ACA does not converge or low rank does not pay.
    ``gx``, ``gy``: group ids of repeated row/column points (see :func:`aca`).
    """
    q = r0s.size
    kind = np.empty(q, np.int64)
    rank = np.empty(q, np.int64)
    off = np.empty(q, np.int64)
    # Generous capacity (rank 32 per admissible leaf): no regrowth copies, no final trim
    # copy (each copy would also fault in fresh pages, which is slow on a busy machine).
    cap = 1024 + extra
    for t in range(q):
        if adm[t]:
            cap += min(ms[t] * ns[t], 32 * (ms[t] + ns[t]))
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
            U, V, Gu, Gv, k, ev, ok, se = aca(entry, p, X, r0, m, Y, c0, n, 0.1 * tol, 0.5 * tol, kmax, proto, gx, gy)
            evals += ev
            if ok:
                need = k * (m + n)
                if pos + need > buf.size:
                    nb = np.empty(max(2 * buf.size, pos + need), proto.dtype)
                    nb[:pos] = buf[:pos]
                    buf = nb
                k2 = recompress_gram(U, V, Gu, Gv, k, 0.9 * tol, buf, pos)
                if k2 < 0:
                    # nearly dependent ACA terms (rare): keep the ACA factors themselves,
                    # already within tolerance, just not recompressed
                    k2 = k
                    for l in range(k):  # component-major, as packed
                        for i in range(m):
                            buf[pos + l * m + i] = U[l, i]
                    for l in range(k):
                        for j in range(n):
                            buf[pos + m * k + l * n + j] = V[l, j]
                _scale_factors(buf, pos, m, n, k2, se)
                kind[t] = _LOWRANK
                rank[t] = k2
                off[t] = pos
                pos += k2 * (m + n)
            else:
                dense = True
        if dense:
            need = m * n
            if pos + need > buf.size:
                nb = np.empty(max(2 * buf.size, pos + need), proto.dtype)
                nb[:pos] = buf[:pos]
                buf = nb
            kind[t] = _DENSE
            rank[t] = 0
            off[t] = pos
            eval_block(entry, p, X[r0:r0 + m], Y[c0:c0 + n], buf[pos:pos + need].reshape((m, n)))
            evals += need
            pos += need
    return kind, rank, off, buf, pos, evals


@njit(cache=True, nogil=True)
def sample_entries(r0, m, c0, n, kind, rank, off, buf, pi, pj, out):
    """Entries at permuted positions ``(pi[s], pj[s])`` of a packed segment, added into out.

    Samples are bucketed by row once (counting sort), so each leaf only visits the samples
    in its row range: O(S + rows + leaves + hits) instead of O(leaves * S).
    """
    rmin = r0.min() if r0.size else 0
    rmax = (r0 + m).max() if r0.size else 0
    cnt = np.zeros(rmax - rmin + 1, np.int64)
    for s in range(pi.size):
        if rmin <= pi[s] < rmax:
            cnt[pi[s] - rmin + 1] += 1
    for t in range(1, cnt.size):
        cnt[t] += cnt[t - 1]
    order = np.empty(cnt[-1], np.int64)
    fill = cnt.copy()
    for s in range(pi.size):
        if rmin <= pi[s] < rmax:
            order[fill[pi[s] - rmin]] = s
            fill[pi[s] - rmin] += 1
    for q in range(r0.size):
        lo = cnt[r0[q] - rmin]
        hi = cnt[r0[q] + m[q] - rmin]
        for t in range(lo, hi):
            s = order[t]
            i = pi[s] - r0[q]
            j = pj[s] - c0[q]
            if j < 0 or j >= n[q]:
                continue
            if kind[q] == _DENSE:
                out[s] += buf[off[q] + i * n[q] + j]
            else:
                k = rank[q]
                acc = out[s] * 0  # products in out's precision (buf may be single precision)
                ou = off[q] + i  # factors component-major (see hmat._matvec_numba)
                ov = off[q] + m[q] * k + j
                for l in range(k):
                    acc += (buf[ou + l * m[q]] + acc * 0) * np.conj(buf[ov + l * n[q]])
                out[s] += acc


@njit(cache=True, nogil=True)
def eval_pairs(entry, p, X, Y, ii, jj, out):
    """``out[s] = k(X[ii[s]], Y[jj[s]])``."""
    for s in range(ii.size):
        out[s] = _cast(out, entry(X, ii[s], Y, jj[s], p))


#: Build each pair of mirrored leaves of a symmetric kernel matrix once (``K(x, y) = K(y, x)``
#: with the same row and column points): the second leaf is the transpose of the first.
#: The benchmarks switch it off to report the cost of a full build.
SYMMETRIC_BUILD = True


@njit(cache=True, nogil=True)
def append_mirrors(buf, pos, m, n, src, soff, skind, srank, bufs):
    """Write mirrored leaves after ``buf[:pos]``: leaf ``q`` (``m[q] x n[q]``) is the
    transpose of the built ``n[q] x m[q]`` leaf at ``bufs[src[q]][soff[q]:]`` (kind
    ``skind[q]``, rank ``srank[q]``; the mirror has the same kind and rank): dense blocks transposed, low-rank ``U V^H`` becoming
    ``conj(V) conj(U)^H`` (the symmetric, not Hermitian, transpose). Grows ``buf`` only if
    its capacity is short. Returns ``(buf, off, end)``.
    """
    need = 0
    for q in range(m.size):
        need += m[q] * n[q] if skind[q] == _DENSE else srank[q] * (m[q] + n[q])
    if pos + need > buf.size:
        nb = np.empty(pos + need, buf.dtype)
        nb[:pos] = buf[:pos]
        buf = nb
    off = np.empty(m.size, np.int64)
    o = pos
    for q in range(m.size):
        mq = m[q]
        nq = n[q]
        k = srank[q]
        so = soff[q]
        b = bufs[src[q]]
        off[q] = o
        if skind[q] == _DENSE:
            dst = buf[o:o + mq * nq].reshape((mq, nq))
            sb = b[so:so + mq * nq].reshape((nq, mq))
            for i in range(mq):
                for j in range(nq):
                    dst[i, j] = sb[j, i]
            o += mq * nq
        else:
            u = b[so + nq * k:so + (nq + mq) * k]
            v = b[so:so + nq * k]
            d = buf[o:o + (mq + nq) * k]
            for t in range(mq * k):
                d[t] = np.conj(u[t])
            for t in range(nq * k):
                d[mq * k + t] = np.conj(v[t])
            o += (mq + nq) * k
    return buf, off, o
