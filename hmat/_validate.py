"""Argument checks shared by the public API: one clear exception naming the argument."""

from __future__ import annotations

import numbers

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.complex64), np.dtype(np.complex128))


def check_dtype(dtype, name="dtype"):
    """Return ``np.dtype(dtype)`` if it is float32/float64/complex64/complex128."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be a numpy dtype, got {dtype!r}") from exc
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must be one of float32, float64, complex64, complex128, got {dt}"
        )
    return dt


def check_finite_array(a, name, *, ndim=None, dtype=None, allow_empty=False):
    """Return ``a`` as an array (numpy or cupy) after checking ndim, dtype and finiteness.

    Integer and boolean arrays are promoted to float64; other dtypes must be supported.
    """
    xp = np
    if type(a).__module__.startswith("cupy"):
        import cupy as xp  # noqa: F811
    a = xp.asarray(a)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    if dtype is not None:
        a = a.astype(check_dtype(dtype, "dtype"), copy=False)
    else:
        check_dtype(a.dtype, f"{name}.dtype")
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def check_tol(tol, name="tol"):
    """Relative tolerance: a real number with 0 < tol < 1."""
    if not isinstance(tol, numbers.Real) or isinstance(tol, bool):
        raise TypeError(f"{name} must be a real number, got {tol!r}")
    tol = float(tol)
    if not (0.0 < tol < 1.0):
        raise ValueError(f"{name} must satisfy 0 < {name} < 1, got {tol!r}")
    return tol


def check_positive(value, name, *, integer=False, minimum=None):
    """A positive real (or integer >= ``minimum``)."""
    if integer:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {value!r}")
        value = int(value)
        lo = 1 if minimum is None else minimum
        if value < lo:
            raise ValueError(f"{name} must be >= {lo}, got {value}")
        return value
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")
    return value
