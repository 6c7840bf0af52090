"""1-D heat equation with exact solution."""
import numpy as np
import torch

from .base import Condition, Problem, initial_points, space_time_boundary


class Heat1D(Problem):
    """``u_t = alpha u_xx`` on ``x in [0, 1]``, ``t in [0, 1]``.

    ``u(x, 0) = sin(pi x)``, ``u(0, t) = u(1, t) = 0``; exact solution
    ``u = exp(-alpha pi^2 t) sin(pi x)``. Inputs are ``(x, t)``.

    Parameters
    ----------
    alpha : float, default 0.1
    """

    name = "heat1d"
    time_dependent = True
    hessian_rows = (0,)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=1024, n_boundary=128)

    def __init__(self, alpha=0.1):
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        self.alpha = float(alpha)
        self.lower = np.array([0.0, 0.0])
        self.upper = np.array([1.0, 1.0])

    def pde_residual(self, x, u, grad, hess):
        return grad[:, 1] - self.alpha * hess[:, 0, 0]

    def conditions(self, n, method="sobol", seed=0):
        xb = space_time_boundary(0.0, 1.0, 1.0, n, method, seed)
        xi = initial_points(0.0, 1.0, n, method, seed + 7)
        return [Condition("bc", xb, self.exact(xb)), Condition("ic", xi, self.exact(xi))]

    def exact(self, x):
        x = np.asarray(x)
        return np.exp(-self.alpha * np.pi**2 * x[:, 1]) * np.sin(np.pi * x[:, 0])

    def __repr__(self):
        return f"Heat1D(alpha={self.alpha})"
