"""Recompression of every low-rank leaf of an H-matrix."""

from __future__ import annotations

import numpy as np

from ._validate import check_tol
from .hblock import HBlock
from .lowrank import LowRank
from .svd import recompress

__all__ = ["truncate"]


def truncate(H, tol):
    """Recompress each low-rank leaf of ``H`` (QR of the factors, SVD of the core).

    Parameters
    ----------
    H : HBlock
    tol : float
        Blockwise relative Frobenius tolerance, 0 < tol < 1; every leaf ``L`` becomes
        ``L'`` with ``||L - L'||_F <= tol ||L||_F``, hence ``||H - H'||_F <= tol ||H||_F``.

    Returns
    -------
    HBlock
        A new operator; ``H`` is unchanged. Its ``error_estimate`` is the achieved relative
        error of this step, ``sqrt(sum err_b^2) / ||H||_F``.
    """
    if not isinstance(H, HBlock):
        raise TypeError(f"H must be an HBlock, got {type(H).__name__}")
    tol = check_tol(tol)
    ops, err2, norm2 = [], 0.0, 0.0
    for lf in H.leaves():
        op = lf.op
        if isinstance(op, LowRank):
            U, V, err = recompress(op.U, op.V, tol=tol)
            ops.append(LowRank._trusted(U.astype(op.dtype), V.astype(op.dtype)))
            err2 += err * err
            norm2 += _lowrank_norm2(op)
        else:
            ops.append(op)
            norm2 += float(np.linalg.norm(op.array) ** 2)
    out = H.replace_leaves(ops)
    out.error_estimate = float(np.sqrt(err2 / norm2)) if norm2 > 0 else 0.0
    out._kernel_evals = H._kernel_evals
    return out


def _lowrank_norm2(op):
    if op.rank == 0:
        return 0.0
    G = (op.U.conj().T @ op.U) * (op.V.conj().T @ op.V).T
    return float(abs(G.sum().real))
