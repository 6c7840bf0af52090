"""Viscous Burgers equation with the Cole-Hopf reference solution."""
import functools

import numpy as np
import torch

from .base import Condition, Problem, check_count, initial_points, space_time_boundary

NU = 0.01 / np.pi


@functools.lru_cache(maxsize=4)
def _hermgauss(n):
    return np.polynomial.hermite.hermgauss(n)


def cole_hopf(x, t, nu=NU, n_quad=200):
    """Exact Burgers solution for ``u(x, 0) = -sin(pi x)`` by Gauss-Hermite quadrature.

    Uses the Cole-Hopf representation (Basdevant et al. 1986)::

        u(x, t) = - I1 / I0,
        I1 = int sin(pi (x - s z)) f(x - s z) exp(-z^2) dz,
        I0 = int f(x - s z) exp(-z^2) dz,
        f(y) = exp(-cos(pi y) / (2 pi nu)),  s = sqrt(4 nu t),

    evaluated with ``n_quad`` Gauss-Hermite nodes (numpy's rule overflows above ~360) and a per-point max shift of
    the exponent (``f`` spans ``exp(+-50)`` for nu = 0.01/pi).

    Parameters
    ----------
    x, t : array_like, broadcastable, float64
    nu : float
    n_quad : int

    Returns
    -------
    numpy.ndarray, float64, broadcast shape of ``x`` and ``t``.
    """
    x, t = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(t, np.float64))
    shape = x.shape
    x = x.ravel()
    t = t.ravel()
    out = -np.sin(np.pi * x)
    pos = t > 0
    if np.any(pos):
        z, w = _hermgauss(n_quad)
        s = np.sqrt(4 * nu * t[pos])[:, None]
        y = x[pos][:, None] - s * z[None, :]
        e = -np.cos(np.pi * y) / (2 * np.pi * nu)
        e -= e.max(axis=1, keepdims=True)
        g = w[None, :] * np.exp(e)
        out[pos] = -(g * np.sin(np.pi * y)).sum(axis=1) / g.sum(axis=1)
    return out.reshape(shape)


class Burgers1D(Problem):
    """``u_t + u u_x = nu u_xx``, ``x in [-1, 1]``, ``t in [0, 1]``, ``nu = 0.01/pi``.

    ``u(x, 0) = -sin(pi x)``, ``u(+-1, t) = 0``. Inputs are ``(x, t)``. The
    reference is the Cole-Hopf solution by quadrature (:func:`cole_hopf`);
    the test grid is 256 x 100 points as in Raissi et al. (2019).

    Parameters
    ----------
    nu : float
        Viscosity of the reference solution (and of the residual unless ``nu_init``).
    n_initial : int, optional
        Initial-condition points; then ``n_boundary`` counts the boundary points only.
        Default: ``n_boundary`` is split in half between the boundary and the initial
        condition (it must then be even).
    nu_init : float, optional
        Inverse problem: the residual's viscosity is a trainable parameter starting at
        ``nu_init`` (:meth:`parameters`); add data with :meth:`add_observations` (e.g.
        :meth:`observe`). ``nu`` stays the reference's viscosity.
    """

    name = "burgers1d"
    time_dependent = True
    hessian_rows = (0,)
    # 8 hidden layers of 20 (as Raissi et al. 2019): with 3 hidden layers of 20 or 32 the
    # error varied between 1.3e-2 and 0.3 over seeds; see benchmarks/PINN_RESULTS.md
    defaults = dict(width=20, depth=8, adam_steps=2000, lbfgs_steps=5000, lr=1e-3,
                    n_collocation=2540, n_boundary=160)

    def __init__(self, nu=NU, n_initial=None, nu_init=None):
        if not nu > 0:
            raise ValueError(f"nu must be positive, got {nu!r}")
        self.nu = float(nu)
        self.n_initial = check_count("n_initial", n_initial, allow_none=True)
        self.nu_param = None
        if nu_init is not None:
            if not (isinstance(nu_init, (int, float, np.floating)) and np.isfinite(nu_init)):
                raise ValueError(f"nu_init must be a finite number, got {nu_init!r}")
            self.nu_param = torch.nn.Parameter(torch.tensor(float(nu_init), dtype=torch.float64))
        self.lower = np.array([-1.0, 0.0])
        self.upper = np.array([1.0, 1.0])

    def parameters(self):
        return [] if self.nu_param is None else [self.nu_param]

    def named_parameters(self):
        return [] if self.nu_param is None else [("nu", self.nu_param)]

    def pde_residual(self, x, u, grad, hess):
        nu = self.nu if self.nu_param is None else self.nu_param.to(x.dtype)
        return grad[:, 1] + u * grad[:, 0] - nu * hess[:, 0, 0]

    def observe(self, n, seed=0, noise=0.0):
        """Add ``n`` observations of the reference at uniform random points (name ``"data"``).

        Parameters
        ----------
        n : int
        seed : int
        noise : float
            Standard deviation of Gaussian noise added to the values.

        Returns
        -------
        self
        """
        n = check_count("n", n)
        rng = np.random.default_rng(seed)
        x = self.lower + (self.upper - self.lower) * rng.uniform(size=(n, 2))
        y = self.reference(x) + float(noise) * rng.standard_normal(n)
        return self.add_observations(x, y)

    def conditions(self, n, method="sobol", seed=0, n_initial=None):
        n_initial = n_initial or self.n_initial
        if n_initial is None:
            check_count("n_boundary", n, even=True)
            nb = ni = n // 2
        else:
            nb, ni = n, n_initial
        xb = space_time_boundary(-1.0, 1.0, 1.0, nb, method, seed)
        xi = initial_points(-1.0, 1.0, ni, method, seed + 7)
        return [Condition("bc", xb, np.zeros(len(xb))),
                Condition("ic", xi, -np.sin(np.pi * xi[:, 0]))]

    def boundary_points(self, n, method="sobol", seed=0):
        """``n`` condition points stacked (for the NTK): half boundary, half initial (an odd
        ``n`` gets one initial point less), unless ``n_initial`` is set."""
        if self.n_initial is None and n % 2:
            return super().boundary_points(n + 1, method, seed)[:n]
        return super().boundary_points(n, method, seed)

    def condition_value(self, name, x):
        if name == "bc":
            self.check_boundary_points(name, x, dims=[0])
            return np.zeros(len(x))
        if name == "ic":
            self.check_initial_points(name, x)
            return -np.sin(np.pi * x[:, 0])
        return super().condition_value(name, x)

    def exact(self, x):
        x = np.asarray(x)
        return cole_hopf(x[:, 0], x[:, 1], self.nu)

    def test_grid(self, n_per_axis=None):
        xs = np.linspace(-1, 1, 256)
        ts = np.linspace(0, 1, 100)
        X, T = np.meshgrid(xs, ts, indexing="ij")
        x = np.stack([X.ravel(), T.ravel()], axis=1)
        return x, self.reference(x)

    def config(self):
        return {"name": self.name, "kwargs": {
            "nu": self.nu, "n_initial": self.n_initial,
            "nu_init": None if self.nu_param is None else float(self.nu_param.detach())}}

    def __repr__(self):
        return f"Burgers1D(nu={self.nu:.6g})"
