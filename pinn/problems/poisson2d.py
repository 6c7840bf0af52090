"""2-D Poisson problem on the unit square with u = sin(pi x) sin(pi y)."""
import numpy as np
import torch

from .base import Condition, Problem, box_boundary_2d


class Poisson2D(Problem):
    """``-Laplace u = 2 pi^2 sin(pi x) sin(pi y)`` on ``[0,1]^2``, ``u = 0`` on the boundary.

    Exact solution ``u = sin(pi x) sin(pi y)``.
    """

    name = "poisson2d"
    hessian_rows = (0, 1)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=1024, n_boundary=256)

    def __init__(self):
        self.lower = np.array([0.0, 0.0])
        self.upper = np.array([1.0, 1.0])

    def pde_residual(self, x, u, grad, hess):
        f = 2 * np.pi**2 * torch.sin(np.pi * x[:, 0]) * torch.sin(np.pi * x[:, 1])
        return -(hess[:, 0, 0] + hess[:, 1, 1]) - f

    def conditions(self, n, method="sobol", seed=0):
        x = box_boundary_2d(self.lower, self.upper, n, method, seed)
        return [Condition("bc", x, self.exact(x))]

    def exact(self, x):
        x = np.asarray(x)
        return np.sin(np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])
