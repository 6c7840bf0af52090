"""Error metrics of a trained model against a reference (built-in or user data).

All metrics take numpy arrays ``pred`` and ``ref`` of equal length (float64) and are
scale-safe: norms are computed on the vectors scaled by a power of two near their largest
entry, so entries near the overflow or underflow limits of float64 give the correct ratio
(scaling by a power of two is exact, so ordinary inputs give the unscaled bits).
"""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["METRICS", "relative_l2", "relative_linf", "max_abs_error", "mse", "errors",
           "evaluate", "load_reference"]


def _pair(pred, ref):
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if p.shape != r.shape or p.size == 0:
        raise ValueError(f"pred and ref must have the same non-zero length, got {p.size} and "
                         f"{r.size}")
    return p, r


def _norm2(v):
    """Euclidean norm without overflow/underflow of the squares."""
    s = float(np.max(np.abs(v))) if v.size else 0.0
    if s == 0.0 or not math.isfinite(s):
        return s if s == 0.0 else float(np.linalg.norm(v))
    e = math.frexp(s)[1]
    return math.ldexp(float(np.linalg.norm(np.ldexp(v, -e))), e)


def _ratio(num, den):
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def relative_l2(pred, ref):
    """``||pred - ref||_2 / ||ref||_2`` (0 if both are zero, inf if only ``ref`` is)."""
    p, r = _pair(pred, ref)
    return _ratio(_norm2(p - r), _norm2(r))


def relative_linf(pred, ref):
    """``max|pred - ref| / max|ref|``."""
    p, r = _pair(pred, ref)
    return _ratio(float(np.max(np.abs(p - r))), float(np.max(np.abs(r))))


def max_abs_error(pred, ref):
    """``max_k |pred_k - ref_k|``."""
    p, r = _pair(pred, ref)
    return float(np.max(np.abs(p - r)))


def mse(pred, ref):
    """Mean squared error ``mean_k (pred_k - ref_k)^2`` (inf only if the true value overflows)."""
    p, r = _pair(pred, ref)
    n = _norm2(p - r)
    return n * n / p.size


METRICS = {"l2": relative_l2, "linf": relative_linf, "max_abs": max_abs_error, "mse": mse}


def errors(pred, ref, metrics=None):
    """Several metrics at once.

    Parameters
    ----------
    pred, ref : array_like, shape (n,) or (n, 1)
    metrics : sequence of str, optional
        Keys of :data:`METRICS` (``"l2"``, ``"linf"``, ``"max_abs"``, ``"mse"``); default all.

    Returns
    -------
    dict of str -> float
    """
    names = list(METRICS) if metrics is None else list(metrics)
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ValueError(f"metrics: unknown {bad}; choose from {sorted(METRICS)}")
    return {m: METRICS[m](pred, ref) for m in names}


def load_reference(path):
    """Reference data from an ``.npz`` file.

    Two layouts are read: ``x`` (n, d) with ``y`` (n,) or (n, 1) (point data), and
    DeepXDE's space-time grid datasets (e.g. ``Burgers.npz``): ``x`` (nx, 1), ``t``
    (nt, 1), ``usol`` (nx, nt), returned as points ``(x, t)``.

    Returns
    -------
    x : numpy.ndarray, shape (n, d), float64
    y : numpy.ndarray, shape (n,), float64

    Raises
    ------
    ValueError
        Missing file, other keys, mismatched shapes, non-finite values.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"path: cannot read reference data from {path!r} ({e})") from None
    if "usol" in data and "x" in data and "t" in data:
        xs = data["x"].astype(np.float64).reshape(-1)
        ts = data["t"].astype(np.float64).reshape(-1)
        u = data["usol"].astype(np.float64)
        if u.shape != (xs.size, ts.size):
            raise ValueError(f"path: usol must have shape (len(x), len(t)) = "
                             f"({xs.size}, {ts.size}), got {u.shape}")
        X, T = np.meshgrid(xs, ts, indexing="ij")
        x, y = np.stack([X.ravel(), T.ravel()], axis=1), u.ravel()
    elif "x" in data and "y" in data:
        x = data["x"].astype(np.float64)
        x = x[:, None] if x.ndim == 1 else x
        y = data["y"].astype(np.float64)
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(f"path: need x (n, d) and y (n,) or (n, 1), got {x.shape} and "
                             f"{data['y'].shape}")
    else:
        raise ValueError(f"path: {path!r} must hold arrays x, y (or x, t, usol); found "
                         f"{sorted(data)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"path: {path!r} holds non-finite values")
    return x, y


def evaluate(model, problem=None, data=None, metrics=None):
    """Metrics of ``model`` against a reference.

    Parameters
    ----------
    model : torch.nn.Module
    problem : Problem or str, optional
        Its test grid and reference are used when ``data`` is not given.
    data : (x, y) arrays or path to an ``.npz`` (:func:`load_reference`), optional
    metrics : sequence of str, optional
        See :func:`errors`.

    Returns
    -------
    dict of str -> float
    """
    from .models import predict
    from .problems import get_problem

    if data is None:
        if problem is None:
            raise ValueError("give problem or data")
        problem = get_problem(problem)
        if not problem.has_reference():
            raise ValueError(f"problem: {problem!r} has no reference; give data")
        x, y = problem.test_grid()
    elif isinstance(data, (str, os.PathLike)):
        x, y = load_reference(data)
    else:
        x, y = data
    return errors(predict(model, x), y, metrics)
