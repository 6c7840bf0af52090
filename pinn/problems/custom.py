"""Problems without a subclass: a residual function, a domain, conditions, a reference.

>>> import numpy as np, torch, pinn
>>> geom = pinn.Interval(-1.0, 1.0)
>>> def pde(x, u, du, d2u):                      # -u'' = pi^2 sin(pi x)
...     return -d2u[:, 0, 0] - np.pi**2 * torch.sin(np.pi * x[:, 0])
>>> prob = pinn.define_problem(pde, geom, [pinn.DirichletBC(0.0)],
...                            reference=lambda x: np.sin(np.pi * x[:, 0]))
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from .base import Condition, Problem, as_points, as_values, check_count
from .domains import Domain

__all__ = ["DirichletBC", "NeumannBC", "InitialCondition", "PointSetBC", "PDEProblem",
           "define_problem"]


def _values(value, x, name):
    """Target values of a condition at points ``x`` (n, d): a number or ``value(x)``."""
    if callable(value):
        v = value(np.array(x, dtype=np.float64))
        if torch.is_tensor(v):
            v = v.detach().cpu().numpy()
    else:
        v = value
    return as_values(v, len(x), f"{name} value")


class _BoundaryCondition:
    kind = "boundary"
    neumann = False

    def __init__(self, value, on=None, *, name="bc", points=None, n=None):
        if not (callable(value) or isinstance(value, (int, float, np.floating))) \
                or isinstance(value, bool):
            raise TypeError(f"value must be a number or a callable x -> values, got "
                            f"{type(value).__name__}")
        if on is not None and not callable(on):
            raise TypeError(f"on must be a callable x -> bool mask, got {type(on).__name__}")
        if not isinstance(name, str) or not name or name == "pde":
            raise ValueError(f"name must be a non-empty loss-term name other than 'pde', got "
                             f"{name!r}")
        self.value, self.on, self.name = value, on, name
        self.points = points
        self.n = check_count("n", n, allow_none=True)

    def _select(self, domain, n, method, seed):
        """``n`` boundary points where ``on`` holds (oversampling as needed)."""
        if self.on is None:
            return domain.sample_boundary(n, method, seed)
        for factor in (2, 8, 32, 128):
            x = domain.sample_boundary(n * factor, method, seed)
            keep = np.asarray(self.on(x), dtype=bool).reshape(-1)
            if keep.shape != (len(x),):
                raise ValueError(f"{self.name}: on(x) must return one bool per point")
            if keep.sum() >= n:
                return x[keep][:n]
        raise ValueError(f"{self.name}: on(x) selects fewer than {n} of {len(x)} boundary "
                         f"points; give the points explicitly (points=...)")

    def make(self, domain, n, method, seed):
        """The :class:`Condition` with ``self.n`` (or ``n``) points."""
        if self.points is not None:
            x = as_points(self.points, domain.dim, f"{self.name} points")
        else:
            x = self._select(domain, self.n or n, method, seed)
        target = _values(self.value, x, self.name)
        return Condition(self.name, x, target, domain.normal(x) if self.neumann else None)


class DirichletBC(_BoundaryCondition):
    """``u = value`` on the boundary (where ``on(x)`` is true).

    Parameters
    ----------
    value : float or callable
        A number, or ``value(x)`` mapping numpy points (n, d) to (n,) or (n, 1).
    on : callable, optional
        ``on(x)`` -> bool mask (n,) selecting part of the boundary (DeepXDE's
        ``on_boundary``); default the whole boundary.
    name : str
        Loss-term name (default ``"bc"``; give distinct names to several conditions).
    points : array_like (m, d), optional
        User-given points instead of sampled ones.
    n : int, optional
        Points of this condition (default the problem's ``n_boundary``).
    """


class NeumannBC(_BoundaryCondition):
    """``du/dn = value`` (outward normal derivative) on the boundary; arguments as
    :class:`DirichletBC`."""

    neumann = True

    def __init__(self, value, on=None, *, name="neumann", points=None, n=None):
        super().__init__(value, on, name=name, points=points, n=n)


class InitialCondition(_BoundaryCondition):
    """``u(x, t0) = value(x, t0)`` on a :class:`TimeDomain`.

    Parameters
    ----------
    value : float or callable
        ``value(x)`` gets points (n, d) whose last column is ``t0``.
    name : str
        Default ``"ic"``.
    points : array_like (m, d), optional
    n : int, optional
        Default the problem's ``n_initial``.
    """

    kind = "initial"

    def __init__(self, value, *, name="ic", points=None, n=None):
        super().__init__(value, None, name=name, points=points, n=n)

    def make(self, domain, n, method, seed):
        if not domain.time_dependent:
            raise ValueError(f"{self.name}: an initial condition needs a TimeDomain, got "
                             f"{domain!r}")
        if self.points is not None:
            x = as_points(self.points, domain.dim, f"{self.name} points")
        else:
            x = domain.sample_initial(self.n or n, method, seed)
        return Condition(self.name, x, _values(self.value, x, self.name))


class PointSetBC:
    """Observed values ``u(x_k) = y_k`` (data term; DeepXDE's ``PointSetBC``).

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (n,) or (n, 1)
    name : str
        Default ``"data"``.
    """

    kind = "data"

    def __init__(self, x, y, *, name="data"):
        if not isinstance(name, str) or not name or name == "pde":
            raise ValueError(f"name must be a non-empty loss-term name, got {name!r}")
        self.x = np.array(x, dtype=np.float64)
        self.y = np.array(y, dtype=np.float64)
        self.name = name

    def make(self, domain, n, method, seed):
        x = as_points(self.x, domain.dim, f"{self.name} x")
        return Condition(self.name, x, as_values(self.y, len(x), f"{self.name} y"))


_CONDITIONS = (DirichletBC, NeumannBC, InitialCondition, PointSetBC)


class PDEProblem(Problem):
    """A problem given by functions (see :func:`define_problem` for the parameters)."""

    def __init__(self, residual, domain, conditions=(), reference=None, *, name="custom",
                 hessian=None, parameters=None, n_collocation=None, n_boundary=None,
                 n_initial=None, test_points=None, defaults=None):
        if not callable(residual):
            raise TypeError(f"residual must be callable, got {type(residual).__name__}")
        if not isinstance(domain, Domain):
            raise TypeError(f"domain must be a pinn Domain (Interval, Rectangle, Box, Disk, "
                            f"TimeDomain), got {type(domain).__name__}")
        conditions = list(conditions)
        for c in conditions:
            if not isinstance(c, _CONDITIONS):
                raise TypeError(f"conditions must be DirichletBC, NeumannBC, InitialCondition "
                                f"or PointSetBC objects, got {type(c).__name__}")
        names = [c.name for c in conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"conditions need distinct names (name=...), got {names}")
        if any(isinstance(c, InitialCondition) for c in conditions) and \
                not domain.time_dependent:
            raise ValueError("an InitialCondition needs a TimeDomain")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.residual_fn, self.domain, self.condition_list = residual, domain, conditions
        self.name = name
        self.lower, self.upper = domain.lower.copy(), domain.upper.copy()
        self.time_dependent = domain.time_dependent
        d = domain.dim
        if hessian is None:
            rows = tuple(range(d - 1 if domain.time_dependent else d))
        elif hessian == "full":
            rows = tuple(range(d))
        else:
            rows = tuple(int(i) for i in hessian)
            if any(not 0 <= i < d for i in rows):
                raise ValueError(f"hessian rows must be in [0, {d}), got {hessian!r}")
        self.hessian_rows = rows
        self._params = {}
        for k, v in dict(parameters or {}).items():
            if not isinstance(k, str) or not k.isidentifier():
                raise ValueError(f"parameters: names must be identifiers, got {k!r}")
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"parameters: {k} must be finite, got {v!r}")
            self._params[k] = torch.nn.Parameter(torch.tensor(v, dtype=torch.float64))
        self.defaults = dict(Problem.defaults)
        unknown = sorted(set(defaults or {}) - set(self.defaults))
        if unknown:
            raise ValueError(f"defaults: unknown keys {unknown}; known {sorted(self.defaults)}")
        self.defaults.update(defaults or {})
        if n_collocation is not None:
            self.defaults["n_collocation"] = check_count("n_collocation", n_collocation)
        if n_boundary is not None:
            self.defaults["n_boundary"] = check_count("n_boundary", n_boundary)
        if n_initial is not None and not domain.time_dependent:
            raise ValueError("n_initial: the domain has no time axis")
        self.n_initial = check_count("n_initial", n_initial, allow_none=True)
        self._reference_fn = None
        self._reference_data = None
        if reference is None:
            pass
        elif callable(reference):
            self._reference_fn = reference
        else:
            if isinstance(reference, (str, os.PathLike)):
                from ..metrics import load_reference

                x, y = load_reference(reference)
            else:
                x, y = reference
            x = as_points(x, d, "reference x")
            self._reference_data = (x, as_values(y, len(x), "reference y"))
        self._test_points = None if test_points is None else as_points(test_points, d,
                                                                        "test_points")

    # ------------------------------------------------------------------ problem API
    def parameters(self):
        return list(self._params.values())

    def named_parameters(self):
        return list(self._params.items())

    def sample_collocation(self, n, method="sobol", seed=0):
        return self.domain.sample_interior(n, method, seed)

    def conditions(self, n, method="sobol", seed=0, n_initial=None):
        n_initial = n_initial or self.n_initial or n
        out = []
        for k, c in enumerate(self.condition_list):
            m = n_initial if c.kind == "initial" else n
            out.append(c.make(self.domain, m, method, seed + 7 * k))
        return out

    def condition_value(self, name, x):
        for c in self.condition_list:
            if c.name == name and isinstance(c, (DirichletBC, InitialCondition)):
                if isinstance(c, InitialCondition):
                    self.check_initial_points(name, x)
                return _values(c.value, x, name)
        raise ValueError(f"{name}: give the points of this condition to its constructor "
                         f"(points=...)")

    def boundary_points(self, n, method="sobol", seed=0):
        pts = [c.x for c in self.conditions(n, method, seed)]
        return np.concatenate(pts, axis=0) if pts else np.zeros((0, self.dim))

    def pde_residual(self, x, u, grad, hess):
        params = {k: p.to(dtype=x.dtype, device=x.device) for k, p in self._params.items()}
        r = self.residual_fn(x, u, grad, hess, **params)
        if not torch.is_tensor(r) or r.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"residual must return a tensor of shape ({x.shape[0]},), got "
                             f"{getattr(r, 'shape', type(r).__name__)}")
        return r.reshape(x.shape[0])

    def has_reference(self):
        return self._reference_fn is not None or self._reference_data is not None

    def reference(self, x):
        x = as_points(x, self.dim, "x")
        if self._reference_fn is None:
            raise ValueError(f"{self!r}: the reference is data at fixed points (test_grid), "
                             f"not a function" if self._reference_data is not None else
                             f"{self!r} has no reference")
        return _values(self._reference_fn, x, "reference")

    def test_grid(self, n_per_axis=None):
        if self._reference_data is not None and n_per_axis is None:
            return self._reference_data
        x = self._test_points if self._test_points is not None and n_per_axis is None \
            else self.domain.test_points(n_per_axis)
        return x, self.reference(x)

    def __repr__(self):
        return f"PDEProblem({self.name!r}, {self.domain!r})"


def define_problem(residual, domain, conditions=(), reference=None, **kwargs):
    """A PDE problem from a residual function, a domain and conditions (no subclass).

    Parameters
    ----------
    residual : callable
        ``residual(x, u, grad, hess, **params) -> (N,)`` with torch tensors ``x`` (N, d),
        ``u`` (N,), ``grad`` (N, d), ``hess`` (N, d, d) (rows not listed in ``hessian`` are
        zero); ``params`` are the trainable coefficients (``parameters``) as scalar
        tensors. Write it with torch operations (it is also used by :func:`pinn.ntk`).
    domain : Domain
        :class:`Interval`, :class:`Rectangle`, :class:`Box`, :class:`Disk` or a
        :class:`TimeDomain` (time is the last coordinate).
    conditions : sequence
        :class:`DirichletBC`, :class:`NeumannBC`, :class:`InitialCondition`,
        :class:`PointSetBC` (distinct ``name`` each; each is a loss term).
    reference : callable, (x, y) arrays or path, optional
        Exact solution ``f(x) -> (n,)`` (numpy), or reference data: arrays or an ``.npz``
        (:func:`pinn.metrics.load_reference`); gives the test error. Without it the
        error is ``nan``.
    name : str
    hessian : sequence of int or "full", optional
        Hessian rows the residual uses; default all spatial rows (all rows without time).
        ``()`` for first-order PDEs (cheaper).
    parameters : dict of str -> float, optional
        Trainable PDE coefficients with initial values (inverse problems), passed to
        ``residual`` by name and returned by ``problem.parameters()``.
    n_collocation, n_boundary, n_initial : int, optional
        Default point counts (``n_initial``: initial-condition points; default
        ``n_boundary``). A condition's own ``n`` overrides them.
    test_points : array_like (m, d), optional
        Where the error is measured (default ``domain.test_points()``).
    defaults : dict, optional
        Other training defaults (``width``, ``depth``, ``adam_steps``, ``lbfgs_steps``,
        ``lr``).

    Returns
    -------
    PDEProblem
    """
    return PDEProblem(residual, domain, conditions, reference, **kwargs)


Problem.from_residual = staticmethod(define_problem)
