"""1-D heat equation with exact solution."""
import numpy as np
import torch

from .base import Condition, Problem, check_bounds, check_count, initial_points, space_time_boundary


class Heat1D(Problem):
    """``u_t = alpha u_xx`` on ``x in [0, 1]``, ``t in [0, 1]``.

    ``u(x, 0) = sin(pi x)``, ``u(0, t) = u(1, t) = 0``; exact solution
    ``u = exp(-alpha pi^2 t) sin(pi x)``. Inputs are ``(x, t)``.

    Parameters
    ----------
    alpha : float, default 0.1
    lower, upper : sequence of 2 floats, default (0, 0), (1, 1)
        The box ``(x, t)`` (the condition values are the exact solution there).
    n_initial : int, optional
        Initial-condition points; default ``n_boundary`` (boundary and initial condition
        each get ``n_boundary`` points).
    """

    name = "heat1d"
    time_dependent = True
    hessian_rows = (0,)
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=1024, n_boundary=128)

    def __init__(self, alpha=0.1, lower=(0.0, 0.0), upper=(1.0, 1.0), n_initial=None):
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        self.alpha = float(alpha)
        self.lower, self.upper = check_bounds(lower, upper)
        if self.lower.size != 2:
            raise ValueError(f"lower and upper must have 2 entries (x, t), got {lower!r}, "
                             f"{upper!r}")
        self.n_initial = check_count("n_initial", n_initial, allow_none=True)

    def pde_residual(self, x, u, grad, hess):
        return grad[:, 1] - self.alpha * hess[:, 0, 0]

    def conditions(self, n, method="sobol", seed=0, n_initial=None):
        (xa, t0), (xb_, t1) = self.lower, self.upper
        xb = space_time_boundary(xa, xb_, t1 - t0, n, method, seed)
        xb[:, 1] += t0
        xi = initial_points(xa, xb_, n_initial or self.n_initial or n, method, seed + 7)
        xi[:, 1] = t0
        return [Condition("bc", xb, self.exact(xb)), Condition("ic", xi, self.exact(xi))]

    def condition_value(self, name, x):
        if name == "bc":
            self.check_boundary_points(name, x, dims=[0])
        elif name == "ic":
            self.check_initial_points(name, x)
        else:
            return super().condition_value(name, x)
        return self.exact(x)

    def exact(self, x):
        x = np.asarray(x)
        return np.exp(-self.alpha * np.pi**2 * x[:, 1]) * np.sin(np.pi * x[:, 0])

    def config(self):
        return {"name": self.name, "kwargs": {"alpha": self.alpha, "lower": self.lower.tolist(),
                                              "upper": self.upper.tolist(),
                                              "n_initial": self.n_initial}}

    def __repr__(self):
        return f"Heat1D(alpha={self.alpha})"
