"""Operator learning for ``-div(a grad u) = f`` with Dirichlet data on a uniform grid.

The network learns the *solution operator* ``f -> u`` of the discrete problem
from the PDE residual alone (no solution data): it sees grid samples of random
sources ``f`` (Gaussian random fields) and is penalised by the discrete
residual ``A u - f - b`` of its prediction ``u``. Evaluation uses held-out
sources against a sparse direct solve (``scipy.sparse.linalg.splu``).

Discretisation
--------------
* 1-D: ``n`` interior nodes ``x_i = i h`` of ``[0, 1]``, ``h = 1/(n+1)``;
  ``(A u)_i = (-a_{i+1/2} u_{i+1} + (a_{i+1/2} + a_{i-1/2}) u_i - a_{i-1/2} u_{i-1}) / h^2``.
* 2-D: ``m x m`` interior nodes of ``[0, 1]^2`` (``n = m^2``, row-major,
  ``index = i * m + j`` for ``(x_i, y_j)``), 5-point stencil with the
  coefficient at the face midpoints.
* Dirichlet data ``g`` on the boundary enters as ``b`` (``A u = f + b``), so
  the exact discrete solution operator is affine, ``u = G f + G b`` with the
  discrete Green's function ``G = A^{-1}``: a single linear layer with weight
  ``G`` and bias ``G b`` is the exact minimiser of every loss below.

Loss functions (``loss=``)
--------------------------
``"residual"``
    ``mean_k ||A u_k - f_k - b||^2 / mean_k ||f_k||^2`` -- the plain discrete
    PDE residual. Its Hessian in the weight is ``A^T A`` (condition number
    ~ ``n^4`` in 1-D), so gradient training converges very slowly at large n.
``"energy"``
    The discrete Ritz energy ``mean_k (u_k^T A u_k / 2 - (f_k + b)^T u_k) / n``
    (minimised by the same ``u = A^{-1}(f + b)``; its gradient in ``u`` is
    the residual). Hessian ``A`` (condition ~ ``n^2``).
``"precond"``
    The residual measured in the norm of a fixed preconditioner,
    ``mean_k ||L0^{-1} (A u_k - f_k - b)||^2 / mean_k ||L0^{-1} f_k||^2`` with
    ``L0`` the constant-coefficient operator ``-abar Laplace_h`` (``abar`` =
    mean of ``a``) applied by fast sine transforms. Same minimiser; Hessian
    ``A L0^{-2} A`` (condition ``<= (max a / min a)^2``). **Caveat**: for
    constant ``a``, ``L0 = A`` and this loss equals the supervised loss
    ``||u - A^{-1}(f + b)||^2`` -- it is then not a residual-only test.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

__all__ = ["EllipticOperatorProblem", "grid_points", "LOSSES", "COEFFICIENTS"]

LOSSES = ("residual", "energy", "precond")
COEFFICIENTS = ("constant", "smooth")


def grid_points(dim, m):
    """Interior nodes of the uniform grid on ``[0, 1]^dim`` with ``m`` nodes per axis.

    Parameters
    ----------
    dim : {1, 2}
    m : int >= 1
        Interior nodes per axis (``h = 1/(m+1)``).

    Returns
    -------
    numpy.ndarray, shape (m**dim, dim), float64
        Row-major order (2-D: index ``i * m + j`` holds ``(x_i, y_j)``).
    """
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim!r}")
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    x = np.arange(1, m + 1, dtype=np.float64) / (m + 1)
    if dim == 1:
        return x[:, None]
    X, Y = np.meshgrid(x, x, indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], axis=1)


def _dst1(x):
    """Orthonormal DST-I along the last axis of a real torch tensor (its own inverse)."""
    m = x.shape[-1]
    z = x.new_zeros(x.shape[:-1] + (1,))
    y = torch.cat([z, x, z, -x.flip(-1)], dim=-1)  # odd extension, length 2(m+1)
    Y = torch.fft.rfft(y, dim=-1)
    return -Y.imag[..., 1:m + 1] * math.sqrt(0.5 / (m + 1))


def _smooth_coefficient(x):
    """``a(x) = 1 + 0.5 sin(2 pi x_1) cos(2 pi x_2) + 0.25 cos(4 pi x_1)`` (in [0.25, 1.75])."""
    x = np.atleast_2d(x)
    a = 1.0 + 0.25 * np.cos(4 * np.pi * x[:, 0])
    if x.shape[1] == 1:
        return a + 0.5 * np.sin(2 * np.pi * x[:, 0])
    return a + 0.5 * np.sin(2 * np.pi * x[:, 0]) * np.cos(2 * np.pi * x[:, 1])


class EllipticOperatorProblem:
    """Learn ``f -> u`` for ``-div(a grad u) = f``, ``u = g`` on the boundary.

    Parameters
    ----------
    dim : {1, 2}
    n : int
        Number of unknowns: 1-D grid size, or ``m * m`` in 2-D (must be a
        perfect square; ``m`` nodes per axis).
    coefficient : {"constant", "smooth"} or callable
        ``a = 1``, the smooth ``a(x)`` of :func:`_smooth_coefficient`, or a
        callable mapping points ``(k, dim)`` to positive values ``(k,)``.
    boundary : float or callable, default 0.0
        Dirichlet data ``g``: a constant, or a callable of boundary points
        ``(k, dim)`` returning ``(k,)``.
    loss : {"residual", "energy", "precond"}
        See the module docstring.
    alpha, tau : float
        Gaussian-random-field sources: sine-series coefficients
        ``xi_k (1 + |k pi|^2 / tau^2)^(-alpha/2)`` (``xi_k`` standard normal),
        normalised to unit mean-square value. ``alpha = 0`` is white noise.

    Attributes
    ----------
    points : numpy.ndarray, shape (n, dim)
        Grid coordinates of the unknowns (input and output neurons).
    A : scipy.sparse.csr_matrix, shape (n, n), float64
    b : numpy.ndarray, shape (n,)
        Boundary contribution to the right-hand side.
    h : float
    """

    def __init__(self, dim=1, n=256, coefficient="constant", *, boundary=0.0, loss="residual",
                 alpha=2.0, tau=None):
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        m = int(n) if dim == 1 else int(round(math.sqrt(n)))
        if dim == 2 and m * m != n:
            raise ValueError(f"n must be a perfect square in 2-D (m x m grid), got {n!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if not (isinstance(alpha, (int, float)) and alpha >= 0):
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        if tau is None:
            tau = 8.0 * math.pi
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be a number > 0, got {tau!r}")
        if isinstance(coefficient, str):
            if coefficient not in COEFFICIENTS:
                raise ValueError(f"coefficient must be one of {COEFFICIENTS} or a callable, "
                                 f"got {coefficient!r}")
            afun = (lambda x: np.ones(np.atleast_2d(x).shape[0])) if coefficient == "constant" \
                else _smooth_coefficient
            self.coefficient_name = coefficient
        elif callable(coefficient):
            afun = coefficient
            self.coefficient_name = getattr(coefficient, "__name__", "callable")
        else:
            raise TypeError(f"coefficient must be a string or a callable, got {type(coefficient).__name__}")
        if isinstance(boundary, (int, float)) and not isinstance(boundary, bool):
            gval = float(boundary)
            gfun = lambda x: np.full(np.atleast_2d(x).shape[0], gval)  # noqa: E731
        elif callable(boundary):
            gfun = boundary
        else:
            raise TypeError(f"boundary must be a number or a callable, got {type(boundary).__name__}")
        self.dim, self.n, self.m = int(dim), int(n), m
        self.h = 1.0 / (m + 1)
        self.loss_name = loss
        self.alpha, self.tau = float(alpha), float(tau)
        self.points = grid_points(dim, m)
        self._afun = afun
        self._assemble(afun, gfun)
        self._lu = None
        self._green = None

    # ------------------------------------------------------------------ assembly
    def _faces(self, afun, mid):
        a = np.asarray(afun(mid), dtype=np.float64).reshape(-1)
        if a.shape[0] != mid.shape[0] or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError("coefficient must return finite positive values, one per point")
        return a

    def _assemble(self, afun, gfun):
        m, h = self.m, self.h
        xs = np.arange(0, m + 2) * h  # nodes including boundary
        xf = (np.arange(0, m + 1) + 0.5) * h  # faces between node i and i+1
        if self.dim == 1:
            af = self._faces(afun, xf[:, None])  # (m+1,)
            main = (af[:-1] + af[1:]) / h**2
            off = -af[1:-1] / h**2
            A = sp.diags([off, main, off], [-1, 0, 1], shape=(m, m), format="csr")
            g = np.asarray(gfun(np.array([[0.0], [1.0]])), dtype=np.float64).reshape(-1)
            b = np.zeros(m)
            b[0] += af[0] * g[0] / h**2
            b[-1] += af[-1] * g[1] / h**2
            self._ax = [af]
            self._g_nodes = g
        else:
            xi = xs[1:-1]
            # x-faces: between (i, j) and (i+1, j), i = 0..m, j interior -> (m+1, m)
            FX, FY = np.meshgrid(xf, xi, indexing="ij")
            ax = self._faces(afun, np.stack([FX.ravel(), FY.ravel()], 1)).reshape(m + 1, m)
            FX, FY = np.meshgrid(xi, xf, indexing="ij")
            ay = self._faces(afun, np.stack([FX.ravel(), FY.ravel()], 1)).reshape(m, m + 1)
            idx = np.arange(m * m).reshape(m, m)
            diag = (ax[:-1, :] + ax[1:, :] + ay[:, :-1] + ay[:, 1:]) / h**2
            rows = [idx.ravel()]
            cols = [idx.ravel()]
            vals = [diag.ravel()]
            # x neighbours
            rows += [idx[:-1, :].ravel(), idx[1:, :].ravel()]
            cols += [idx[1:, :].ravel(), idx[:-1, :].ravel()]
            vals += [-ax[1:-1, :].ravel() / h**2, -ax[1:-1, :].ravel() / h**2]
            rows += [idx[:, :-1].ravel(), idx[:, 1:].ravel()]
            cols += [idx[:, 1:].ravel(), idx[:, :-1].ravel()]
            vals += [-ay[:, 1:-1].ravel() / h**2, -ay[:, 1:-1].ravel() / h**2]
            A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                              shape=(m * m, m * m))
            # boundary values on the four sides (at the interior tangential nodes)
            gl = np.asarray(gfun(np.stack([np.zeros(m), xi], 1)), np.float64).reshape(-1)
            gr = np.asarray(gfun(np.stack([np.ones(m), xi], 1)), np.float64).reshape(-1)
            gb = np.asarray(gfun(np.stack([xi, np.zeros(m)], 1)), np.float64).reshape(-1)
            gt = np.asarray(gfun(np.stack([xi, np.ones(m)], 1)), np.float64).reshape(-1)
            b = np.zeros((m, m))
            b[0, :] += ax[0, :] * gl / h**2
            b[-1, :] += ax[-1, :] * gr / h**2
            b[:, 0] += ay[:, 0] * gb / h**2
            b[:, -1] += ay[:, -1] * gt / h**2
            b = b.ravel()
            self._ax = [ax, ay]
            self._g_nodes = (gl, gr, gb, gt)
        if not np.all(np.isfinite(b)):
            raise ValueError("boundary must return finite values")
        self.A = A.tocsr()
        self.b = b
        # mean coefficient for the constant-coefficient preconditioner
        self.abar = float(np.mean(np.concatenate([np.ravel(a) for a in self._ax])))
        self._torch_cache = {}

    # ------------------------------------------------------------------ reference
    @property
    def lu(self):
        """Sparse LU factorisation of ``A`` (``scipy.sparse.linalg.splu``), cached."""
        if self._lu is None:
            self._lu = spla.splu(self.A.tocsc())
        return self._lu

    def solve(self, f):
        """Exact discrete solutions ``u = A^{-1} (f + b)`` (sparse direct solve).

        Parameters
        ----------
        f : array_like, shape (n,) or (k, n)

        Returns
        -------
        numpy.ndarray of the shape of ``f``, float64
        """
        F = np.asarray(f, dtype=np.float64)
        if F.shape[-1] != self.n or F.ndim not in (1, 2):
            raise ValueError(f"f must have shape (n,) or (k, n) with n = {self.n}, got {F.shape}")
        R = (F + self.b).T if F.ndim == 2 else F + self.b
        U = self.lu.solve(np.ascontiguousarray(R))
        return U.T if F.ndim == 2 else U

    def green(self):
        """The discrete Green's function ``G = A^{-1}``, dense (n, n) float64, cached."""
        if self._green is None:
            self._green = self.lu.solve(np.eye(self.n))
        return self._green

    def exact_bias(self):
        """``G b``: the bias of the exact affine solution operator."""
        return self.lu.solve(self.b.copy())

    # ------------------------------------------------------------------ sources
    def sample_sources(self, k, seed=0):
        """``k`` Gaussian-random-field sources on the grid, shape (k, n), float64.

        ``f = sum_q xi_q c_q phi_q`` over the discrete sine modes ``phi_q`` of
        the grid (DST-I; a complete basis of the grid functions), with
        ``c_q = (1 + |q pi|^2 / tau^2)^(-alpha/2)``, normalised so that
        ``E mean_i f_i^2 = 1``. Deterministic for a given ``seed`` (int or
        ``numpy.random.Generator``).
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        m = self.m
        q = np.arange(1, m + 1) * np.pi
        if self.dim == 1:
            c = (1 + q**2 / self.tau**2) ** (-self.alpha / 2)
            c = c / math.sqrt(np.sum(c**2) / m)
            xi = rng.standard_normal((k, m)) * c
            # DST-I with norm="ortho" maps coefficients to an orthonormal sine basis
            F = scipy.fft.dst(xi, type=1, norm="ortho", axis=-1)
            return F
        Q2 = q[:, None] ** 2 + q[None, :] ** 2
        c = (1 + Q2 / self.tau**2) ** (-self.alpha / 2)
        c = c / math.sqrt(np.sum(c**2) / (m * m))
        xi = rng.standard_normal((k, m, m)) * c
        F = scipy.fft.dstn(xi, type=1, norm="ortho", axes=(-2, -1))
        return F.reshape(k, m * m)

    # ------------------------------------------------------------------ torch side
    def _t(self, name, dtype, device=None):
        key = (name, dtype, None if device is None else torch.device(device))
        if key not in self._torch_cache:
            if name == "b":
                v = torch.as_tensor(self.b, dtype=dtype, device=device)
            elif name == "ax":
                v = [torch.as_tensor(a, dtype=dtype, device=device) for a in self._ax]
            elif name == "l0":
                m, h = self.m, self.h
                lam1 = (2 - 2 * np.cos(np.arange(1, m + 1) * np.pi / (m + 1))) / h**2
                lam = lam1 if self.dim == 1 else lam1[:, None] + lam1[None, :]
                v = torch.as_tensor(1.0 / (self.abar * lam), dtype=dtype, device=device)
            self._torch_cache[key] = v
        return self._torch_cache[key]

    def apply_A(self, u):
        """``A u`` for a torch tensor ``u`` of shape (..., n) (stencil; differentiable)."""
        if u.shape[-1] != self.n:
            raise ValueError(f"u: last dimension must be {self.n}, got shape {tuple(u.shape)}")
        h2 = self.h**2
        lead = u.shape[:-1]
        if self.dim == 1:
            (af,) = self._t("ax", u.dtype, u.device)
            up = torch.nn.functional.pad(u.reshape(-1, 1, self.n), (1, 1)).reshape(-1, self.n + 2)
            du = up[:, 1:] - up[:, :-1]  # (k, m+1) differences across faces
            flux = af * du
            out = -(flux[:, 1:] - flux[:, :-1]) / h2
            return out.reshape(*lead, self.n)
        ax, ay = self._t("ax", u.dtype, u.device)
        m = self.m
        U = torch.nn.functional.pad(u.reshape(-1, 1, m, m), (1, 1, 1, 1)).reshape(-1, m + 2, m + 2)
        fx = ax * (U[:, 1:, 1:-1] - U[:, :-1, 1:-1])  # (k, m+1, m)
        fy = ay * (U[:, 1:-1, 1:] - U[:, 1:-1, :-1])  # (k, m, m+1)
        out = -((fx[:, 1:, :] - fx[:, :-1, :]) + (fy[:, :, 1:] - fy[:, :, :-1])) / h2
        return out.reshape(*lead, self.n)

    def apply_L0_inv(self, r):
        """``L0^{-1} r`` for a torch tensor ``r`` (..., n): the constant-coefficient
        preconditioner applied by orthonormal DST-I (through ``torch.fft``), O(n log n),
        differentiable."""
        w = self._t("l0", r.dtype, r.device)
        lead = r.shape[:-1]
        if self.dim == 1:
            R = r.reshape(-1, self.n)
            return _dst1(_dst1(R) * w).reshape(*lead, self.n)
        m = self.m
        R = r.reshape(-1, m, m)
        C = _dst1(_dst1(R).transpose(-1, -2)).transpose(-1, -2)
        C = C * w
        out = _dst1(_dst1(C).transpose(-1, -2)).transpose(-1, -2)
        return out.reshape(*lead, self.n)

    def loss(self, u, f):
        """The training loss (scalar tensor) of predictions ``u`` for sources ``f``.

        Parameters
        ----------
        u, f : torch.Tensor, shape (k, n)
            Predicted solutions and their sources (same dtype).
        """
        if u.shape != f.shape or u.dim() != 2 or u.shape[1] != self.n:
            raise ValueError(f"u and f must both have shape (k, {self.n}); got "
                             f"{tuple(u.shape)} and {tuple(f.shape)}")
        b = self._t("b", u.dtype, u.device)
        rhs = f + b
        if self.loss_name == "residual":
            r = self.apply_A(u) - rhs
            return r.pow(2).sum(1).mean() / f.pow(2).sum(1).mean()
        if self.loss_name == "energy":
            e = 0.5 * (u * self.apply_A(u)).sum(1) - (rhs * u).sum(1)
            return e.mean() / self.n
        r = self.apply_L0_inv(self.apply_A(u) - rhs)
        return r.pow(2).sum(1).mean() / self.apply_L0_inv(f).pow(2).sum(1).mean()

    def residual_norm(self, u, f):
        """Relative residual ``||A u - f - b|| / ||f + b||`` per sample (numpy, float64)."""
        U = np.asarray(u, np.float64)
        F = np.asarray(f, np.float64)
        R = (self.A @ U.T).T - F - self.b
        return np.linalg.norm(R, axis=1) / np.maximum(np.linalg.norm(F + self.b, axis=1), 1e-300)

    def relative_error(self, u, f):
        """Mean over samples of ``||u - u*|| / ||u*||`` with ``u*`` the direct solve."""
        U = np.asarray(u, np.float64)
        Us = self.solve(f)
        return float(np.mean(np.linalg.norm(U - Us, axis=1) / np.linalg.norm(Us, axis=1)))

    def __repr__(self):
        grid = f"{self.n}" if self.dim == 1 else f"{self.m}x{self.m}"
        return (f"EllipticOperatorProblem(dim={self.dim}, grid={grid}, "
                f"coefficient={self.coefficient_name!r}, loss={self.loss_name!r})")
