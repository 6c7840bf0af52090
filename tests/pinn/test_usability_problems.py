"""Issue 14 items 1, 2 (and issue 11 item 7): point counts, user-given points, other domains,
problems without a subclass (domains and conditions)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pinn
from pinn.problems import (AllenCahn1D, Burgers1D, Heat1D, Helmholtz2D, Poisson1D, Poisson2D,
                           get_problem)
from pinn.problems.base import initial_points, space_time_boundary

PI = math.pi


# ------------------------------------------------------------------ item 1: point counts
def test_n_initial_separate_from_n_boundary():
    b = Burgers1D(n_initial=30).make_batch(100, 21, "sobol", 0)
    assert b["pde"].shape == (100, 2) and b["bc"][0].shape == (21, 2)
    assert b["ic"][0].shape == (30, 2)
    assert torch.all(b["ic"][0][:, 1] == 0) and torch.all(b["bc"][0][:, 0].abs() == 1)
    # the make_batch argument overrides the problem's
    b = Burgers1D(n_initial=30).make_batch(100, 21, "sobol", 0, n_initial=5)
    assert b["ic"][0].shape == (5, 2)
    h = Heat1D(n_initial=7).make_batch(50, 12, "uniform", 1)
    assert h["bc"][0].shape == (12, 2) and h["ic"][0].shape == (7, 2)
    a = AllenCahn1D(n_initial=9).make_batch(50, 12, "uniform", 1)
    assert a["ic"][0].shape == (9, 2) and a["periodic"].shape == (12,)


def test_default_split_is_the_historical_rule():
    """Without n_initial, Burgers splits n_boundary in half (the published results)."""
    b = Burgers1D().make_batch(64, 20, "sobol", 3, torch.float64)
    np.testing.assert_array_equal(b["bc"][0].numpy(),
                                  space_time_boundary(-1.0, 1.0, 1.0, 10, "sobol", 4))
    np.testing.assert_array_equal(b["ic"][0].numpy(), initial_points(-1.0, 1.0, 10, "sobol", 11))
    h = Heat1D().make_batch(64, 20, "sobol", 3, torch.float64)  # heat: n_boundary each
    assert h["bc"][0].shape == (20, 2) and h["ic"][0].shape == (20, 2)


@pytest.mark.parametrize("make, msg", [
    (lambda: Burgers1D().make_batch(100, 7), "n_boundary must be even"),
    (lambda: AllenCahn1D().make_batch(100, 7), "n_boundary must be even"),
    (lambda: Burgers1D().make_batch(100, -2), "n_boundary must be a positive integer"),
    (lambda: Poisson2D().make_batch(100, 0), "n_boundary must be a positive integer"),
    (lambda: Poisson2D().make_batch(0, 10), "n_collocation must be a positive integer"),
    (lambda: Poisson2D().make_batch(10.0, 10), "n_collocation must be a positive integer"),
    (lambda: Poisson2D().make_batch(10, True), "n_boundary must be a positive integer"),
    (lambda: Poisson2D().make_batch(10, 10, n_initial=4), "no initial condition"),
    (lambda: Burgers1D(n_initial=0), "n_initial must be a positive integer"),
    (lambda: Burgers1D().make_batch(10, 10, n_initial=-1), "n_initial must be"),
])
def test_bad_counts_refused(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_odd_n_boundary_accepted_with_n_initial():
    b = Burgers1D(n_initial=4).make_batch(10, 7)
    assert b["bc"][0].shape == (7, 2)


def test_misspelled_problem_option_refused():
    with pytest.raises(TypeError, match="n_inital"):
        get_problem("burgers1d", n_inital=3)


def test_user_given_points():
    p = Poisson2D()
    X = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.5]])
    A = np.array([[0.9, 0.9]])
    p.set_points(collocation=X, anchors=A)
    b = p.make_batch(1000, 8, "sobol", 0, torch.float64)
    np.testing.assert_array_equal(b["pde"].numpy(), np.vstack([X, A]))
    with pytest.raises(ValueError, match="anchors must have shape"):
        p.set_points(anchors=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="collocation must be finite"):
        p.set_points(collocation=[[0.1, np.nan]])
    p.add_observations([[0.5, 0.5]], [1.0])
    b = p.make_batch(10, 8, "sobol", 0, torch.float64)
    assert b["data"][0].tolist() == [[0.5, 0.5]] and b["data"][1].tolist() == [1.0]
    with pytest.raises(ValueError, match="new non-empty loss-term name"):
        p.add_observations([[0.5, 0.5]], [1.0])  # "data" again
    with pytest.raises(ValueError, match="y must have shape"):
        p.add_observations([[0.5, 0.5]], [1.0, 2.0], name="obs2")


# ------------------------------------------------------------------ built-ins on other boxes
EXACT = {
    Poisson1D: lambda x: torch.sin(2 * PI * x[:, :1]),
    Poisson2D: lambda x: torch.sin(PI * x[:, :1]) * torch.sin(PI * x[:, 1:2]),
    Helmholtz2D: lambda x: torch.sin(PI * x[:, :1]) * torch.sin(4 * PI * x[:, 1:2]),
    Heat1D: lambda x: torch.exp(-0.1 * PI**2 * x[:, 1:2]) * torch.sin(PI * x[:, :1]),
}
BOXES = {Poisson1D: ([-1.5], [0.25]), Poisson2D: ([-1.0, 0.5], [0.5, 2.0]),
         Helmholtz2D: ([0.0, 0.0], [2.0, 0.5]), Heat1D: ([1.0, 0.5], [3.0, 2.0])}


@pytest.mark.parametrize("cls", list(BOXES))
def test_builtin_problem_on_another_box(cls):
    lo, hi = BOXES[cls]
    kw = dict(lower=lo[0], upper=hi[0]) if cls is Poisson1D else dict(lower=lo, upper=hi)
    p = cls(**kw)
    np.testing.assert_array_equal(p.lower, lo)
    b = p.make_batch(64, 16, "uniform", 2, torch.float64)
    x = b["pde"]
    assert torch.all(x >= torch.tensor(lo, dtype=x.dtype)) and \
        torch.all(x <= torch.tensor(hi, dtype=x.dtype))
    losses = p.losses(EXACT[cls], b)  # the exact solution: every term vanishes
    for k, v in losses.items():
        assert float(v) < 1e-18, (k, float(v))
    for name, (xc, _) in ((k, v) for k, v in b.items() if k != "pde"):
        on_face = (xc == torch.tensor(lo, dtype=xc.dtype)) | (xc == torch.tensor(hi, dtype=xc.dtype))
        if cls is Heat1D and name == "ic":
            assert torch.all(xc[:, 1] == lo[1])
        elif cls is Heat1D:
            assert torch.all(on_face[:, 0])
        else:
            assert torch.all(on_face.any(dim=1))
    xt, ut = p.test_grid(5)
    assert xt.min(0).tolist() == lo and xt.max(0).tolist() == hi
    cfg = p.config()
    q = get_problem(cfg["name"], **cfg["kwargs"])
    np.testing.assert_array_equal(q.lower, p.lower)
    np.testing.assert_array_equal(q.upper, p.upper)


def test_bad_box_refused():
    with pytest.raises(ValueError, match="lower < upper"):
        Poisson2D(lower=(0, 1), upper=(1, 1))
    with pytest.raises(ValueError, match="2 entries"):
        Helmholtz2D(lower=(0,), upper=(1,))
    with pytest.raises(ValueError, match="finite"):
        Poisson1D(lower=-np.inf)


# ------------------------------------------------------------------ domains
boxes = st.integers(1, 3).flatmap(lambda d: st.tuples(
    st.lists(st.floats(-1e3, 1e3), min_size=d, max_size=d),
    st.lists(st.floats(1e-3, 1e3), min_size=d, max_size=d)))


@settings(max_examples=40, deadline=None)
@given(boxes, st.sampled_from(["uniform", "sobol", "grid"]), st.integers(0, 10**6))
def test_box_samples_inside_and_on_the_boundary(box, method, seed):
    lo, ext = np.array(box[0]), np.array(box[1])
    hi = lo + ext
    ext = hi - lo  # what the floats represent
    if np.any(ext <= 0):
        return
    dom = pinn.Box(lo, hi)
    xi = dom.sample_interior(37, method, seed)
    assert np.all(dom.inside(xi))
    xb = dom.sample_boundary(37, method, seed)
    if method == "grid" and dom.dim >= 3:
        assert 1 <= len(xb) <= 37 and xb.shape[1] == dom.dim  # a tensor grid
    else:
        assert xb.shape == (37, dom.dim)
    assert np.all(dom.inside(xb))
    on = (xb == lo) | (xb == hi)
    assert np.all(on.any(axis=1))  # exactly on a face
    n = dom.normal(xb)
    np.testing.assert_array_equal(np.abs(n).sum(axis=1), 1.0)
    # the normal points outward: along it, the point is on the face it leaves
    k = np.argmax(np.abs(n), axis=1)
    face = np.where(n[np.arange(len(n)), k] > 0, hi[k], lo[k])
    np.testing.assert_array_equal(xb[np.arange(len(n)), k], face)


def test_rectangle_boundary_proportional_to_side_length():
    dom = pinn.Rectangle([0.0, 0.0], [4.0, 1.0])
    x = dom.sample_boundary(4000, "sobol", 0)
    long_sides = np.mean((x[:, 1] == 0.0) | (x[:, 1] == 1.0))
    assert abs(long_sides - 0.8) < 0.01  # perimeter share of the two long sides


@settings(max_examples=30, deadline=None)
@given(st.floats(-100, 100), st.floats(-100, 100), st.floats(1e-3, 1e3), st.integers(0, 1000))
def test_disk_samples(cx, cy, r, seed):
    dom = pinn.Disk([cx, cy], r)
    tol = 8 * np.finfo(np.float64).eps * (r + abs(cx) + abs(cy))  # rounding of c + offset
    xi = dom.sample_interior(50, "sobol", seed)
    assert np.all(np.hypot(xi[:, 0] - cx, xi[:, 1] - cy) <= r + tol)
    assert np.all(dom.inside(xi))
    xb = dom.sample_boundary(50, "sobol", seed)
    np.testing.assert_allclose(np.hypot(xb[:, 0] - cx, xb[:, 1] - cy), r, rtol=0, atol=tol)
    n = dom.normal(xb)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(n * r, xb - [cx, cy], rtol=0, atol=2 * tol)


def test_time_domain_samples():
    dom = pinn.TimeDomain(pinn.Disk([0.0, 0.0], 2.0), 0.5, 1.5)
    xi = dom.sample_interior(64, "sobol", 1)
    assert xi.shape == (64, 3) and np.all(dom.inside(xi))
    xb = dom.sample_boundary(64, "sobol", 1)
    np.testing.assert_allclose(np.hypot(xb[:, 0], xb[:, 1]), 2.0, rtol=1e-14)
    assert np.all((xb[:, 2] >= 0.5) & (xb[:, 2] <= 1.5))
    x0 = dom.sample_initial(64, "sobol", 1)
    assert np.all(x0[:, 2] == 0.5) and np.all(np.hypot(x0[:, 0], x0[:, 1]) <= 2.0)
    np.testing.assert_array_equal(dom.normal(xb)[:, 2], 0.0)
    assert pinn.problems.domain_from_config(dom.config()) == dom


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: pinn.Interval(1.0, 1.0), ValueError, "lower < upper"),
    (lambda: pinn.Rectangle([0, 0, 0], [1, 1, 1]), ValueError, "2-D"),
    (lambda: pinn.Disk([0, 0], 0.0), ValueError, "radius"),
    (lambda: pinn.Disk([0], 1.0), ValueError, "center"),
    (lambda: pinn.TimeDomain(pinn.Interval(0, 1), 1.0, 0.0), ValueError, "lower < upper"),
    (lambda: pinn.TimeDomain("x", 0.0, 1.0), TypeError, "space"),
    (lambda: pinn.Box([0, 0], [1, 1]).sample_interior(0), ValueError, "n must be"),
])
def test_bad_domains(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


# ------------------------------------------------------------------ item 2: define_problem
def _poisson_rect():
    """-Laplace u = f on [-1, 2] x [0, 1] with u = sin(x) exp(y) + x y: f = 0 ... plus a
    Neumann condition on the right side (x = 2) and Dirichlet elsewhere."""
    def exact_t(x):
        return torch.sin(x[:, 0]) * torch.exp(x[:, 1]) + x[:, 0] * x[:, 1]

    def exact(x):
        return np.sin(x[:, 0]) * np.exp(x[:, 1]) + x[:, 0] * x[:, 1]

    def pde(x, u, du, d2u):
        return d2u[:, 0, 0] + d2u[:, 1, 1]  # sin(x) e^y and x y are harmonic

    def dudx(x):  # normal derivative on x = 2 (normal +e_x)
        return np.cos(x[:, 0]) * np.exp(x[:, 1]) + x[:, 1]

    right = lambda x: x[:, 0] == 2.0  # noqa: E731
    prob = pinn.define_problem(
        pde, pinn.Rectangle([-1.0, 0.0], [2.0, 1.0]),
        [pinn.DirichletBC(exact, on=lambda x: x[:, 0] < 2.0),
         pinn.NeumannBC(dudx, on=right, n=20)],
        reference=exact, n_collocation=100, n_boundary=40, name="laplace")
    return prob, exact_t


def test_define_problem_terms_vanish_for_the_exact_solution():
    prob, exact_t = _poisson_rect()
    b = prob.make_batch(100, 40, "sobol", 0, torch.float64)
    assert b["pde"].shape == (100, 2) and b["bc"][0].shape == (40, 2)
    assert b["neumann"][0].shape == (20, 2) and torch.all(b["neumann"][0][:, 0] == 2.0)
    losses = prob.losses(lambda x: exact_t(x)[:, None], b)
    assert set(losses) == {"pde", "bc", "neumann"}
    for k, v in losses.items():
        assert float(v) < 1e-24, (k, float(v))
    # u + c x: the Neumann term becomes exactly c^2, Dirichlet terms measure c x
    c = 0.25
    losses = prob.losses(lambda x: (exact_t(x) + c * x[:, 0])[:, None], b)
    assert abs(float(losses["neumann"]) - c**2) < 1e-14
    xb = b["bc"][0]
    assert abs(float(losses["bc"]) - float((c * xb[:, 0]).pow(2).mean())) < 1e-14
    assert float(losses["pde"]) < 1e-24
    assert prob.l2_error(pinn.make_model(prob, 4, 1)) > 0.5
    assert prob.hessian_rows == (0, 1)


def test_define_problem_time_dependent_and_explicit_points():
    xb = np.array([[0.0, 0.5], [1.0, 0.25]])
    prob = pinn.define_problem(
        lambda x, u, du, d2u: du[:, 1] - 0.1 * d2u[:, 0, 0],
        pinn.TimeDomain(pinn.Interval(0.0, 1.0), 0.0, 2.0),
        [pinn.DirichletBC(0.0, points=xb), pinn.InitialCondition(lambda x: np.sin(PI * x[:, 0]))],
        n_initial=11)
    assert prob.hessian_rows == (0,) and prob.time_dependent and prob.dim == 2
    b = prob.make_batch(30, 5, "uniform", 0, torch.float64)
    np.testing.assert_array_equal(b["bc"][0].numpy(), xb)
    assert b["ic"][0].shape == (11, 2) and torch.all(b["ic"][0][:, 1] == 0)
    np.testing.assert_allclose(b["ic"][1].numpy(), np.sin(PI * b["ic"][0][:, 0].numpy()))
    assert not prob.has_reference() and math.isnan(prob.l2_error(pinn.make_model(prob, 4, 1)))


def test_from_residual_is_define_problem():
    prob = pinn.Problem.from_residual(lambda x, u, du, d2u: u, pinn.Interval(0, 1),
                                      [pinn.DirichletBC(1.0)])
    assert isinstance(prob, pinn.problems.PDEProblem)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(residual=3), TypeError, "residual must be callable"),
    (dict(domain=(0, 1)), TypeError, "domain must be a pinn Domain"),
    (dict(conditions=[pinn.DirichletBC(0.0), pinn.DirichletBC(1.0)]), ValueError,
     "distinct names"),
    (dict(conditions=[pinn.InitialCondition(0.0)]), ValueError, "TimeDomain"),
    (dict(conditions=["bc"]), TypeError, "conditions must be"),
    (dict(defaults={"widht": 3}), ValueError, "unknown keys"),
    (dict(hessian=(0, 1)), ValueError, "hessian rows"),
    (dict(n_boundary=0), ValueError, "n_boundary must be"),
    (dict(n_initial=3), ValueError, "no time axis"),
    (dict(parameters={"c": float("nan")}), ValueError, "finite"),
    (dict(reference=(np.zeros((3, 2)), np.zeros(3))), ValueError, "reference x"),
])
def test_define_problem_bad_input(kwargs, exc, msg):
    args = dict(residual=lambda x, u, du, d2u: u, domain=pinn.Interval(0, 1),
                conditions=[pinn.DirichletBC(0.0)])
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        pinn.define_problem(args.pop("residual"), args.pop("domain"), args.pop("conditions"),
                            **args)


def test_condition_bad_input():
    with pytest.raises(TypeError, match="value must be"):
        pinn.DirichletBC("zero")
    with pytest.raises(TypeError, match="on must be"):
        pinn.DirichletBC(0.0, on=True)
    prob = pinn.define_problem(lambda x, u, du, d2u: u, pinn.Interval(0, 1),
                               [pinn.DirichletBC(lambda x: np.zeros(len(x) + 1))])
    with pytest.raises(ValueError, match="bc value must have shape"):
        prob.make_batch(4, 4)
    prob = pinn.define_problem(lambda x, u, du, d2u: u[:3], pinn.Interval(0, 1),
                               [pinn.DirichletBC(0.0)])
    with pytest.raises(ValueError, match="residual must return"):
        prob.losses(pinn.make_model(prob, 4, 1), prob.make_batch(8, 2))
    prob = pinn.define_problem(lambda x, u, du, d2u: u, pinn.Rectangle([0, 0], [1, 1]),
                               [pinn.DirichletBC(0.0, on=lambda x: x[:, 0] > 5)])
    with pytest.raises(ValueError, match="selects fewer"):
        prob.make_batch(4, 4)


@pytest.mark.parametrize("pde_name", ["poisson1d", "heat1d"])
def test_default_loss_terms_keep_their_names(pde_name):
    p = get_problem(pde_name)
    b = p.make_batch(8, 4, "uniform", 0)
    assert set(p.losses(pinn.make_model(p, 4, 1), b)) == {"pde"} | {k for k in b if k != "pde"}


def test_ntk_of_a_user_defined_problem():
    """pinn.ntk differentiates the user's residual with torch.func (trainable c included)."""
    prob = pinn.define_problem(
        lambda x, u, du, d2u, c: -d2u[:, 0, 0] - c * PI**2 * torch.sin(PI * x[:, 0]),
        pinn.Interval(-1, 1), [pinn.DirichletBC(0.0)], parameters={"c": 1.0})
    m = pinn.make_model(prob, 8, 2, seed=0, dtype=torch.float64)
    xb, xr = prob.boundary_points(4), prob.sample_collocation(6)
    K = pinn.ntk(m, prob, xb, xr)
    assert (K["K_uu"].shape, K["K_rr"].shape, K["K_ur"].shape) == ((4, 4), (6, 6), (4, 6))
    # K_rr = J_r J_r^T with J_r the parameter Jacobian of the residual (by autograd here)
    xt = torch.as_tensor(xr, dtype=torch.float64)
    rows = []
    for i in range(len(xt)):
        r = prob.residual(m, xt[i:i + 1])[0]
        ps = list(m.parameters())
        g = torch.autograd.grad(r, ps, allow_unused=True)  # the output bias: d2u ignores it
        rows.append(torch.cat([(torch.zeros_like(p) if v is None else v).reshape(-1)
                               for p, v in zip(ps, g)]))
    J = torch.stack(rows)
    torch.testing.assert_close(torch.as_tensor(K["K_rr"]), J @ J.T, rtol=1e-10,
                               atol=1e-10 * float((J @ J.T).abs().max()))


def test_user_given_condition_points_of_builtin_problems(tmp_path):
    p = Burgers1D()
    xb = np.array([[-1.0, 0.25], [1.0, 0.5], [1.0, 0.75]])
    xi = np.array([[-0.5, 0.0], [0.25, 0.0]])
    p.set_points(bc=xb, ic=xi)
    b = p.make_batch(16, 8, "sobol", 0, torch.float64)
    np.testing.assert_array_equal(b["bc"][0].numpy(), xb)
    np.testing.assert_array_equal(b["bc"][1].numpy(), 0.0)
    np.testing.assert_array_equal(b["ic"][0].numpy(), xi)
    np.testing.assert_array_equal(b["ic"][1].numpy(), -np.sin(PI * xi[:, 0]))
    with pytest.raises(ValueError, match="initial-condition points need t = 0"):
        Burgers1D().set_points(ic=[[0.0, 0.5]])
    with pytest.raises(ValueError, match="must lie on the boundary"):
        Burgers1D().set_points(bc=[[0.0, 0.5]])
    with pytest.raises(ValueError, match="must lie in the box"):
        Poisson2D().set_points(bc=[[2.0, 0.5]])
    with pytest.raises(ValueError, match="not a condition"):
        Poisson2D().set_points(ic=[[0.0, 0.5]])
    q = Poisson2D().set_points(bc=[[0.0, 0.5], [0.3, 1.0]])
    np.testing.assert_allclose(q.make_batch(8, 8)["bc"][1].numpy(),
                               [0.0, np.sin(0.3 * PI) * np.sin(PI)], atol=1e-7)
    # saved and loaded with the model
    pinn.save(tmp_path / "m.pt", pinn.make_model(p, 4, 1), p)
    _, p2, _ = pinn.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(p2.make_batch(16, 8)["bc"][0].numpy(), xb.astype(np.float32))
    # a user-defined problem: Dirichlet values from its condition, Neumann refused
    prob, _ = _poisson_rect()
    prob.set_points(bc=[[-1.0, 0.5]])
    np.testing.assert_allclose(prob.make_batch(8, 8, "sobol", 0, torch.float64)["bc"][1].numpy(),
                               [np.sin(-1.0) * np.exp(0.5) - 0.5])
    with pytest.raises(ValueError, match="points="):
        prob.set_points(neumann=[[2.0, 0.5]])


def test_burgers_boundary_points_for_the_ntk():
    p = Burgers1D()
    assert len(p.boundary_points(33)) == 33
    np.testing.assert_array_equal(p.boundary_points(32), p.boundary_points(32))
    assert len(p.boundary_points(32)) == 32
