"""Argument checks shared by the arithmetic functions (private)."""

from __future__ import annotations

import numbers

import numpy as np

from .._validate import check_tol
from ..hblock import HBlock


def check_hblock(H, name):
    if not isinstance(H, HBlock):
        raise TypeError(f"{name} must be an hmat.HBlock, got {type(H).__name__}")
    return H


def check_square(H, name):
    if H.shape[0] != H.shape[1]:
        raise ValueError(f"{name} must be square, got shape {H.shape}")


def tol_arg(tol, name="tol"):
    """``0 < tol < 1`` (a clear TypeError/ValueError naming the argument otherwise)."""
    return check_tol(tol, name)


def perm_or_identity(p, n):
    return np.arange(n, dtype=np.int64) if p is None else p


def same_perm(p, q, n):
    if p is None and q is None:
        return True
    return np.array_equal(perm_or_identity(p, n), perm_or_identity(q, n))


def check_scalar(x, name):
    if not isinstance(x, numbers.Number) or isinstance(x, bool) or not np.isfinite(x):
        raise TypeError(f"{name} must be a finite number, got {x!r}")
    return x


try:  # BLAS threads only slow down the many small products of formatted arithmetic
    from threadpoolctl import ThreadpoolController as _Controller

    _controller = _Controller()
except Exception:  # pragma: no cover - threadpoolctl missing
    _controller = None


def blas_single_thread():
    """Context manager limiting BLAS/LAPACK to one thread (a no-op without threadpoolctl).

    The blocks of an H-matrix are small (leaf size x rank); a multi-threaded BLAS spends more
    time synchronising than computing on them, dramatically so on a loaded machine.
    """
    import contextlib

    if _controller is None:
        return contextlib.nullcontext()
    return _controller.limit(limits=1, user_api="blas")
