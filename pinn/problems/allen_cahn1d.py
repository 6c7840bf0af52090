"""Allen-Cahn equation (the standard eps = 1e-4 case) with a spectral reference."""
import functools

import numpy as np
import torch

from .base import Condition, Problem, check_count, initial_points, sample_1d


def etdrk4_allen_cahn(n=512, dt=1e-4, t_out=None, eps=1e-4, a=5.0):
    """Fourier spectral / ETDRK4 solution of ``u_t = eps u_xx + a u - a u^3``.

    Periodic on ``[-1, 1)`` with ``u(x, 0) = x^2 cos(pi x)``. The linear part
    ``eps d_xx + a`` is integrated exactly, the cubic term with the
    fourth-order exponential Runge-Kutta scheme of Cox & Matthews in the
    contour-integral form of Kassam & Trefethen (2005).

    Parameters
    ----------
    n : int
        Number of Fourier points ``x_j = -1 + 2 j / n``.
    dt : float
        Time step (``t_out`` spacing must be a multiple of it).
    t_out : array_like, optional
        Output times, default ``linspace(0, 1, 201)``.

    Returns
    -------
    x : numpy.ndarray, shape (n,)
    t : numpy.ndarray, shape (nt,)
    u : numpy.ndarray, shape (n, nt), float64
    """
    t_out = np.linspace(0, 1, 201) if t_out is None else np.asarray(t_out, np.float64)
    x = -1.0 + 2.0 * np.arange(n) / n
    k = np.pi * np.fft.fftfreq(n, d=1.0 / n)
    L = -eps * k**2 + a
    E = np.exp(dt * L)
    E2 = np.exp(dt * L / 2)
    M = 32
    r = np.exp(1j * np.pi * (np.arange(1, M + 1) - 0.5) / M)
    LR = dt * L[:, None] + r[None, :]
    Q = dt * np.real(np.mean((np.exp(LR / 2) - 1) / LR, axis=1))
    f1 = dt * np.real(np.mean((-4 - LR + np.exp(LR) * (4 - 3 * LR + LR**2)) / LR**3, axis=1))
    f2 = dt * np.real(np.mean((2 + LR + np.exp(LR) * (-2 + LR)) / LR**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * LR - LR**2 + np.exp(LR) * (4 - LR)) / LR**3, axis=1))

    def nl(v):
        u = np.real(np.fft.ifft(v))
        return -a * np.fft.fft(u**3)

    v = np.fft.fft(x**2 * np.cos(np.pi * x))
    out = np.empty((n, t_out.size))
    t = 0.0
    for j, tj in enumerate(t_out):
        nsteps = int(round((tj - t) / dt))
        for _ in range(nsteps):
            Nv = nl(v)
            a_ = E2 * v + Q * Nv
            Na = nl(a_)
            b_ = E2 * v + Q * Na
            Nb = nl(b_)
            c_ = E2 * a_ + Q * (2 * Nb - Nv)
            Nc = nl(c_)
            v = E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3
        t += nsteps * dt
        out[:, j] = np.real(np.fft.ifft(v))
    return x, t_out, out


@functools.lru_cache(maxsize=2)
def _reference(n, dt):
    return etdrk4_allen_cahn(n=n, dt=dt)


class AllenCahn1D(Problem):
    """``u_t - 1e-4 u_xx + 5 u^3 - 5 u = 0``, ``x in [-1, 1]``, ``t in [0, 1]``.

    ``u(x, 0) = x^2 cos(pi x)``, periodic boundary conditions
    ``u(-1, t) = u(1, t)``, ``u_x(-1, t) = u_x(1, t)`` (Raissi et al. 2019).
    Inputs are ``(x, t)``. The reference is computed in-repo by
    :func:`etdrk4_allen_cahn` (512 modes, dt = 1e-4) on the 512 x 201 grid
    used as test grid; other points use cubic interpolation.
    """

    name = "allencahn1d"
    time_dependent = True
    hessian_rows = (0,)
    defaults = dict(width=64, depth=4, adam_steps=4000, lbfgs_steps=2000, lr=1e-3,
                    n_collocation=4096, n_boundary=256)
    ref_n, ref_dt = 512, 1e-4

    def __init__(self, eps=1e-4, n_initial=None):
        self.n_initial = check_count("n_initial", n_initial, allow_none=True)
        self.eps = float(eps)
        if self.eps != 1e-4:
            raise ValueError("only the standard eps = 1e-4 case has a reference")
        self.lower = np.array([-1.0, 0.0])
        self.upper = np.array([1.0, 1.0])

    def pde_residual(self, x, u, grad, hess):
        return grad[:, 1] - self.eps * hess[:, 0, 0] + 5 * u**3 - 5 * u

    def conditions(self, n, method="sobol", seed=0, n_initial=None):
        xi = initial_points(-1.0, 1.0, n_initial or self.n_initial or n, method, seed + 7)
        return [Condition("ic", xi, xi[:, 0] ** 2 * np.cos(np.pi * xi[:, 0]))]

    def make_batch(self, n_collocation, n_boundary, method="sobol", seed=0,
                   dtype=torch.float32, *, n_initial=None, device=None):
        """As :meth:`Problem.make_batch`; the periodic term gets ``n_boundary // 2`` times
        (``n_boundary`` must be even unless ``n_initial`` is given, then it gets
        ``n_boundary`` times and the initial condition ``n_initial`` points)."""
        n_initial = self.n_initial if n_initial is None else n_initial
        check_count("n_boundary", n_boundary, even=n_initial is None)
        batch = super().make_batch(n_collocation, n_boundary, method, seed, dtype,
                                   n_initial=n_initial, device=device)
        n_t = n_boundary // 2 if n_initial is None else n_boundary
        t = sample_1d(0.0, 1.0, n_t, method, seed + 11)
        batch["periodic"] = torch.as_tensor(t, dtype=dtype, device=device)
        return batch

    def condition_value(self, name, x):
        if name != "ic":
            return super().condition_value(name, x)
        self.check_initial_points(name, x)
        return x[:, 0] ** 2 * np.cos(np.pi * x[:, 0])

    def boundary_points(self, n, method="sobol", seed=0):
        return self.conditions(n, method, seed)[0].x

    def losses(self, model, batch):
        batch = dict(batch)
        t = batch.pop("periodic")
        out = super().losses(model, batch)
        left = torch.stack([-torch.ones_like(t), t], 1).requires_grad_(True)
        right = torch.stack([torch.ones_like(t), t], 1).requires_grad_(True)
        ul, ur = model(left).reshape(-1), model(right).reshape(-1)
        gl = torch.autograd.grad(ul.sum(), left, create_graph=True)[0][:, 0]
        gr = torch.autograd.grad(ur.sum(), right, create_graph=True)[0][:, 0]
        out["periodic"] = (ul - ur).pow(2).mean() + (gl - gr).pow(2).mean()
        return out

    def _ref(self):
        return _reference(self.ref_n, self.ref_dt)

    def reference(self, x):
        from scipy.interpolate import RegularGridInterpolator

        xs, ts, u = self._ref()
        xs = np.append(xs, 1.0)
        u = np.vstack([u, u[:1]])
        f = RegularGridInterpolator((xs, ts), u, method="cubic")
        return f(np.asarray(x, np.float64))

    def test_grid(self, n_per_axis=None):
        xs, ts, u = self._ref()
        X, T = np.meshgrid(xs, ts, indexing="ij")
        return np.stack([X.ravel(), T.ravel()], axis=1), u.ravel()

    def config(self):
        return {"name": self.name, "kwargs": {"eps": self.eps, "n_initial": self.n_initial}}

    def __repr__(self):
        return "AllenCahn1D()"
