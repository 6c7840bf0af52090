"""1-D Poisson problem -u'' = f on [0, 1] with u = sin(k pi x)."""
import numpy as np
import torch

from .base import Condition, Problem, check_bounds


class Poisson1D(Problem):
    """``-u''(x) = (k pi)^2 sin(k pi x)`` on ``[0, 1]``, ``u(0) = u(1) = 0``.

    Exact solution ``u(x) = sin(k pi x)``.

    Parameters
    ----------
    k : int, default 2
        Wave number (positive integer so that the boundary values vanish on [0, 1]).
    lower, upper : float, default 0, 1
        The interval (on another interval the boundary values are ``sin(k pi x)`` there).

    Notes
    -----
    The boundary of an interval is its two end points: the boundary loss always uses
    them both, once, whatever ``n_boundary`` (repeating a point would not change the
    mean-square term).
    """

    name = "poisson1d"
    hessian_rows = (0,)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=256, n_boundary=2)

    def __init__(self, k=2, lower=0.0, upper=1.0):
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.lower, self.upper = check_bounds([lower], [upper])

    def pde_residual(self, x, u, grad, hess):
        kp = self.k * np.pi
        return -hess[:, 0, 0] - kp**2 * torch.sin(kp * x[:, 0])

    def conditions(self, n, method="sobol", seed=0):
        x = np.array([[self.lower[0]], [self.upper[0]]])
        return [Condition("bc", x, self.exact(x))]

    def condition_value(self, name, x):
        if name != "bc":
            return super().condition_value(name, x)
        self.check_boundary_points(name, x)
        return self.exact(x)

    def exact(self, x):
        return np.sin(self.k * np.pi * np.asarray(x)[:, 0])

    def config(self):
        return {"name": self.name, "kwargs": {"k": self.k, "lower": float(self.lower[0]),
                                              "upper": float(self.upper[0])}}

    def __repr__(self):
        if (self.lower[0], self.upper[0]) == (0.0, 1.0):
            return f"Poisson1D(k={self.k})"
        return f"Poisson1D(k={self.k}, lower={self.lower[0]:g}, upper={self.upper[0]:g})"
