"""Adaptive cross approximation (ACA) with partial pivoting, for any kernel.

The built-in kernels run the same algorithm in compiled code (``hmat._aca_numba``); this
module serves user kernels, which are evaluated a row or a column at a time through
``kernel.block``.
"""

from __future__ import annotations

import math

import numpy as np

from ._aca_numba import twin_ids
from ._validate import check_positive, check_tol
from .lowrank import LowRank, trusted_lowrank
from .svd import recompress

__all__ = ["ACA"]


def twin_groups(P):
    """Group ids of repeated points: ``g[i] == g[j]`` iff ``P[i]`` and ``P[j]`` have the same
    coordinates, bit for bit (``-0.0`` and ``0.0`` count as different: such points are then
    merely not grouped, which costs ACA a step but never accuracy).

    Parameters
    ----------
    P : ndarray, shape (n, d), float64

    Returns
    -------
    ndarray, shape (n,) int64, or shape (0,) when all points are distinct.
    """
    n = P.shape[0]
    if n < 2:
        return np.zeros(0, np.int64)
    # equal coordinates have equal bits (but for -0.0 and 0.0: then merely not grouped)
    bits = np.ascontiguousarray(P, dtype=np.float64).reshape(n, -1).view(np.int64)
    g, dup = twin_ids(bits)
    return g if dup else np.zeros(0, np.int64)


def _scale_exponent(best):
    """0 when squares of values of magnitude ``best`` are safe, else the exponent ``e`` of
    ``best = f 2^e``: rows and columns are then multiplied by ``2^-e`` (exactly)."""
    if 1e-100 < best < 1e100:
        return 0
    return max(math.frexp(best)[1], -1000)  # 2^-e finite also for subnormal values


class ACA:
    """Partial-pivoting ACA with residual checks on random rows/columns, then recompression.

    A :class:`~hmat.Compressor`: ``ACA().compress(source, rows, cols, tol)``.

    Parameters
    ----------
    tol : float
        Relative Frobenius tolerance per block (0 < tol < 1) of the direct call below;
        :meth:`compress` uses the ``tol`` it is given. With ``recompress`` ACA runs at
        ``0.1 tol`` and is recompressed (QR + SVD) to ``0.9 tol``; without, it runs at
        ``0.5 tol`` and returns the cross factors as they are.
    rank : int, optional
        Rank cap. Without it, ACA stops (returns None) once low rank stops paying:
        ``k (m + n) >= m n``.
    seed : int
        Seed of the random check rows/columns.
    recompress : bool
        Recompress the cross factors (default; the compiled build of the built-in kernels
        runs exactly this).

    Calling ``ACA(tol)(kernel, x, y)`` returns ``(LowRank or None, evaluations)``; None
    means ACA did not converge or low rank does not pay, and the caller should store the
    exact block. Known failure modes (zero rows, zero or cancelling sub-blocks) are caught by
    the residual checks on random rows and columns, which restart the pivoting there.
    Repeated points give equal rows (columns): once one of them is a pivot, all are marked
    used, so neither the pivoting nor the checks stop early on their zero residuals. Values
    are scaled by a power of two fixed by the first non-zero row where their squares would
    leave the float range (kernels at 1e-300 ... 1e300).
    """

    def __init__(self, tol=1e-6, rank=None, seed=0, recompress=True):
        self.tol = check_tol(tol)
        self.rank = None if rank is None else check_positive(rank, "rank", integer=True)
        self.seed = int(seed)
        self.recompress = bool(recompress)

    def __repr__(self):
        extra = "" if self.recompress else ", recompress=False"
        return f"ACA(tol={self.tol}, rank={self.rank}{extra})"

    @property
    def name(self):
        return "ACA" if self.recompress else "ACA (no recompression)"

    def compress(self, source, rows, cols, tol):
        """Low-rank approximation of ``source.block(rows, cols)``, or None (store it exactly).

        Parameters
        ----------
        source : BlockSource
            See :class:`~hmat.Compressor`; rows and columns are fetched one at a time.
        rows, cols : range
            Block indices in ``source`` (permuted coordinates).
        tol : float
            Relative Frobenius tolerance of the block, 0 < tol < 1.

        Returns
        -------
        LowRank or None
        """
        tol = check_tol(tol)
        m, n = len(rows), len(cols)
        groups = getattr(source, "twin_groups", None)
        gx, gy = groups(rows, cols) if groups is not None else (np.zeros(0, np.int64),) * 2
        op, _ = self._run(lambda i: source.block(rows[i:i + 1], cols), lambda j: source.block(rows, cols[j:j + 1]),
                          m, n, np.dtype(source.dtype), gx, gy, tol)
        return op

    def __call__(self, kernel, x, y):
        m, n = x.shape[0], y.shape[0]
        dtype = np.dtype(getattr(kernel, "dtype", np.float64))
        # repeated points: equal rows (columns); once one is a pivot all have zero residual
        gx, gy = twin_groups(np.asarray(x).reshape(m, -1)), twin_groups(np.asarray(y).reshape(n, -1))
        return self._run(lambda i: kernel.block(x[i:i + 1], y), lambda j: kernel.block(x, y[j:j + 1]),
                         m, n, dtype, gx, gy, self.tol)

    def _run(self, get_row, get_col, m, n, dtype, gx, gy, block_tol):
        """ACA on a block given by its row and column getters; ``(LowRank or None, evaluations)``."""
        kmax = (m * n) // (m + n) if self.rank is None else min(self.rank, m, n)
        if self.recompress:
            tol, tol_check = 0.1 * block_tol, 0.5 * block_tol
        else:
            tol, tol_check = 0.5 * block_tol, block_tol
        rng = np.random.default_rng(self.seed + 7919 * m + n)
        us, vs = [], []
        used_r = np.zeros(m, bool)
        used_c = np.zeros(n, bool)
        st = [None]  # exponent e of the 2^-e scaling of all values (set by the first non-zero row)
        norm2, evals, zero_rows = 0.0, 0, 0
        i = 0
        for _ in range(4 * (m + n) + 16):
            verify = i < 0
            if not verify:
                row = self._resid_row(get_row, i, us, vs, dtype, st)
                evals += n
                used_r[i] = True
                if gx.size:
                    used_r[gx == gx[i]] = True
                free = np.flatnonzero(~used_c)
                jp = free[np.argmax(np.abs(row[free]))] if free.size else -1
                if jp < 0 or abs(row[jp]) <= 1e-300 or abs(row[jp]) ** 2 * m * n <= (1e-3 * tol) ** 2 * norm2:
                    zero_rows += 1
                    rest = np.flatnonzero(~used_r)
                    if zero_rows >= 3 or jp < 0 or rest.size == 0:
                        verify = True
                    else:
                        i = int(rng.choice(rest))
                        continue
                else:
                    zero_rows = 0
                    if len(us) >= kmax:
                        return None, evals
                    col = self._resid_col(get_col, jp, us, vs, dtype, st)
                    evals += m
                    used_c[jp] = True
                    if gy.size:
                        used_c[gy == gy[jp]] = True
                    u, v = col / row[jp], row.conj()
                    cross = sum(float(((ul.conj() @ u) * (v.conj() @ vl)).real) for ul, vl in zip(us, vs))
                    nu, nv = float(np.vdot(u, u).real), float(np.vdot(v, v).real)
                    norm2 = max(norm2 + 2 * cross + nu * nv, 0.0)
                    if not norm2 < np.inf:  # entries spanning more than the float range
                        return None, evals
                    us.append(u)
                    vs.append(v)
                    rest = np.flatnonzero(~used_r)
                    i = int(rest[np.argmax(np.abs(u[rest]))]) if rest.size else -1
                    if nu * nv > tol * tol * norm2 and i >= 0:
                        continue
            # verification on a random unused row and column
            bad = -1
            rest_r, rest_c = np.flatnonzero(~used_r), np.flatnonzero(~used_c)
            if rest_r.size:
                ir = int(rng.choice(rest_r))
                r = self._resid_row(get_row, ir, us, vs, dtype, st)
                evals += n
                if np.vdot(r, r).real * m > tol_check**2 * norm2:
                    bad = ir
            if bad < 0 and rest_c.size:
                jc = int(rng.choice(rest_c))
                c = self._resid_col(get_col, jc, us, vs, dtype, st)
                evals += m
                if np.vdot(c, c).real * n > tol_check**2 * norm2:
                    cand = np.flatnonzero(~used_r)
                    bad = int(cand[np.argmax(np.abs(c[cand]))]) if cand.size else -1
            if bad < 0:
                break
            i, zero_rows = bad, 0
        else:
            return None, evals
        k = len(us)
        U = np.array(us, dtype=dtype).T.reshape(m, k)
        V = np.array(vs, dtype=dtype).T.reshape(n, k)
        if self.recompress:
            U, V, _ = recompress(U, V, tol=0.9 * block_tol, rank=self.rank)
        if U.shape[1] * (m + n) >= m * n and self.rank is None:
            return None, evals
        e = 0 if st[0] is None else st[0]
        # undo the 2^-e scaling, split over both factors (exact powers of two)
        U = U * math.ldexp(1.0, e - e // 2)
        V = V * math.ldexp(1.0, e // 2)
        if not (np.isfinite(U).all() and np.isfinite(V).all()):
            return None, evals
        return trusted_lowrank(U.astype(dtype), V.astype(dtype)), evals

    @staticmethod
    def _scaled(vals, st):
        """Values times ``2^-e``, with ``e`` fixed by the first non-zero row (scale safety)."""
        if st[0] is None:
            best = float(np.max(np.abs(vals))) if vals.size else 0.0
            if best == 0.0:
                return vals
            st[0] = _scale_exponent(best)
        if st[0]:
            vals *= math.ldexp(1.0, -st[0])
        return vals

    def _resid_row(self, get_row, i, us, vs, dtype, st):
        row = self._scaled(np.array(get_row(i), dtype=dtype).reshape(-1), st)
        for u, v in zip(us, vs):
            row -= u[i] * v.conj()
        return row

    def _resid_col(self, get_col, j, us, vs, dtype, st):
        col = self._scaled(np.array(get_col(j), dtype=dtype).reshape(-1), st)
        for u, v in zip(us, vs):
            col -= u * np.conj(v[j])
        return col
