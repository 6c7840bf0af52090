"""Recompression of every low-rank leaf of an H-matrix."""

from __future__ import annotations

import math

import numpy as np

from ._norms import fro, hypot_all
from ._validate import check_tol
from .hblock import HBlock
from .lowrank import LowRank, trusted_lowrank
from .svd import recompress

__all__ = ["truncate", "check_tol_for_dtype", "MIN_TOL_EPS"]

#: Smallest tolerance, in machine epsilons of the working dtype, that recompression can
#: meet: below it the rounding of the factors alone exceeds the budget.
MIN_TOL_EPS = 32


def check_tol_for_dtype(tol, dtype, name="tol"):
    """``tol`` (already in (0, 1)) if the dtype can meet it, else a ValueError naming it.

    Parameters
    ----------
    tol : float
    dtype : numpy dtype
        float32, float64, complex64 or complex128.
    """
    eps = float(np.finfo(np.dtype(dtype)).eps)
    if tol < MIN_TOL_EPS * eps:
        raise ValueError(
            f"{name}={tol:g} is below what {np.dtype(dtype)} arithmetic can meet "
            f"(rounding alone is about eps = {eps:.3g}); use {name} >= {MIN_TOL_EPS * eps:.3g}"
        )
    return tol


def truncate(H, tol):
    """Recompress each low-rank leaf of ``H`` (QR of the factors, SVD of the core).

    Parameters
    ----------
    H : HBlock
    tol : float
        Blockwise relative Frobenius tolerance, ``MIN_TOL_EPS * eps(H.dtype) <= tol < 1``;
        every leaf ``L`` becomes ``L'`` with ``||L - L'||_F <= tol ||L||_F``, hence
        ``||H - H'||_F <= tol ||H||_F``.

    Returns
    -------
    HBlock
        A new operator; ``H`` is unchanged. Its ``error_estimate`` is the achieved relative
        error of this step, ``sqrt(sum err_b^2) / ||H||_F`` (norms computed scale-safely).

    Raises
    ------
    ValueError
        ``tol`` outside (0, 1) or below what ``H.dtype`` can meet.
    """
    if not isinstance(H, HBlock):
        raise TypeError(f"H must be an HBlock, got {type(H).__name__}")
    tol = check_tol_for_dtype(check_tol(tol), H.dtype)
    leaves = [lf.op for lf in H.leaves()]
    # norms are measured on 2^-s H, s > 0 only where ||H||_F could exceed the float range
    s = max(0, max(_log2_bound(op) for op in leaves) - 1000)
    f = math.ldexp(1.0, -s)
    ops, errs, norms = [], [], []
    for op in leaves:
        if isinstance(op, LowRank):
            U, V, err, nrm = recompress(op.U * f if s else op.U, op.V, tol=tol, return_norm=True)
            U = U * math.ldexp(1.0, s) if s else U
            ops.append(trusted_lowrank(U.astype(op.dtype), V.astype(op.dtype)))
            errs.append(err)
            norms.append(nrm)
        else:
            ops.append(op)
            norms.append(fro(op.array * f if s else op.array))
    norm = hypot_all(norms)
    est = hypot_all(errs) / norm if norm > 0 else 0.0
    return H.replace_leaves(ops, H.provenance.replace(tol=tol, error_estimate=est))


def _log2_bound(op):
    """An exponent ``e`` with ``||op||_F <= 2^e`` (Dense or LowRank; without overflow)."""
    if isinstance(op, LowRank):
        if op.rank == 0 or op.U.size == 0 or op.V.size == 0:
            return 0
        mu, mv = float(np.max(np.abs(op.U))), float(np.max(np.abs(op.V)))
        if mu == 0.0 or mv == 0.0:
            return 0
        m, n = op.shape
        return math.frexp(mu)[1] + math.frexp(mv)[1] + (op.rank * m * n).bit_length()
    a = op.array
    big = float(np.max(np.abs(a))) if a.size else 0.0
    return math.frexp(big)[1] + a.size.bit_length() if big > 0 else 0
