"""Domains for user-defined problems: :class:`Interval`, :class:`Box` (:class:`Rectangle`),
:class:`Disk` and the space-time product :class:`TimeDomain`.

Every domain samples interior and boundary points (``"uniform"``, ``"sobol"`` or ``"grid"``,
deterministic per seed), gives outward normals on its boundary, a deterministic test point
set, and a JSON description (:meth:`Domain.config`, :func:`domain_from_config`).
"""
from __future__ import annotations

import math

import numpy as np

from .base import as_points, check_bounds, check_count, sample_1d, sample_box

__all__ = ["Domain", "Interval", "Box", "Rectangle", "Disk", "TimeDomain",
           "domain_from_config"]


class Domain:
    """A spatial domain (abstract). Attributes ``dim``, ``lower``, ``upper`` (bounding box)."""

    time_dependent = False

    def sample_interior(self, n, method="sobol", seed=0):
        """``n`` points inside, numpy (n, dim) float64."""
        raise NotImplementedError

    def sample_boundary(self, n, method="sobol", seed=0):
        """``n`` points on the boundary, numpy (n, dim) float64."""
        raise NotImplementedError

    def normal(self, x):
        """Outward unit normals at boundary points ``x`` (n, dim) -> (n, dim)."""
        raise NotImplementedError

    def test_points(self, n_per_axis=None):
        """Deterministic test points, numpy (m, dim): a tensor grid of the bounding box
        (``n_per_axis`` per axis; default 1001 in 1-D, else 101) restricted to the domain."""
        n = n_per_axis or (1001 if self.dim == 1 else 101)
        axes = [np.linspace(lo, hi, n) for lo, hi in zip(self.lower, self.upper)]
        x = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
        return x[self.inside(x)]

    def inside(self, x):
        """Boolean mask (n,): closed-domain membership of points ``x`` (n, dim)."""
        x = np.asarray(x, dtype=np.float64)
        return np.all((x >= self.lower) & (x <= self.upper), axis=1)

    def config(self):
        """JSON-serialisable description (:func:`domain_from_config`)."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self):
        return hash(repr(self.config()))


class Box(Domain):
    """The box ``lower <= x <= upper`` in any dimension.

    Parameters
    ----------
    lower, upper : sequence of float, shape (d,)
    """

    def __init__(self, lower, upper):
        self.lower, self.upper = check_bounds(lower, upper)
        self.dim = self.lower.size

    def sample_interior(self, n, method="sobol", seed=0):
        return sample_box(self.lower, self.upper, check_count("n", n), method, seed)

    def sample_boundary(self, n, method="sobol", seed=0):
        n = check_count("n", n)
        lo, hi, d = self.lower, self.upper, self.dim
        if d == 1:
            # the two end points, alternating (n = 2: [lower, upper])
            return np.where(np.arange(n) % 2 == 0, lo[0], hi[0])[:, None]
        # faces chosen with probability proportional to their area; the first unit
        # coordinate picks the face, the other d - 1 place the point on it
        # (in 2-D only the first unit coordinate is used: a 1-D sample of exactly n points,
        # also for "grid"; in d >= 3 "grid" gives at most n points, like sample_box)
        k = 1 if d == 2 else d
        u = sample_box(np.zeros(k), np.ones(k), n, method, seed)
        ext = hi - lo
        area = np.array([np.prod(np.delete(ext, i)) for i in range(d)])
        w = np.concatenate([area, area])  # face k < d: x_k = lower_k; k >= d: x_k = upper_k
        cum = np.cumsum(w) / w.sum()
        face = np.minimum(np.searchsorted(cum, u[:, 0], side="right"), 2 * d - 1)
        lo_face = np.concatenate([[0.0], cum[:-1]])[face]
        r = np.clip((u[:, 0] - lo_face) / (cum[face] - lo_face), 0.0, 1.0)
        x = np.empty((len(u), d))
        for k in range(2 * d):
            sel = face == k
            if not np.any(sel):
                continue
            i = k % d
            others = [j for j in range(d) if j != i]
            # coordinates on the face: the remaining unit coordinates, the first of them
            # replaced by r (keeps the low-discrepancy structure in 2-D)
            cols = np.column_stack([r[sel]] + [u[sel, c] for c in range(1, d - 1)])
            for c, j in enumerate(others):
                x[sel, j] = lo[j] + ext[j] * cols[:, c]
            x[sel, i] = lo[i] if k < d else hi[i]
        return x

    def normal(self, x):
        x = as_points(x, self.dim, "x")
        ext = self.upper - self.lower
        dist = np.concatenate([np.abs(x - self.lower) / ext, np.abs(x - self.upper) / ext],
                              axis=1)
        k = np.argmin(dist, axis=1)
        nrm = np.zeros_like(x)
        i = k % self.dim
        nrm[np.arange(len(x)), i] = np.where(k < self.dim, -1.0, 1.0)
        return nrm

    def config(self):
        return {"type": type(self).__name__, "lower": self.lower.tolist(),
                "upper": self.upper.tolist()}

    def __repr__(self):
        return f"{type(self).__name__}({self.lower.tolist()}, {self.upper.tolist()})"


class Interval(Box):
    """The interval ``[a, b]`` (a 1-D :class:`Box`)."""

    def __init__(self, a, b):
        super().__init__([a], [b])

    def config(self):
        return {"type": "Interval", "a": float(self.lower[0]), "b": float(self.upper[0])}

    def __repr__(self):
        return f"Interval({self.lower[0]:g}, {self.upper[0]:g})"


class Rectangle(Box):
    """The rectangle ``[x0, x1] x [y0, y1]`` (a 2-D :class:`Box`): ``Rectangle([x0, y0], [x1, y1])``."""

    def __init__(self, lower, upper):
        super().__init__(lower, upper)
        if self.dim != 2:
            raise ValueError(f"a Rectangle is 2-D; got lower of length {self.dim} (use Box)")


class Disk(Domain):
    """The disk ``|x - center| <= radius`` in 2-D.

    Parameters
    ----------
    center : sequence of 2 floats
    radius : float > 0
    """

    dim = 2

    def __init__(self, center, radius):
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        if c.shape != (2,) or not np.all(np.isfinite(c)):
            raise ValueError(f"center must be 2 finite numbers, got {center!r}")
        if not (isinstance(radius, (int, float, np.floating)) and math.isfinite(radius)
                and radius > 0):
            raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
        self.center, self.radius = c, float(radius)
        self.lower, self.upper = c - self.radius, c + self.radius

    def sample_interior(self, n, method="sobol", seed=0):
        # area-preserving map of the unit square: r = R sqrt(u), theta = 2 pi v
        u = sample_box([0.0, 0.0], [1.0, 1.0], check_count("n", n), method, seed)
        r = self.radius * np.sqrt(u[:, 0])
        th = 2 * np.pi * u[:, 1]
        return self.center + np.stack([r * np.cos(th), r * np.sin(th)], axis=1)

    def sample_boundary(self, n, method="sobol", seed=0):
        th = 2 * np.pi * sample_1d(0.0, 1.0, check_count("n", n), method, seed)
        return self.center + self.radius * np.stack([np.cos(th), np.sin(th)], axis=1)

    def normal(self, x):
        d = as_points(x, 2, "x") - self.center
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def inside(self, x):
        d = np.asarray(x, dtype=np.float64) - self.center
        # rounding of center + offset: a few ulps of the coordinates' magnitude
        tol = 8 * np.finfo(np.float64).eps * (self.radius + np.abs(self.center).max())
        return np.hypot(d[:, 0], d[:, 1]) <= self.radius + tol

    def config(self):
        return {"type": "Disk", "center": self.center.tolist(), "radius": self.radius}

    def __repr__(self):
        return f"Disk({self.center.tolist()}, {self.radius:g})"


class TimeDomain(Domain):
    """Space-time domain ``space x [t0, t1]``; time is the *last* coordinate.

    Boundary points are on the spatial boundary at times in ``[t0, t1]``; initial points
    (:meth:`sample_initial`) are in the space domain at ``t0``.

    Parameters
    ----------
    space : Domain
    t0, t1 : float, t0 < t1
    """

    time_dependent = True

    def __init__(self, space, t0, t1):
        if not isinstance(space, Domain) or isinstance(space, TimeDomain):
            raise TypeError(f"space must be a spatial Domain, got {type(space).__name__}")
        lo, hi = check_bounds([t0], [t1])
        self.space, self.t0, self.t1 = space, float(lo[0]), float(hi[0])
        self.dim = space.dim + 1
        self.lower = np.append(space.lower, self.t0)
        self.upper = np.append(space.upper, self.t1)

    def sample_interior(self, n, method="sobol", seed=0):
        n = check_count("n", n)
        if isinstance(self.space, Box):
            return sample_box(self.lower, self.upper, n, method, seed)
        x = self.space.sample_interior(n, method, seed)
        t = sample_1d(self.t0, self.t1, len(x), method, seed + 1)
        return np.column_stack([x, t])

    def sample_boundary(self, n, method="sobol", seed=0):
        t = sample_1d(self.t0, self.t1, check_count("n", n), method, seed)
        x = self.space.sample_boundary(len(t), method, seed + 1)
        return np.column_stack([x, t])

    def sample_initial(self, n, method="sobol", seed=0):
        """``n`` points ``(x, t0)`` with ``x`` in the space domain, numpy (n, dim)."""
        x = self.space.sample_interior(check_count("n", n), method, seed)
        return np.column_stack([x, np.full(len(x), self.t0)])

    def normal(self, x):
        x = as_points(x, self.dim, "x")
        return np.column_stack([self.space.normal(x[:, :-1]), np.zeros(len(x))])

    def inside(self, x):
        x = np.asarray(x, dtype=np.float64)
        return self.space.inside(x[:, :-1]) & (x[:, -1] >= self.t0) & (x[:, -1] <= self.t1)

    def config(self):
        return {"type": "TimeDomain", "space": self.space.config(), "t0": self.t0,
                "t1": self.t1}

    def __repr__(self):
        return f"TimeDomain({self.space!r}, {self.t0:g}, {self.t1:g})"


_TYPES = {"Box": Box, "Interval": Interval, "Rectangle": Rectangle, "Disk": Disk,
          "TimeDomain": TimeDomain}


def domain_from_config(cfg):
    """The domain described by ``Domain.config()``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in _TYPES:
        raise ValueError(f"unknown domain type {kind!r}; one of {sorted(_TYPES)}")
    if kind == "TimeDomain":
        return TimeDomain(domain_from_config(cfg["space"]), cfg["t0"], cfg["t1"])
    return _TYPES[kind](**cfg)
