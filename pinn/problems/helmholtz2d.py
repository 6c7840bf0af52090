"""2-D Helmholtz problem with exact solution sin(a1 pi x) sin(a2 pi y)."""
import numpy as np
import torch

from .base import Condition, Problem, box_boundary_2d, check_bounds


class Helmholtz2D(Problem):
    """``Laplace u + k^2 u = q`` on ``[-1, 1]^2``, ``u = 0`` on the boundary.

    ``q = (k^2 - (a1 pi)^2 - (a2 pi)^2) sin(a1 pi x) sin(a2 pi y)``, exact
    solution ``u = sin(a1 pi x) sin(a2 pi y)`` (Wang, Teng & Perdikaris 2021).

    Parameters
    ----------
    a1, a2 : int, default 1, 4
    k : float, default 1.0
    lower, upper : sequence of 2 floats, default (-1, -1), (1, 1)
        The rectangle (the boundary values are the exact solution there).
    """

    name = "helmholtz2d"
    hessian_rows = (0, 1)
    defaults = dict(width=50, depth=3, adam_steps=3000, lbfgs_steps=1000, lr=1e-3,
                    n_collocation=2048, n_boundary=512)

    def __init__(self, a1=1, a2=4, k=1.0, lower=(-1.0, -1.0), upper=(1.0, 1.0)):
        self.a1, self.a2, self.k = int(a1), int(a2), float(k)
        self.lower, self.upper = check_bounds(lower, upper)
        if self.lower.size != 2:
            raise ValueError(f"lower and upper must have 2 entries, got {lower!r}, {upper!r}")

    def _q(self, x, y, sin):
        c = self.k**2 - (self.a1 * np.pi) ** 2 - (self.a2 * np.pi) ** 2
        return c * sin(self.a1 * np.pi * x) * sin(self.a2 * np.pi * y)

    def pde_residual(self, x, u, grad, hess):
        return hess[:, 0, 0] + hess[:, 1, 1] + self.k**2 * u - self._q(x[:, 0], x[:, 1], torch.sin)

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
        return np.sin(self.a1 * np.pi * x[:, 0]) * np.sin(self.a2 * np.pi * x[:, 1])

    def config(self):
        return {"name": self.name, "kwargs": {"a1": self.a1, "a2": self.a2, "k": self.k,
                                              "lower": self.lower.tolist(),
                                              "upper": self.upper.tolist()}}

    def __repr__(self):
        box = "" if self.lower.tolist() == [-1.0, -1.0] and self.upper.tolist() == [1.0, 1.0] \
            else f", lower={self.lower.tolist()}, upper={self.upper.tolist()}"
        return f"Helmholtz2D(a1={self.a1}, a2={self.a2}, k={self.k}{box})"
