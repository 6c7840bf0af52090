"""Scale-safe norms (private).

Squaring a float64 beyond ~1e154 overflows and below ~1e-154 underflows, so any norm,
budget or singular-value tail that squares raw values breaks for matrices at those scales.
These helpers scale by a power of two first (exact) wherever values leave a safe range,
and cost nothing extra when they are inside it.
"""

from __future__ import annotations

import math

import numpy as np

_LO, _HI = 1e-100, 1e100


def pow2_exponent(x):
    """``e`` with ``x * 2^-e`` of order one (0 when ``x`` is 0, non-finite, or already safe).

    ``-1000 <= e <= 1024``: ``2^-e`` and ``2^e`` (and their halves) are finite.
    """
    x = float(x)
    if x == 0.0 or not math.isfinite(x) or _LO < x < _HI:
        return 0
    # at least -1000, so that 2^-e stays finite for subnormal x (x 2^1000 is then still
    # far from overflow, and its square from underflow)
    return max(math.frexp(x)[1], -1000)


def fro(a):
    """Frobenius (2-) norm of an array, without overflow or underflow of the squares.

    Parameters
    ----------
    a : ndarray, any shape, float or complex

    Returns
    -------
    float
    """
    a = np.asarray(a)
    if a.size == 0:
        return 0.0
    big = float(np.max(np.abs(a)))
    e = pow2_exponent(big)
    if e == 0:
        return float(np.linalg.norm(a.reshape(-1)))
    return ldexp_inf(float(np.linalg.norm(a.reshape(-1) * math.ldexp(1.0, -e))), e)


def ldexp_inf(x, e):
    """``x 2^e``, inf where that exceeds the float range (e.g. a norm of entries near 1e308)."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.inf


def hypot_all(values):
    """``sqrt(sum(values**2))`` of non-negative (or real) values, scale-safe.

    Parameters
    ----------
    values : array_like, shape (p,), float

    Returns
    -------
    float
    """
    return fro(np.asarray(values, dtype=np.float64))


def tail_norms(s):
    """``t[k] = ||s[k:]||_2`` for a 1-D array ``s`` (length p + 1 result, ``t[p] = 0``).

    Parameters
    ----------
    s : array_like, shape (p,), float

    Returns
    -------
    ndarray, shape (p + 1,), float64
    """
    s = np.abs(np.asarray(s, dtype=np.float64))
    out = np.zeros(s.size + 1)
    if s.size == 0:
        return out
    e = pow2_exponent(float(s.max()))
    f = math.ldexp(1.0, -e)
    out[:-1] = np.sqrt(np.cumsum(((s * f) ** 2)[::-1]))[::-1]
    with np.errstate(over="ignore"):
        return np.ldexp(out, e)  # 2^e itself may not be representable (e = 1024)


def lowrank_fro(U, V):
    """``||U V^H||_F`` from the triangular factors of QR decompositions (accurate also when
    the columns nearly cancel, unlike the Gram-matrix formula), scale-safe.

    Parameters
    ----------
    U : ndarray, shape (m, k)
    V : ndarray, shape (n, k)

    Returns
    -------
    float
    """
    k = U.shape[1]
    if k == 0 or U.shape[0] == 0 or V.shape[0] == 0:
        return 0.0
    eu = pow2_exponent(float(np.max(np.abs(U))))
    ev = pow2_exponent(float(np.max(np.abs(V))))
    wide = np.result_type(U.dtype, V.dtype, np.float64)
    Us = U.astype(wide) * math.ldexp(1.0, -eu)
    Vs = V.astype(wide) * math.ldexp(1.0, -ev)
    Ru = np.linalg.qr(Us, mode="r")
    Rv = np.linalg.qr(Vs, mode="r")
    return ldexp_inf(fro(Ru @ Rv.conj().T), eu + ev)
