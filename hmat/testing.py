"""Checks a user can run on their own linear operators (as ``pylops.utils.dottest``).

:func:`dottest` checks the adjoint identity ``<A x, y> = <x, A^H y>``;
:func:`check_operator` checks every law of the LinearOperator protocol that scipy's solvers
and hmat rely on (shapes and dtypes of results, the adjoint identity for ``A``, ``A.H`` and
``A.T``, ``matmat`` = stacked ``matvec``, linearity, agreement with an independent dense
reference when one is given, and shape errors). Both raise :class:`AssertionError` naming the
law that failed.

Tolerances scale with ``||A||_F ||x|| ||y||`` (or ``||A||_F ||x||``), never with the result
under test. When no reference is given, ``||A||_F`` is estimated from the operator itself:
for Gaussian ``x``, ``E ||A x||^2 = ||A||_F^2``, so a few probes estimate it to a factor of
about 2 — enough for a rounding tolerance. All norms are scale-safe (entries from 1e-300 to
1e300 are fine).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse.linalg as spla

__all__ = ["dottest", "check_operator", "frobenius_estimate"]

_SUPPORTED = (np.float32, np.float64, np.complex64, np.complex128)


def _norm(a):
    """Scale-safe 2-norm (Frobenius for arrays) without overflow or underflow."""
    a = np.abs(np.asarray(a))  # |z| is computed scale-safely (hypot); the rest is real
    if a.size == 0:
        return 0.0
    s = float(np.max(a))
    if s == 0.0 or not np.isfinite(s):
        return s
    return s * float(np.linalg.norm((a / s).ravel()))


def _div(v, s):
    """``v / s`` for a positive real ``s``, also where ``1 / s`` overflows (complex division
    by a subnormal real would form ``inf * 0``)."""
    if np.iscomplexobj(v):
        return (v.real / s) + 1j * (v.imag / s)
    return v / s


def _random(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def _default_rtol(dtype, rtol):
    if rtol is None:
        return 100.0 * float(np.finfo(dtype).eps)
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    return float(rtol)


def _check_op(op):
    if not isinstance(op, spla.LinearOperator):
        raise TypeError(f"op must be a scipy.sparse.linalg.LinearOperator, got {type(op).__name__}")
    if op.dtype is None or np.dtype(op.dtype).type not in _SUPPORTED:
        raise TypeError(f"op.dtype must be one of float32, float64, complex64, complex128, "
                        f"got {op.dtype!r}")


def frobenius_estimate(op, n_probes=4, seed=0):
    """Estimate ``||A||_F`` from ``n_probes`` products with Gaussian vectors.

    Parameters
    ----------
    op : scipy.sparse.linalg.LinearOperator, shape (m, n)
    n_probes : int
    seed : int

    Returns
    -------
    float
        ``sqrt(mean_i ||A x_i||^2)`` with ``x_i`` standard normal (real and imaginary parts
        standard normal for complex dtypes, then divided by sqrt 2); unbiased for ``||A||_F^2``.
    """
    _check_op(op)
    if isinstance(n_probes, bool) or not isinstance(n_probes, numbers.Integral) or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}")
    rng = np.random.default_rng(seed)
    n = op.shape[1]
    if min(op.shape) == 0:
        return 0.0
    X = _random(rng, (n, int(n_probes)), op.dtype)
    if np.dtype(op.dtype).kind == "c":
        X = X / np.sqrt(2.0).astype(X.real.dtype)
    Y = np.asarray(op.matmat(X))
    norms = np.array([_norm(Y[:, j]) for j in range(Y.shape[1])])
    s = norms.max()
    if s == 0.0 or not np.isfinite(s):
        return float(s)
    return float(s * np.sqrt(np.mean((norms / s) ** 2)))


def dottest(op, *, rtol=None, seed=0, scale=None):
    """Check the adjoint identity ``<A x, y> = <x, A^H y>`` for random ``x``, ``y``.

    Parameters
    ----------
    op : scipy.sparse.linalg.LinearOperator, shape (m, n)
        dtype float32, float64, complex64 or complex128.
    rtol : float, optional
        Relative tolerance (default ``100 * eps(op.dtype)``).
    seed : int
    scale : float, optional
        ``||A||_F`` (default: :func:`frobenius_estimate`).

    Returns
    -------
    (complex, complex)
        ``<A x, y>`` and ``<x, A^H y>`` (they may overflow to inf where the operator's and the
        vectors' scales multiply beyond the float range; the check itself never does).

    Raises
    ------
    AssertionError
        If ``|<A x, y> - <x, A^H y>| > rtol ||A||_F ||x|| ||y||``.
    """
    _check_op(op)
    rtol = _default_rtol(op.dtype, rtol)
    m, n = op.shape
    rng = np.random.default_rng(seed)
    x = _random(rng, n, op.dtype)
    y = _random(rng, m, op.dtype)
    Ax = np.asarray(op.matvec(x)).reshape(-1)
    AHy = np.asarray(op.rmatvec(y)).reshape(-1)
    if Ax.shape != (m,) or AHy.shape != (n,):
        raise AssertionError(f"dot test: matvec gave shape {Ax.shape} (expected ({m},)), "
                             f"rmatvec gave {AHy.shape} (expected ({n},))")
    a = scale if scale is not None else frobenius_estimate(op, seed=seed + 1)
    # scale-safe inner products: divide each vector by its largest entry first
    sx, sy = _norm(x), _norm(y)
    sAx, sAHy = max(_norm(Ax), 1e-300), max(_norm(AHy), 1e-300)
    lhs_s = np.vdot(_div(y, sy), _div(Ax, sAx))        # <A x, y> / (sy sAx)
    rhs_s = np.vdot(_div(AHy, sAHy), _div(x, sx))      # <x, A^H y> / (sx sAHy)
    # compare <A x, y> / (|x| |y|) with <x, A^H y> / (|x| |y|): both are O(||A||), so nothing
    # overflows even where the products themselves would
    lhs_n = complex(lhs_s) * (sAx / sx)
    rhs_n = complex(rhs_s) * (sAHy / sy)
    diff = abs(lhs_n - rhs_n)
    if not diff <= rtol * a:
        raise AssertionError(f"dot test failed: |<Ax, y> - <x, A^H y>| / (||x|| ||y||) = "
                             f"{diff:.3e} > {rtol * a:.3e} = rtol * ||A||_F (rtol {rtol:.1e})")
    lhs = complex(lhs_s) * sy * sAx
    rhs = complex(rhs_s) * sx * sAHy
    return lhs, rhs


def _close(name, got, want, tol):
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape}, expected {want.shape}")
    err = _norm(got.astype(np.complex128) - want.astype(np.complex128)) if got.size else 0.0
    if not err <= tol:
        raise AssertionError(f"{name}: error {err:.3e} > tolerance {tol:.3e}")


def check_operator(op, reference=None, *, rtol=None, seed=0):
    """Check the LinearOperator laws on ``op``; raise :class:`AssertionError` naming a broken one.

    Parameters
    ----------
    op : scipy.sparse.linalg.LinearOperator, shape (m, n)
        dtype float32, float64, complex64 or complex128.
    reference : array_like, shape (m, n), optional
        An independent dense matrix that ``op`` should equal (to ``rtol``). Never build it
        from ``op`` itself (e.g. ``op.to_dense()``): a reference that is the object under test
        checks nothing.
    rtol : float, optional
        Relative tolerance (default ``100 * eps(op.dtype)``); errors are measured against
        ``rtol * ||A||_F * ||x||``.
    seed : int

    Checks
    ------
    - ``matvec``/``rmatvec`` return shape ``(m,)``/``(n,)`` and ``(m, 1)``/``(n, 1)`` for column
      inputs, in ``op.dtype``;
    - the dot test for ``op``, and ``op.H @ y == op.rmatvec(y)``, ``op.T @ y == conj(op.H @
      conj(y))``;
    - ``matmat`` and ``rmatmat`` equal stacked ``matvec`` / ``rmatvec``;
    - linearity ``A (a x + b z) = a A x + b A z``;
    - agreement with ``reference`` (``A x``, ``A^H y``), when given;
    - a right-hand side of the wrong length raises ``ValueError``.
    """
    _check_op(op)
    rtol = _default_rtol(op.dtype, rtol)
    m, n = op.shape
    dt = np.dtype(op.dtype)
    rng = np.random.default_rng(seed)
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != (m, n):
            raise ValueError(f"reference has shape {reference.shape}, expected {(m, n)}")
        a = _norm(reference)
    else:
        a = frobenius_estimate(op, seed=seed + 7)

    x = _random(rng, n, dt)
    z = _random(rng, n, dt)
    y = _random(rng, m, dt)
    nx, nz, ny = _norm(x), _norm(z), _norm(y)

    Ax = np.asarray(op.matvec(x))
    AHy = np.asarray(op.rmatvec(y))
    for name, r, shape in (("matvec", Ax, (m,)), ("rmatvec", AHy, (n,))):
        if r.shape != shape:
            raise AssertionError(f"{name} of a 1-D vector gave shape {r.shape}, expected {shape}")
        if r.dtype != dt:
            raise AssertionError(f"{name} returned dtype {r.dtype}, expected op.dtype {dt}")
    col = np.asarray(op.matvec(x.reshape(-1, 1)))
    if col.shape != (m, 1):
        raise AssertionError(f"matvec of an (n, 1) column gave shape {col.shape}, expected ({m}, 1)")
    _close("matvec of a column vs of a vector", col[:, 0], Ax, rtol * a * nx)
    colH = np.asarray(op.rmatvec(y.reshape(-1, 1)))
    if colH.shape != (n, 1):
        raise AssertionError(f"rmatvec of an (m, 1) column gave shape {colH.shape}, expected ({n}, 1)")

    dottest(op, rtol=rtol, seed=seed, scale=a)
    _close("op.H @ y vs op.rmatvec(y)", np.asarray(op.H @ y), AHy, rtol * a * ny)
    _close("op.T @ y vs conj(op.H @ conj(y))", np.asarray(op.T @ y),
           np.conj(np.asarray(op.rmatvec(np.conj(y)))), rtol * a * ny)

    X = np.stack([x, z], axis=1)
    Y = np.asarray(op.matmat(X))
    if Y.shape != (m, 2):
        raise AssertionError(f"matmat gave shape {Y.shape}, expected ({m}, 2)")
    _close("matmat column 0 vs matvec", Y[:, 0], Ax, rtol * a * nx)
    _close("matmat column 1 vs matvec", Y[:, 1], np.asarray(op.matvec(z)), rtol * a * nz)
    W = np.stack([y, np.conj(y)[::-1]], axis=1)
    Z = np.asarray(op.rmatmat(W))
    if Z.shape != (n, 2):
        raise AssertionError(f"rmatmat gave shape {Z.shape}, expected ({n}, 2)")
    _close("rmatmat column 0 vs rmatvec", Z[:, 0], AHy, rtol * a * ny)

    alpha = dt.type(0.75) if dt.kind == "f" else dt.type(0.75 - 0.5j)
    beta = dt.type(-1.25)
    lin = np.asarray(op.matvec(alpha * x + beta * z))
    _close("linearity A(a x + b z) = a A x + b A z", lin, alpha * Ax + beta * Y[:, 1],
           rtol * a * (nx + nz) * 2)

    if reference is not None:
        ref = reference.astype(np.complex128 if dt.kind == "c" or reference.dtype.kind == "c"
                               else np.float64)
        _close("A x vs reference @ x", Ax, ref @ x.astype(ref.dtype), rtol * a * nx)
        _close("A^H y vs reference^H @ y", AHy, ref.conj().T @ y.astype(ref.dtype), rtol * a * ny)

    for name, fn, k in (("matvec", op.matvec, n), ("rmatvec", op.rmatvec, m)):
        try:
            fn(np.ones(k + 1, dtype=dt))
        except ValueError:
            continue
        except Exception as e:  # noqa: BLE001 - any other type is itself the failure
            raise AssertionError(f"{name} of a vector of wrong length raised "
                                 f"{type(e).__name__}, expected ValueError") from e
        raise AssertionError(f"{name} of a vector of length {k + 1} did not raise ValueError")
