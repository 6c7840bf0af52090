"""Common machinery for PDE problems: domains, samplers, derivatives, loss terms.

A problem is described by

* a box domain ``lower <= x <= upper`` (time, when present, is the *last*
  coordinate),
* a PDE residual ``pde_residual(x, u, grad, hess)`` written with tensors only,
  so that the same function serves training (derivatives by
  ``torch.autograd.grad``) and the NTK (derivatives by ``torch.func``),
* boundary / initial *conditions*: point sets with target values,
* a reference solution and a test grid for the relative L2 error.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Problem", "Condition", "derivatives", "derivatives_func", "SAMPLERS"]

SAMPLERS = ("uniform", "sobol", "grid")


@dataclass
class Condition:
    """A boundary or initial condition ``u(x) = target`` on a point set.

    Attributes
    ----------
    name : str
        Loss-term name (e.g. ``"bc"``, ``"ic"``).
    x : numpy.ndarray, shape (n, d), float64
    target : numpy.ndarray, shape (n,), float64
    """

    name: str
    x: np.ndarray
    target: np.ndarray


def _check_sampler(method):
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")


def sample_box(lower, upper, n, method="sobol", seed=0):
    """Sample ``n`` points in the box ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : array_like, shape (d,)
    n : int
        Number of points (for ``"grid"`` the nearest tensor grid with at most
        ``n`` points, at least 2 per axis).
    method : {"uniform", "sobol", "grid"}
    seed : int

    Returns
    -------
    numpy.ndarray, shape (n', d), float64
    """
    _check_sampler(method)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    d = lower.size
    if method == "uniform":
        u = np.random.default_rng(seed).uniform(size=(n, d))
    elif method == "sobol":
        from scipy.stats import qmc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warning for n != 2^m
            u = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    else:
        m = max(2, int(math.floor(n ** (1.0 / d) + 1e-9)))
        axes = [np.linspace(0.0, 1.0, m) for _ in range(d)]
        u = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    return lower + (upper - lower) * u


def sample_1d(a, b, n, method, seed):
    """``n`` points in ``[a, b]`` (shape (n,)) by the given sampler."""
    return sample_box([a], [b], n, method, seed)[:, 0]


def derivatives(model, x, hessian_rows=()):
    """Network value, gradient and selected Hessian rows by ``torch.autograd``.

    Parameters
    ----------
    model : callable
        Maps a tensor of shape (N, d) to shape (N, 1) (or (N,)).
    x : torch.Tensor, shape (N, d)
    hessian_rows : tuple of int
        Rows ``i`` of the Hessian ``d(du/dx_i)/dx`` to compute; other rows are
        zero.

    Returns
    -------
    u : torch.Tensor, shape (N,)
    grad : torch.Tensor, shape (N, d)
    hess : torch.Tensor, shape (N, d, d)
    """
    x = x.detach().requires_grad_(True)
    u = model(x).reshape(x.shape[0])
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    rows = []
    for i in range(x.shape[1]):
        if i in hessian_rows:
            (h,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)
            rows.append(h)
        else:
            rows.append(torch.zeros_like(g))
    return u, g, torch.stack(rows, dim=1)


def derivatives_func(f_single, x):
    """Value, gradient and full Hessian by ``torch.func`` (vmappable).

    Parameters
    ----------
    f_single : callable
        Maps one point, tensor of shape (d,), to a scalar tensor.
    x : torch.Tensor, shape (N, d)

    Returns
    -------
    u : (N,), grad : (N, d), hess : (N, d, d)
    """
    from torch.func import jacrev, vmap

    u = vmap(f_single)(x)
    g = vmap(jacrev(f_single))(x)
    h = vmap(jacrev(jacrev(f_single)))(x)
    return u, g, h


class Problem:
    """Base class of a PDE problem on a box domain.

    Subclasses set ``name``, ``lower``, ``upper``, ``hessian_rows`` and
    implement :meth:`pde_residual`, :meth:`conditions` and :meth:`exact` (or
    override :meth:`reference`).

    Attributes
    ----------
    name : str
    lower, upper : numpy.ndarray, shape (d,)
    time_dependent : bool
        If true the last coordinate is time.
    hessian_rows : tuple of int
        Hessian rows the residual needs.
    defaults : dict
        Default training settings (``width``, ``depth``, ``adam_steps``,
        ``lbfgs_steps``, ``lr``, ``n_collocation``, ``n_boundary``).
    """

    name = "problem"
    lower = np.zeros(1)
    upper = np.ones(1)
    time_dependent = False
    hessian_rows: tuple = ()
    loss_weights: dict = {}
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=512, n_boundary=128)

    @property
    def dim(self):
        """Number of input coordinates."""
        return int(np.asarray(self.lower).size)

    # ----------------------------------------------------------------- sampling
    def sample_collocation(self, n, method="sobol", seed=0):
        """Interior collocation points, numpy array (n, d) float64."""
        return sample_box(self.lower, self.upper, n, method, seed)

    def conditions(self, n, method="sobol", seed=0):
        """Boundary/initial conditions, a list of :class:`Condition`."""
        raise NotImplementedError

    def boundary_points(self, n, method="sobol", seed=0):
        """All condition points stacked, numpy array (n', d) (for the NTK)."""
        return np.concatenate([c.x for c in self.conditions(n, method, seed)], axis=0)

    # ---------------------------------------------------------------- residual
    def pde_residual(self, x, u, grad, hess):
        """PDE residual at collocation points.

        Parameters
        ----------
        x : torch.Tensor, shape (N, d)
        u : torch.Tensor, shape (N,)
        grad : torch.Tensor, shape (N, d)
        hess : torch.Tensor, shape (N, d, d)

        Returns
        -------
        torch.Tensor, shape (N,)
        """
        raise NotImplementedError

    def residual(self, model, x):
        """PDE residual of ``model`` at ``x`` (tensor (N, d)) via autograd."""
        u, g, h = derivatives(model, x, self.hessian_rows)
        return self.pde_residual(x, u, g, h)

    def losses(self, model, batch):
        """Mean-square loss terms.

        Parameters
        ----------
        model : torch.nn.Module
        batch : dict
            ``{"pde": x_r, name: (x_c, target_c), ...}`` with tensors.

        Returns
        -------
        dict of str -> scalar tensor (unweighted)
        """
        out = {"pde": self.residual(model, batch["pde"]).pow(2).mean()}
        for name, val in batch.items():
            if name == "pde":
                continue
            xc, tc = val
            out[name] = (model(xc).reshape(-1) - tc).pow(2).mean()
        return out

    def make_batch(self, n_collocation, n_boundary, method="sobol", seed=0,
                   dtype=torch.float32):
        """Tensors for :meth:`losses`: collocation points and conditions."""
        batch = {"pde": torch.as_tensor(self.sample_collocation(n_collocation, method, seed),
                                        dtype=dtype)}
        for c in self.conditions(n_boundary, method, seed + 1):
            batch[c.name] = (torch.as_tensor(c.x, dtype=dtype),
                             torch.as_tensor(c.target, dtype=dtype))
        return batch

    # ---------------------------------------------------------------- reference
    def exact(self, x):
        raise NotImplementedError

    def reference(self, x):
        """Reference solution at points ``x`` (numpy (n, d)) -> numpy (n,)."""
        return self.exact(np.asarray(x, dtype=np.float64))

    def test_grid(self, n_per_axis=None):
        """Test points and reference values for the relative L2 error.

        Returns
        -------
        x : numpy.ndarray, shape (n, d), float64
        u : numpy.ndarray, shape (n,), float64
        """
        n = n_per_axis or (1001 if self.dim == 1 else 101)
        axes = [np.linspace(lo, hi, n) for lo, hi in zip(self.lower, self.upper)]
        x = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
        return x, self.reference(x)

    def l2_error(self, model, grid=None):
        """Relative L2 error ``||u_model - u_ref|| / ||u_ref||`` on the test grid."""
        x, u = grid if grid is not None else self._cached_grid()
        p = next(iter(model.parameters()), None)
        dtype = p.dtype if p is not None else torch.float32
        with torch.no_grad():
            pred = model(torch.as_tensor(x, dtype=dtype)).reshape(-1).double().numpy()
        return float(np.linalg.norm(pred - u) / np.linalg.norm(u))

    def _cached_grid(self):
        if getattr(self, "_grid", None) is None:
            self._grid = self.test_grid()
        return self._grid

    def __repr__(self):
        return f"{type(self).__name__}()"


def box_boundary_2d(lower, upper, n, method, seed):
    """``n`` points on the boundary of a rectangle, numpy (n, 2)."""
    s = sample_1d(0.0, 4.0, n, method, seed)
    s = np.minimum(s, 4.0 - 1e-12)
    (x0, y0), (x1, y1) = lower, upper
    side = np.floor(s).astype(int)
    r = s - side
    x = np.where(side == 0, x0 + r * (x1 - x0), np.where(side == 1, x1,
                 np.where(side == 2, x1 - r * (x1 - x0), x0)))
    y = np.where(side == 0, y0, np.where(side == 1, y0 + r * (y1 - y0),
                 np.where(side == 2, y1, y1 - r * (y1 - y0))))
    return np.stack([x, y], axis=1)


def space_time_boundary(xa, xb, t1, n, method, seed):
    """Dirichlet points ``x in {xa, xb}``, ``t in [0, t1]``, numpy (n, 2)."""
    t = sample_1d(0.0, t1, n, method, seed)
    x = np.where(np.arange(n) % 2 == 0, xa, xb).astype(np.float64)
    return np.stack([x, t], axis=1)


def initial_points(xa, xb, n, method, seed):
    """Points ``t = 0``, ``x in [xa, xb]``, numpy (n, 2)."""
    x = sample_1d(xa, xb, n, method, seed)
    return np.stack([x, np.zeros_like(x)], axis=1)
