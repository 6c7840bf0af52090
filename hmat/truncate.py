"""Recompression of every low-rank leaf of an H-matrix."""

from __future__ import annotations

import numpy as np

from ._norms import fro, hypot_all
from ._validate import check_tol
from .hblock import HBlock
from .lowrank import LowRank
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
    ops, errs, norms = [], [], []
    for lf in H.leaves():
        op = lf.op
        if isinstance(op, LowRank):
            U, V, err, nrm = recompress(op.U, op.V, tol=tol, return_norm=True)
            ops.append(LowRank._trusted(U.astype(op.dtype), V.astype(op.dtype)))
            errs.append(err)
            norms.append(nrm)
        else:
            ops.append(op)
            norms.append(fro(op.array))
    out = H.replace_leaves(ops)
    norm = hypot_all(norms)
    out.error_estimate = hypot_all(errs) / norm if norm > 0 else 0.0
    out._kernel_evals = H._kernel_evals
    return out
