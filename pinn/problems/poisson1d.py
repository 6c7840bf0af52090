"""1-D Poisson problem -u'' = f on [0, 1] with u = sin(k pi x)."""
import numpy as np
import torch

from .base import Condition, Problem


class Poisson1D(Problem):
    """``-u''(x) = (k pi)^2 sin(k pi x)`` on ``[0, 1]``, ``u(0) = u(1) = 0``.

    Exact solution ``u(x) = sin(k pi x)``.

    Parameters
    ----------
    k : int, default 2
        Wave number (positive integer so that the boundary values vanish).
    """

    name = "poisson1d"
    hessian_rows = (0,)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=256, n_boundary=2)

    def __init__(self, k=2):
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.lower = np.array([0.0])
        self.upper = np.array([1.0])

    def pde_residual(self, x, u, grad, hess):
        kp = self.k * np.pi
        return -hess[:, 0, 0] - kp**2 * torch.sin(kp * x[:, 0])

    def conditions(self, n, method="sobol", seed=0):
        x = np.array([[0.0], [1.0]])
        return [Condition("bc", x, self.exact(x))]

    def exact(self, x):
        return np.sin(self.k * np.pi * np.asarray(x)[:, 0])

    def __repr__(self):
        return f"Poisson1D(k={self.k})"
