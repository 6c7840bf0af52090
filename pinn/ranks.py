"""The rank-for-tolerance rule of :mod:`hmat` for torch tensors (any device, any float dtype).

One rule decides every truncation rank of the library: keep the fewest leading singular
values whose dropped tail meets the Frobenius tolerance, ``k`` the smallest index with
``||s[k:]||_2 <= tol * norm`` (:func:`hmat.linalg.rank_for_tol`). pinn truncates torch
spectra (dynamic recompression and merges, ``LowRankLinear.from_linear``, the post-hoc
pruning amount); these functions hand the spectrum to hmat's rule instead of restating it,
so the ranks are hmat's by construction. The spectrum is copied to the host as float64
(``tolist``: works for CUDA tensors and for tensors that require grad; exact for float32 and
float64); the rank is a host integer anyway, so this costs no extra synchronisation.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from hmat.linalg import rank_for_tol as _hmat_rank_for_tol

__all__ = ["rank_for_error", "rank_for_tol"]


def _host_spectrum(s):
    if isinstance(s, torch.Tensor):
        if s.is_complex() or not s.dtype.is_floating_point:
            raise TypeError(f"s must be a real floating tensor, got {s.dtype}")
        if s.dim() != 1:
            raise ValueError(f"s must be 1-D, got shape {tuple(s.shape)}")
        return np.asarray(s.detach().to(torch.float64).tolist(), dtype=np.float64).reshape(-1)
    a = np.asarray(s, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"s must be 1-D, got shape {a.shape}")
    return a


def _check_bound(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def rank_for_tol(s, tol):
    """Smallest ``k`` with ``||s[k:]||_2 <= tol ||s||_2``: :func:`hmat.linalg.rank_for_tol`.

    Parameters
    ----------
    s : torch.Tensor or array_like, shape (p,), real float
        Singular values in descending order (any device; ``requires_grad`` allowed).
    tol : float >= 0
        Relative Frobenius error.

    Returns
    -------
    int
        In ``[0, p]``.
    """
    return int(_hmat_rank_for_tol(_host_spectrum(s), _check_bound(tol, "tol")))


def rank_for_error(s, abs_err):
    """Smallest ``k`` with ``||s[k:]||_2 <= abs_err``: :func:`hmat.linalg.rank_for_tol` with
    ``norm=1``.

    Parameters
    ----------
    s : torch.Tensor or array_like, shape (p,), real float, descending
    abs_err : float >= 0
        Allowed Frobenius error (absolute).

    Returns
    -------
    int
        In ``[0, p]``.
    """
    return int(_hmat_rank_for_tol(_host_spectrum(s), _check_bound(abs_err, "abs_err"), norm=1.0))
