"""Built-in kernels and the kernel protocol.

A kernel is any object with a method ``block(x, y) -> ndarray`` that returns the matrix
``K[i, j] = k(x[i], y[j])`` for row points ``x`` (m, d) and column points ``y`` (n, d), and
an attribute ``dtype`` (optional, default float64). A plain vectorised function works too:
:class:`FunctionKernel` wraps ``f(x, y)`` called with ``x`` of shape (m, 1, d) and ``y`` of
shape (1, n, d) that returns an (m, n) array, e.g.
``lambda x, y: np.exp(-np.linalg.norm(x - y, axis=-1))``.

The built-in kernels evaluate blocks, rows and columns in compiled code, and
:func:`hmat.from_kernel` runs the whole ACA build in compiled code for them.
"""

from __future__ import annotations

import numpy as np

from ._aca_numba import eval_block
from ._validate import check_choice, check_dtype, check_finite_array, check_positive

__all__ = [
    "Kernel",
    "Laplace",
    "Helmholtz",
    "Gaussian",
    "Exponential",
    "Matern",
    "FunctionKernel",
    "as_kernel",
]


class Kernel:
    """Base of the built-in kernels (compiled evaluation).

    Attributes
    ----------
    code : int
        Identifier understood by the compiled builder.
    param : float
        Length scale or wavenumber.
    dtype : numpy.dtype
        float64, or complex128 for :class:`Helmholtz`.
    """

    code = -1
    param = 0.0
    dtype = np.dtype(np.float64)
    dim = None  # None: any dimension

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
        eval_block(self.code, float(self.param), x, y, out)
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
        self.code = 0 if dim == 2 else 1

    def __repr__(self):
        return f"Laplace(dim={self.dim})"


class Helmholtz(Kernel):
    """3-D Helmholtz Green's function ``exp(i k r) / (4 pi r)`` (complex128), zero at r = 0."""

    code = 2
    dim = 3
    dtype = np.dtype(np.complex128)

    def __init__(self, k=1.0):
        self.param = check_positive(k, "k")

    def __repr__(self):
        return f"Helmholtz(k={self.param})"


class Gaussian(Kernel):
    """Squared-exponential kernel ``exp(-r^2 / (2 l^2))``."""

    code = 3

    def __init__(self, length_scale=1.0):
        self.param = check_positive(length_scale, "length_scale")

    def __repr__(self):
        return f"Gaussian(length_scale={self.param})"


class Exponential(Kernel):
    """Exponential kernel ``exp(-r / l)`` (Matern nu = 1/2)."""

    code = 4

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
        self.code = 5 if nu == 1.5 else 6

    def __repr__(self):
        return f"Matern(length_scale={self.param}, nu={self.nu})"


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
