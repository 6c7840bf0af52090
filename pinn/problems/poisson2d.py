"""2-D Poisson problem on the unit square with u = sin(pi x) sin(pi y)."""
import numpy as np
import torch

from .base import Condition, Problem, box_boundary_2d, check_bounds


class Poisson2D(Problem):
    """``-Laplace u = 2 pi^2 sin(pi x) sin(pi y)`` on ``[0,1]^2``, ``u = 0`` on the boundary.

    Exact solution ``u = sin(pi x) sin(pi y)``.

    Parameters
    ----------
    lower, upper : sequence of 2 floats, default (0, 0), (1, 1)
        The rectangle (the boundary values are the exact solution there).
    """

    name = "poisson2d"
    hessian_rows = (0, 1)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=1024, n_boundary=256)

    def __init__(self, lower=(0.0, 0.0), upper=(1.0, 1.0)):
        self.lower, self.upper = check_bounds(lower, upper)
        if self.lower.size != 2:
            raise ValueError(f"lower and upper must have 2 entries, got {lower!r}, {upper!r}")

    def pde_residual(self, x, u, grad, hess):
        f = 2 * np.pi**2 * torch.sin(np.pi * x[:, 0]) * torch.sin(np.pi * x[:, 1])
        return -(hess[:, 0, 0] + hess[:, 1, 1]) - f

    def conditions(self, n, method="sobol", seed=0):
        x = box_boundary_2d(self.lower, self.upper, n, method, seed)
        return [Condition("bc", x, self.exact(x))]

    def condition_value(self, name, x):
        if name != "bc":
            return super().condition_value(name, x)
        self.check_boundary_points(name, x)
        return self.exact(x)

    def exact(self, x):
        x = np.asarray(x)
        return np.sin(np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])

    def config(self):
        return {"name": self.name, "kwargs": {"lower": self.lower.tolist(),
                                              "upper": self.upper.tolist()}}

    def __repr__(self):
        if self.lower.tolist() == [0.0, 0.0] and self.upper.tolist() == [1.0, 1.0]:
            return "Poisson2D()"
        return f"Poisson2D(lower={self.lower.tolist()}, upper={self.upper.tolist()})"
