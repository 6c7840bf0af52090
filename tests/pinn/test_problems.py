import math

import numpy as np
import pytest
import torch

import pinn
from pinn.problems import (AllenCahn1D, Burgers1D, Heat1D, Helmholtz2D, Poisson1D, Poisson2D,
                           cole_hopf, get_problem)
from pinn.problems.allen_cahn1d import etdrk4_allen_cahn
from pinn.problems.base import sample_box

PI = math.pi

# torch versions of the exact solutions, to check that residual(exact) == 0
EXACT = {
    "poisson1d": lambda x: torch.sin(2 * PI * x[:, :1]),
    "poisson2d": lambda x: torch.sin(PI * x[:, :1]) * torch.sin(PI * x[:, 1:2]),
    "helmholtz2d": lambda x: torch.sin(PI * x[:, :1]) * torch.sin(4 * PI * x[:, 1:2]),
    "heat1d": lambda x: torch.exp(-0.1 * PI**2 * x[:, 1:2]) * torch.sin(PI * x[:, :1]),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_solution_has_zero_residual(name):
    p = get_problem(name)
    x = torch.as_tensor(p.sample_collocation(64, "uniform", 1), dtype=torch.float64)
    r = p.residual(EXACT[name], x)
    assert r.abs().max() < 1e-9
    # conditions hold and the numpy reference matches the torch exact
    for c in p.conditions(32, "uniform", 0):
        u = EXACT[name](torch.as_tensor(c.x)).reshape(-1).numpy()
        np.testing.assert_allclose(u, c.target, atol=1e-12)
    xt, ut = p.test_grid(11)
    np.testing.assert_allclose(EXACT[name](torch.as_tensor(xt)).reshape(-1).numpy(), ut, atol=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_burgers_cole_hopf_against_adaptive_quadrature():
    """Gauss-Hermite Cole-Hopf vs an independent adaptive quadrature (scipy.quad) in eta."""
    from scipy.integrate import quad

    nu = 0.01 / PI
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-1, 1, 12), rng.uniform(0.05, 1, 12)])
    pts = np.vstack([pts, [[0.0, 1.0], [0.01, 0.5], [-0.003, 0.9]]])
    for x, t in pts:
        s = 4 * nu * t
        # exponent of f(x - eta) exp(-eta^2 / (4 nu t)), shifted by its max over the grid
        e = lambda eta: -np.cos(PI * (x - eta)) / (2 * PI * nu) - eta**2 / s
        grid = np.linspace(-1.5, 1.5, 20001)
        emax = e(grid).max()
        w = math.sqrt(s) * 12
        num = quad(lambda eta: np.sin(PI * (x - eta)) * np.exp(e(eta) - emax), -w, w,
                   epsabs=0, epsrel=1e-13, limit=500, points=[0.0])[0]
        den = quad(lambda eta: np.exp(e(eta) - emax), -w, w, epsabs=0, epsrel=1e-13,
                   limit=500, points=[0.0])[0]
        assert abs(cole_hopf(x, t) - (-num / den)) <= 1e-6


def test_burgers_reference_classic_values():
    # maximum slope at x = 0, t = 1.6037/pi is 152.00516 (Basdevant et al. 1986)
    h, t = 1e-7, 1.6037 / PI
    slope = (cole_hopf(h, t) - cole_hopf(-h, t)) / (2 * h)
    assert abs(slope + 152.00516) < 1e-4
    np.testing.assert_allclose(cole_hopf(np.linspace(-1, 1, 7), 0.0),
                               -np.sin(PI * np.linspace(-1, 1, 7)), atol=1e-15)
    # PDE residual by finite differences away from the shock
    nu = 0.01 / PI
    x, t, h = np.array([-0.7, -0.3, 0.4, 0.8]), 0.6, 1e-4
    u = cole_hopf(x, t)
    ut = (cole_hopf(x, t + h) - cole_hopf(x, t - h)) / (2 * h)
    ux = (cole_hopf(x + h, t) - cole_hopf(x - h, t)) / (2 * h)
    uxx = (cole_hopf(x + h, t) - 2 * u + cole_hopf(x - h, t)) / h**2
    assert np.abs(ut + u * ux - nu * uxx).max() < 1e-6


def test_burgers_grid():
    p = Burgers1D()
    x, u = p.test_grid()
    assert x.shape == (25600, 2) and u.shape == (25600,)
    assert np.isfinite(u).all() and np.abs(u).max() <= 1.0 + 1e-12


def test_allen_cahn_spectral_reference_converges():
    _, _, a = etdrk4_allen_cahn(n=256, dt=2e-4, t_out=np.linspace(0, 1, 11))
    _, _, b = etdrk4_allen_cahn(n=512, dt=1e-4, t_out=np.linspace(0, 1, 11))
    rel = np.linalg.norm(a - b[::2]) / np.linalg.norm(b)
    assert rel < 1e-4
    # u = +-1 plateaus and the known structure at t = 1
    assert np.abs(b[:, -1]).max() <= 1.0 + 1e-6
    assert b[0, -1] < -0.99


def test_allen_cahn_problem_losses():
    p = AllenCahn1D()
    model = pinn.MLP([2, 8, 8, 1])
    batch = p.make_batch(32, 16, "uniform", 0)
    losses = p.losses(model, batch)
    assert set(losses) == {"pde", "ic", "periodic"}
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("method", ["uniform", "sobol", "grid"])
def test_samplers_in_domain(method):
    for name in ("poisson1d", "poisson2d", "burgers1d", "heat1d", "helmholtz2d"):
        p = get_problem(name)
        x = p.sample_collocation(64, method, 3)
        assert x.shape[1] == p.dim and 1 <= len(x) <= 64
        assert (x >= p.lower - 1e-12).all() and (x <= p.upper + 1e-12).all()
        for c in p.conditions(40, method, 1):
            assert c.x.shape[0] == c.target.shape[0]


def test_sampler_deterministic():
    a = sample_box([0, 0], [1, 1], 50, "sobol", 7)
    b = sample_box([0, 0], [1, 1], 50, "sobol", 7)
    np.testing.assert_array_equal(a, b)


def test_bad_problem_input():
    with pytest.raises(ValueError, match="unknown PDE"):
        get_problem("navier-stokes")
    with pytest.raises(ValueError, match="method"):
        sample_box([0], [1], 10, "halton")
    with pytest.raises(ValueError, match="k must"):
        Poisson1D(k=0)
