"""Compiled dense kernels for the leaves of H-factorizations (private)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _getrf_nopiv(a):  # pragma: no cover - compiled
    """In-place LU without pivoting (unit lower L below the diagonal, U on and above).

    Returns -1 on success, else the index of the first zero or non-finite pivot.
    """
    n = a.shape[0]
    for k in range(n):
        p = a[k, k]
        if p == 0 or not np.isfinite(abs(p)):
            return k
        inv = 1.0 / p
        for i in range(k + 1, n):
            a[i, k] *= inv
        for i in range(k + 1, n):
            lik = a[i, k]
            if lik != 0:
                for j in range(k + 1, n):
                    a[i, j] -= lik * a[k, j]
    return -1


def getrf_nopiv(a):
    """Unpivoted LU of a square C-contiguous array in place; returns the failing pivot or -1."""
    if not a.flags.c_contiguous:
        b = np.ascontiguousarray(a)
        k = int(_getrf_nopiv(b))
        a[...] = b
        return k
    return int(_getrf_nopiv(a))
