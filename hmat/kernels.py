"""Built-in kernels and the kernel protocol.

A kernel is any object with a method ``block(x, y) -> ndarray`` that returns the matrix
``K[i, j] = k(x[i], y[j])`` for row points ``x`` (m, d) and column points ``y`` (n, d), and
an attribute ``dtype`` (optional, default float64). A plain vectorised function works too:
:class:`FunctionKernel` wraps ``f(x, y)`` called with ``x`` of shape (m, 1, d) and ``y`` of
shape (1, n, d) that returns an (m, n) array, e.g.
``lambda x, y: np.exp(-np.linalg.norm(x - y, axis=-1))``.

A compiled kernel is a jitted *entry function* ``entry(X, i, Y, j, p) -> value`` (the
kernel at the points ``X[i]`` and ``Y[j]`` of two (k, d) float64 arrays, with a float
parameter ``p``) held by a :class:`Kernel`; the built-in kernels are such objects, and a
user writes one the same way (:class:`CompiledKernel`)::

    @numba.njit(cache=True, nogil=True)
    def yukawa(X, i, Y, j, p):
        d0, d1, d2 = X[i, 0] - Y[j, 0], X[i, 1] - Y[j, 1], X[i, 2] - Y[j, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        return math.exp(-p * r) / r if r > 0.0 else 0.0

    K = hmat.kernels.CompiledKernel(yukawa, param=2.0, dim=3, symmetric=True)

Blocks, rows and columns are then evaluated in compiled code, and :func:`hmat.from_kernel`
runs the whole ACA build in compiled code (numba compiles one specialisation of the build
per entry function, cached on disk when the entry function has ``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

from ._kernel_jit import compiled_for
from ._validate import check_choice, check_dtype, check_finite_array, check_positive

__all__ = [
    "Kernel",
    "CompiledKernel",
    "Laplace",
    "Helmholtz",
    "Gaussian",
    "Exponential",
    "Matern",
    "FunctionKernel",
    "as_kernel",
]


INV4PI = 1.0 / (4.0 * math.pi)
INV2PI = 1.0 / (2.0 * math.pi)
SQRT3 = math.sqrt(3.0)
SQRT5 = math.sqrt(5.0)


@njit(cache=True, nogil=True)
def _dist2(X, i, Y, j):
    r2 = 0.0
    for k in range(X.shape[1]):
        t = X[i, k] - Y[j, k]
        r2 += t * t
    return r2


@njit(cache=True, nogil=True)
def _r3(X, i, Y, j):
    """``|X[i] - Y[j]|`` in 3-D, straight-line (inlined: rows vectorise)."""
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    d2 = X[i, 2] - Y[j, 2]
    return math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)


@njit(cache=True, nogil=True)
def laplace2_entry(X, i, Y, j, p):
    """``-log(r) / (2 pi)``, 0 at r = 0."""
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    r = math.sqrt(d0 * d0 + d1 * d1)
    return -math.log(r) * INV2PI if r > 0.0 else 0.0


@njit(cache=True, nogil=True)
def laplace3_entry(X, i, Y, j, p):
    """``1 / (4 pi r)``, 0 at r = 0 (straight-line IEEE sqrt and division: rows vectorise)."""
    r = _r3(X, i, Y, j)
    return INV4PI / r if r > 0.0 else 0.0


@njit(cache=True, nogil=True)
def helmholtz3_entry(X, i, Y, j, p):
    """``exp(i p r) / (4 pi r)``, 0 at r = 0."""
    r = _r3(X, i, Y, j)
    if r == 0.0:
        return complex(0.0, 0.0)
    s = INV4PI / r
    return complex(math.cos(p * r) * s, math.sin(p * r) * s)


@njit(cache=True, nogil=True)
def gaussian_entry(X, i, Y, j, p):
    """``exp(-r^2 / (2 p^2))``."""
    return math.exp(-0.5 * _dist2(X, i, Y, j) / (p * p))


@njit(cache=True, nogil=True)
def exponential_entry(X, i, Y, j, p):
    """``exp(-r / p)``."""
    return math.exp(-math.sqrt(_dist2(X, i, Y, j)) / p)


@njit(cache=True, nogil=True)
def matern32_entry(X, i, Y, j, p):
    """``(1 + sqrt(3) r/p) exp(-sqrt(3) r/p)``."""
    t = SQRT3 * math.sqrt(_dist2(X, i, Y, j)) / p
    return (1.0 + t) * math.exp(-t)


@njit(cache=True, nogil=True)
def matern52_entry(X, i, Y, j, p):
    """``(1 + sqrt(5) r/p + 5 r^2/(3 p^2)) exp(-sqrt(5) r/p)``."""
    t = SQRT5 * math.sqrt(_dist2(X, i, Y, j)) / p
    return (1.0 + t + t * t / 3.0) * math.exp(-t)


class Kernel:
    """A compiled kernel: a jitted entry function and its parameter (base of the built-ins).

    Attributes
    ----------
    entry : numba dispatcher
        ``entry(X, i, Y, j, p) -> float or complex``: the kernel at ``X[i]``, ``Y[j]``.
    param : float
        The ``p`` passed to ``entry`` (length scale, wavenumber, ...).
    dtype : numpy.dtype
        float64, or complex128 for a complex kernel.
    dim : int or None
        Required point dimension (None: any).
    symmetric : bool
        ``k(x, y) == k(y, x)``: on one point set the build computes each pair of mirrored
        leaves once.
    """

    entry = None
    param = 0.0
    dtype = np.dtype(np.float64)
    dim = None  # None: any dimension
    symmetric = True

    def _points(self, a, name):
        if np.iscomplexobj(a):
            raise TypeError(f"{name} must be real coordinates, got a complex array")
        a = check_finite_array(a, name, dtype=np.float64, allow_empty=True)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"{name} must have shape (k, d), got {a.shape}")
        if self.dim is not None and a.shape[1] != self.dim:
            raise ValueError(f"{name} must have d = {self.dim} coordinates for {self!r}, got {a.shape[1]}")
        return np.ascontiguousarray(a)

    def block(self, x, y, dtype=None):
        """Kernel matrix ``K[i, j] = k(x[i], y[j])``.

        Parameters
        ----------
        x : array_like, shape (m, d)
        y : array_like, shape (n, d)
        dtype : dtype, optional
            Output dtype (default :attr:`dtype`).

        Returns
        -------
        ndarray, shape (m, n)
        """
        x = self._points(x, "x")
        y = self._points(y, "y")
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
        dt = check_dtype(dtype or self.dtype)
        if self.dtype.kind == "c" and dt.kind != "c":
            raise TypeError(f"dtype {dt} would drop the imaginary part of {self!r}; use a complex dtype")
        out = np.empty((x.shape[0], y.shape[0]), dtype=dt)
        compiled_for(self.entry).eval_block(float(self.param), x, y, out)
        return out

    def __call__(self, x, y):
        """Alias of :meth:`block`."""
        return self.block(x, y)

    def __repr__(self):
        return f"{type(self).__name__}({self.param})"


class Laplace(Kernel):
    """Laplace Green's function: ``-log(r) / (2 pi)`` (dim=2) or ``1 / (4 pi r)`` (dim=3).

    Zero on the diagonal (``r = 0``).
    """

    def __init__(self, dim=3):
        check_choice(dim, "dim", {2, 3})
        self.dim = dim
        self.entry = laplace2_entry if dim == 2 else laplace3_entry

    def __repr__(self):
        return f"Laplace(dim={self.dim})"


class Helmholtz(Kernel):
    """3-D Helmholtz Green's function ``exp(i k r) / (4 pi r)`` (complex128), zero at r = 0."""

    entry = helmholtz3_entry
    dim = 3
    dtype = np.dtype(np.complex128)

    def __init__(self, k=1.0):
        self.param = check_positive(k, "k")

    def __repr__(self):
        return f"Helmholtz(k={self.param})"


class Gaussian(Kernel):
    """Squared-exponential kernel ``exp(-r^2 / (2 l^2))``."""

    entry = gaussian_entry

    def __init__(self, length_scale=1.0):
        self.param = check_positive(length_scale, "length_scale")

    def __repr__(self):
        return f"Gaussian(length_scale={self.param})"


class Exponential(Kernel):
    """Exponential kernel ``exp(-r / l)`` (Matern nu = 1/2)."""

    entry = exponential_entry

    def __init__(self, length_scale=1.0):
        self.param = check_positive(length_scale, "length_scale")

    def __repr__(self):
        return f"Exponential(length_scale={self.param})"


class Matern(Kernel):
    """Matern kernel for ``nu`` = 1.5 or 2.5.

    ``nu=1.5``: ``(1 + sqrt(3) r/l) exp(-sqrt(3) r/l)``;
    ``nu=2.5``: ``(1 + sqrt(5) r/l + 5 r^2/(3 l^2)) exp(-sqrt(5) r/l)``.
    """

    def __init__(self, length_scale=1.0, nu=1.5):
        self.param = check_positive(length_scale, "length_scale")
        check_choice(nu, "nu", {1.5, 2.5})
        self.nu = nu
        self.entry = matern32_entry if nu == 1.5 else matern52_entry

    def __repr__(self):
        return f"Matern(length_scale={self.param}, nu={self.nu})"


class CompiledKernel(Kernel):
    """A kernel from your own jitted entry function: the build runs in compiled code.

    Parameters
    ----------
    entry : numba-jitted function
        ``entry(X, i, Y, j, p)`` returning ``k(X[i], Y[j])`` as a float (or a complex
        number for a complex kernel) for float64 arrays ``X`` (m, d), ``Y`` (n, d) and the
        float ``p = param``. Decorate it with ``numba.njit(cache=True, nogil=True)``:
        ``cache`` keeps its compiled build on disk, ``nogil`` lets the build run in threads.
    param : float
        Passed to ``entry`` as ``p``.
    dtype : {float64, complex128}
        The kernel's value type.
    dim : int, optional
        Required point dimension (checked by the builders).
    symmetric : bool
        Declare ``k(x, y) == k(y, x)`` (then mirrored leaves are built once).
    name : str, optional
        For ``repr``.
    """

    def __init__(self, entry, param=0.0, dtype=np.float64, dim=None, symmetric=False, name=None):
        if not isinstance(entry, Dispatcher):
            raise TypeError(f"entry must be a numba-jitted function (numba.njit), got {type(entry).__name__}")
        self.entry = entry
        if isinstance(param, bool) or not isinstance(param, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(param)):
            raise ValueError(f"param must be a finite real number, got {param!r}")
        self.param = float(param)
        self.dtype = check_dtype(dtype, "dtype")
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.complex128)):
            raise ValueError(f"dtype must be float64 or complex128, got {self.dtype}")
        if dim is not None:
            dim = check_positive(dim, "dim", integer=True)
        self.dim = dim
        self.symmetric = bool(symmetric)
        self.name = name or getattr(entry, "__name__", "entry")

    def __repr__(self):
        return f"CompiledKernel({self.name}, param={self.param})"


class FunctionKernel:
    """A kernel from a vectorised function ``f(x, y)``.

    Parameters
    ----------
    f : callable
        Called as ``f(x[:, None, :], y[None, :, :])`` and must return an (m, n) array.
    dtype : dtype, default float64
    """

    def __init__(self, f, dtype=np.float64):
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        self.f = f
        self.dtype = check_dtype(dtype)

    def block(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if y.ndim == 1:
            y = y[:, None]
        out = np.asarray(self.f(x[:, None, :], y[None, :, :]))
        if out.shape != (x.shape[0], y.shape[0]):
            raise ValueError(
                f"kernel function returned shape {out.shape}, expected {(x.shape[0], y.shape[0])}"
            )
        if out.dtype.kind == "c" and self.dtype.kind != "c":
            if np.any(out.imag != 0):
                raise TypeError(
                    f"the kernel function returned complex values but dtype is {self.dtype}: the "
                    f"imaginary part would be lost; use dtype=np.complex128"
                )
            out = out.real
        res = out.astype(self.dtype, copy=False)
        if res is not out and out.dtype.kind in "fc" and not np.isfinite(res).all() and np.isfinite(out).all():
            raise ValueError(
                f"kernel values overflow dtype {self.dtype} (largest magnitude {np.max(np.abs(out)):.3g}); "
                f"use a double-precision dtype or rescale the kernel"
            )
        return res

    def __repr__(self):
        return f"FunctionKernel({getattr(self.f, '__name__', self.f)!r})"


def as_kernel(kernel):
    """Return ``kernel`` if it has ``block``, wrap a plain callable as :class:`FunctionKernel`."""
    if hasattr(kernel, "block") and callable(kernel.block):
        return kernel
    if callable(kernel):
        return FunctionKernel(kernel)
    raise TypeError(f"kernel must have a block(x, y) method or be callable, got {type(kernel).__name__}")
