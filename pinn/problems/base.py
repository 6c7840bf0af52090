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

__all__ = ["Problem", "Condition", "derivatives", "derivatives_func", "SAMPLERS", "check_count",
           "check_bounds", "as_points", "as_values"]

SAMPLERS = ("uniform", "sobol", "grid")


@dataclass
class Condition:
    """A boundary or initial condition ``u(x) = target`` (or ``du/dn(x) = target``) on a
    point set.

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
    normal: np.ndarray | None = None
    """Outward unit normals, shape (n, d), for a Neumann condition ``du/dn = target``
    (``None``: a Dirichlet condition ``u = target``)."""


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


def check_count(name, n, *, even=False, allow_none=False):
    """``n`` as a positive int, or one ValueError naming ``name`` (bools, floats, <= 0 refused).

    With ``even=True`` an odd count is refused (it would be split in half)."""
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    if even and n % 2:
        raise ValueError(f"{name} must be even (it is split in half between the boundary and "
                         f"the initial condition), got {n!r}; or give n_initial separately")
    return int(n)


def as_points(x, dim, name):
    """``x`` as a float64 array (n, dim) with finite entries, or one ValueError naming it."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and dim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != dim or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, {dim}) with n >= 1, got {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def as_values(y, n, name):
    """``y`` as a float64 vector (n,) (accepts (n, 1)), finite, or one ValueError naming it."""
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) or ({n}, 1), got {np.shape(y)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def check_bounds(lower, upper):
    """``lower``, ``upper`` as float64 vectors with finite ``lower < upper``, or one ValueError."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    if lo.size < 1 or lo.shape != hi.shape:
        raise ValueError(f"lower and upper must have the same length >= 1, got {lower!r}, "
                         f"{upper!r}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError(f"need finite lower < upper, got lower={lower!r}, upper={upper!r}")
    return lo, hi


class Problem:
    """Base class of a PDE problem on a box domain.

    Subclasses set ``name``, ``lower``, ``upper``, ``hessian_rows`` and
    implement :meth:`pde_residual`, :meth:`conditions` and :meth:`exact` (or
    override :meth:`reference`). A problem without a subclass:
    :func:`pinn.define_problem` (``Problem.from_residual``).

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
    n_initial : int or None
        Initial-condition points of a time-dependent problem (``None``: the
        problem's historical rule, see its docstring).
    anchors : numpy.ndarray (m, d) or None
        User-given collocation points added to the sampled ones (:meth:`set_points`).
    condition_points : dict of str -> numpy.ndarray (m, d), or None
        User-given points of conditions, by name (:meth:`set_points`).
    collocation_points : numpy.ndarray (m, d) or None
        User-given collocation points used *instead of* sampled ones.
    observations : list of Condition
        Data terms ``u(x_k) = y_k`` (:meth:`add_observations`), e.g. for inverse problems.
    """

    name = "problem"
    lower = np.zeros(1)
    upper = np.ones(1)
    time_dependent = False
    hessian_rows: tuple = ()
    loss_weights: dict = {}
    defaults = dict(width=32, depth=3, adam_steps=2000, lbfgs_steps=500, lr=1e-3,
                    n_collocation=512, n_boundary=128)
    n_initial = None
    anchors = None
    collocation_points = None
    condition_points = None
    observations: tuple = ()

    @property
    def dim(self):
        """Number of input coordinates."""
        return int(np.asarray(self.lower).size)

    def parameters(self):
        """Trainable PDE coefficients (``torch.nn.Parameter``), empty unless the problem is
        an inverse problem; :func:`pinn.train` optimises them with the network."""
        return []

    def named_parameters(self):
        """``(name, parameter)`` pairs of :meth:`parameters` (names are stable for save/load)."""
        return []

    def to(self, device):
        """Move the trainable parameters (:meth:`parameters`) to ``device`` in place (their
        identity is kept, so an optimizer built before still holds them). Call it with the
        model's device before training an inverse problem on a GPU. Returns ``self``."""
        device = torch.device(device)
        with torch.no_grad():
            for p in self.parameters():
                p.data = p.data.to(device)
        return self

    def config(self):
        """JSON-serialisable constructor arguments (``{"name": ..., "kwargs": {...}}``) so that
        ``get_problem(cfg["name"], **cfg["kwargs"])`` rebuilds the problem.

        Raises
        ------
        TypeError
            If the problem cannot be rebuilt from a name and arguments (a problem made by
            :func:`pinn.define_problem` holds user functions).
        """
        raise TypeError(f"{type(self).__name__} cannot be described by a name and arguments")

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

    def set_points(self, collocation=None, anchors=None, **conditions):
        """Use user-given points.

        Parameters
        ----------
        collocation : array_like (m, d), optional
            Used instead of sampled collocation points (``n_collocation`` is then ignored).
        anchors : array_like (m, d), optional
            Added to the sampled (or given) collocation points (DeepXDE's ``anchors``).
        **conditions : array_like (m, d)
            Points of a condition by its loss-term name (``bc=X``, ``ic=X``), used instead
            of sampled ones; the targets come from :meth:`condition_value`. The points must
            lie in the box ``lower <= x <= upper`` (an initial condition's at the initial
            time).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad points, or a name that is not a condition of the problem.
        """
        names = {c.name for c in self.conditions(4, "uniform", 0)}
        for name, x in conditions.items():
            if name not in names:
                raise ValueError(f"{name}: not a condition of {self!r}; its conditions are "
                                 f"{sorted(names)}")
            x = as_points(x, self.dim, name)
            if np.any(x < self.lower) or np.any(x > self.upper):
                raise ValueError(f"{name}: points must lie in the box lower <= x <= upper")
            self.condition_value(name, x)  # refuses points off the condition's set
        if collocation is not None:
            self.collocation_points = as_points(collocation, self.dim, "collocation")
        if anchors is not None:
            self.anchors = as_points(anchors, self.dim, "anchors")
        if conditions:
            cp = dict(self.condition_points or {})
            cp.update({k: as_points(v, self.dim, k) for k, v in conditions.items()})
            self.condition_points = cp
        return self

    def condition_value(self, name, x):
        """Target values of condition ``name`` at points ``x`` (n, d) -> (n,) (for user-given
        condition points, :meth:`set_points`).

        Raises
        ------
        ValueError
            If the problem does not provide them, or ``x`` is off the condition's set.
        """
        raise ValueError(f"{self!r} takes no user-given points for its condition {name!r}")

    def check_initial_points(self, name, x):
        """Refuse initial-condition points ``x`` (n, d) that are not at the initial time."""
        if not np.all(x[:, -1] == self.lower[-1]):
            raise ValueError(f"{name}: initial-condition points need t = {self.lower[-1]:g}")

    def check_boundary_points(self, name, x, dims=None):
        """Refuse boundary points ``x`` (n, d) not on a face ``x_i = lower_i`` or
        ``x_i = upper_i`` for some ``i`` in ``dims`` (default all coordinates)."""
        dims = list(range(self.dim)) if dims is None else list(dims)
        on = (x[:, dims] == self.lower[dims]) | (x[:, dims] == self.upper[dims])
        if not np.all(on.any(axis=1)):
            raise ValueError(f"{name}: points must lie on the boundary (a coordinate in "
                             f"{dims} equal to its lower or upper bound)")

    def add_observations(self, x, y, name="data"):
        """Add a data term ``mean_k (u(x_k) - y_k)^2`` named ``name`` to the loss.

        Parameters
        ----------
        x : array_like, shape (n, d)
        y : array_like, shape (n,) or (n, 1)
        name : str
            Loss-term name (must not clash with another term).

        Returns
        -------
        self
        """
        x = as_points(x, self.dim, "x")
        y = as_values(y, len(x), "y")
        if not isinstance(name, str) or not name or name == "pde" or \
                name in {c.name for c in self.observations}:
            raise ValueError(f"name must be a new non-empty loss-term name, got {name!r}")
        self.observations = tuple(self.observations) + (Condition(name, x, y),)
        return self

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
            ``{"pde": x_r, name: (x_c, target_c), ...}`` with tensors; a Neumann
            condition is ``(x_c, target_c, normal_c)`` (loss on ``grad u . normal``).

        Returns
        -------
        dict of str -> scalar tensor (unweighted)
        """
        out = {"pde": self.residual(model, batch["pde"]).pow(2).mean()}
        for name, val in batch.items():
            if name == "pde":
                continue
            if len(val) == 3:
                xc, tc, nc = val
                _, g, _ = derivatives(model, xc, ())
                out[name] = ((g * nc).sum(dim=1) - tc).pow(2).mean()
                continue
            xc, tc = val
            out[name] = (model(xc).reshape(-1) - tc).pow(2).mean()
        return out

    def make_batch(self, n_collocation, n_boundary, method="sobol", seed=0,
                   dtype=torch.float32, *, n_initial=None, device=None):
        """Tensors for :meth:`losses`: collocation points and conditions.

        Parameters
        ----------
        n_collocation, n_boundary : int
            Positive counts (``n_collocation`` is ignored when the problem has
            user-given ``collocation_points``).
        method : {"uniform", "sobol", "grid"}
        seed : int
        dtype : torch.dtype
        n_initial : int, optional
            Initial-condition points (time-dependent problems); default
            ``self.n_initial``.
        device : torch.device or str, optional

        Returns
        -------
        dict
            ``"pde"``: tensor (N, d); each condition: ``(x, target)`` or ``(x, target,
            normal)``; observations ``(x, y)``.

        Raises
        ------
        ValueError
            A count that is not a positive integer, ``n_initial`` for a problem
            without an initial condition.
        """
        check_count("n_collocation", n_collocation)
        check_count("n_boundary", n_boundary)
        n_initial = self.n_initial if n_initial is None else n_initial
        kw = {}
        if n_initial is not None:
            if not self.time_dependent:
                raise ValueError(f"n_initial: {self!r} has no initial condition")
            kw["n_initial"] = check_count("n_initial", n_initial)

        def t(a):
            return torch.as_tensor(a, dtype=dtype, device=device)

        if self.collocation_points is not None:
            xr = self.collocation_points
        else:
            xr = self.sample_collocation(int(n_collocation), method, seed)
        if self.anchors is not None:
            xr = np.concatenate([xr, self.anchors], axis=0)
        batch = {"pde": t(xr)}
        given = self.condition_points or {}
        for c in self.conditions(int(n_boundary), method, seed + 1, **kw):
            if c.name in given:
                c = Condition(c.name, given[c.name], self.condition_value(c.name, given[c.name]))
            batch[c.name] = (t(c.x), t(c.target)) if c.normal is None else \
                (t(c.x), t(c.target), t(c.normal))
        for c in self.observations:
            if c.name in batch:
                raise ValueError(f"observation name {c.name!r} clashes with a loss term")
            batch[c.name] = (t(c.x), t(c.target))
        return batch

    # ---------------------------------------------------------------- reference
    def exact(self, x):
        raise NotImplementedError

    def reference(self, x):
        """Reference solution at points ``x`` (numpy (n, d)) -> numpy (n,)."""
        return self.exact(np.asarray(x, dtype=np.float64))

    def has_reference(self):
        """Whether :meth:`test_grid` can give reference values."""
        return True

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

    def predict(self, model, x):
        """``model`` at points ``x`` (numpy (n, d)) -> numpy (n,) float64 (see :func:`pinn.predict`)."""
        from ..models import predict

        return predict(model, x)

    def l2_error(self, model, grid=None):
        """Relative L2 error ``||u_model - u_ref|| / ||u_ref||`` on the test grid.

        ``nan`` when the problem has no reference (:meth:`has_reference`). The model is
        evaluated on the device of its first parameter.
        """
        if grid is None and not self.has_reference():
            return float("nan")
        x, u = grid if grid is not None else self._cached_grid()
        from ..metrics import relative_l2

        return relative_l2(self.predict(model, x), u)

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
