"""Issue 14 items 8 (plots) and 9 (metrics, user reference data)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pinn
from pinn.metrics import (errors, evaluate, load_reference, max_abs_error, mse, relative_l2,
                          relative_linf)

vecs = arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e3, 1e3))


@settings(max_examples=60, deadline=None)
@given(vecs, st.integers(0, 10**6), st.sampled_from([1e-300, 1e-150, 1e-20, 1.0, 3.7e20,
                                                     1e150, 1e300]))
def test_metrics_definitions_and_scale_invariance(ref, seed, scale):
    pred = ref + np.random.default_rng(seed).normal(size=ref.shape)
    d = pred - ref
    # definitions (math.hypot: an independent scale-safe Euclidean norm)
    if np.any(ref != 0):
        assert relative_l2(pred, ref) == pytest.approx(math.hypot(*d) / math.hypot(*ref),
                                                       rel=1e-13)
        assert relative_linf(pred, ref) == np.abs(d).max() / np.abs(ref).max()
    assert max_abs_error(pred, ref) == np.abs(d).max()
    assert mse(pred, ref) == pytest.approx(math.hypot(*d) ** 2 / d.size, rel=1e-13)
    # the relative metrics do not depend on the scale, even near the float64 limits
    p, r = pred * scale, ref * scale
    tiny = np.finfo(np.float64).tiny  # below it (subnormal) the scaled data lose digits
    normal = np.all(((np.abs(r) >= tiny) | (ref == 0)) & (np.abs(p - r) >= tiny))
    if np.any(ref != 0) and np.all(np.isfinite(p)) and normal:
        assert relative_l2(p, r) == pytest.approx(relative_l2(pred, ref), rel=1e-10)
        assert relative_linf(p, r) == pytest.approx(relative_linf(pred, ref), rel=1e-10)


def test_metrics_edge_cases():
    assert relative_l2([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_l2([1.0, 0.0], [0.0, 0.0]) == math.inf
    assert mse([1e200], [-1e200]) == math.inf  # the true value overflows
    with pytest.raises(ValueError, match="same non-zero length"):
        relative_l2([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="unknown"):
        errors([1.0], [1.0], metrics=["l2", "r2"])
    assert set(errors([1.0, 2.0], [1.0, 2.5])) == {"l2", "linf", "max_abs", "mse"}


def test_user_reference_data(tmp_path):
    prob = pinn.problems.Poisson2D()
    m = pinn.make_model(prob, 6, 2, seed=0)
    x = np.random.default_rng(1).uniform(size=(40, 2))
    y = np.sin(np.pi * x[:, 0]) * np.sin(np.pi * x[:, 1])
    np.savez(tmp_path / "pts.npz", x=x, y=y[:, None])
    xl, yl = load_reference(tmp_path / "pts.npz")
    np.testing.assert_array_equal(xl, x)
    np.testing.assert_array_equal(yl, y)
    e = evaluate(m, data=tmp_path / "pts.npz")
    assert e == errors(pinn.predict(m, x), y)
    assert evaluate(m, data=(x, y), metrics=["mse"]) == {"mse": e["mse"]}
    # the built-in reference on the problem's test grid
    xt, ut = prob.test_grid()
    assert evaluate(m, prob)["l2"] == relative_l2(pinn.predict(m, xt), ut) == prob.l2_error(m)
    # DeepXDE's space-time layout (Burgers.npz): x (nx, 1), t (nt, 1), usol (nx, nt)
    xs, ts = np.linspace(-1, 1, 5)[:, None], np.linspace(0, 1, 3)[:, None]
    usol = pinn.problems.cole_hopf(xs, ts.T)
    np.savez(tmp_path / "burgers.npz", x=xs, t=ts, usol=usol)
    xb, yb = load_reference(tmp_path / "burgers.npz")
    assert xb.shape == (15, 2) and yb.shape == (15,)
    np.testing.assert_array_equal(yb, pinn.problems.Burgers1D().reference(xb))
    # as the reference of a user-defined problem
    prob = pinn.define_problem(lambda x, u, du, d2u: du[:, 1] + u * du[:, 0] - 0.01 / np.pi *
                               d2u[:, 0, 0], pinn.TimeDomain(pinn.Interval(-1, 1), 0, 1), [],
                               reference=tmp_path / "burgers.npz")
    xg, ug = prob.test_grid()
    np.testing.assert_array_equal(xg, xb)
    np.savez(tmp_path / "bad.npz", a=x)
    with pytest.raises(ValueError, match="must hold arrays x, y"):
        load_reference(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", x=x, y=y[:5])
    with pytest.raises(ValueError, match="need x"):
        load_reference(tmp_path / "bad2.npz")
    with pytest.raises(ValueError, match="cannot read"):
        load_reference(tmp_path / "missing.npz")


def test_evaluate_without_reference():
    prob = pinn.define_problem(lambda x, u, du, d2u: u, pinn.Interval(0, 1), [])
    m = pinn.make_model(prob, 4, 1)
    with pytest.raises(ValueError, match="has no reference"):
        evaluate(m, prob)
    assert math.isnan(prob.l2_error(m))


# ------------------------------------------------------------------ plots
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("prob", [
    pinn.problems.Poisson1D(),
    pinn.problems.Heat1D(),
    pinn.define_problem(lambda x, u, du, d2u: d2u[:, 0, 0] + d2u[:, 1, 1] + 4.0,
                        pinn.Disk([0, 0], 1), [pinn.DirichletBC(0.0)],
                        reference=lambda x: 1 - (x**2).sum(1)),
    pinn.define_problem(lambda x, u, du, d2u: u, pinn.Interval(0, 2), []),  # no reference
], ids=["1d", "xt", "disk", "noref"])
def test_plots_are_written(tmp_path, prob):
    pytest.importorskip("matplotlib")
    from pinn.plot import plot_history, plot_solution

    m = pinn.make_model(prob, 6, 2, seed=0)
    h = pinn.train(m, prob, adam_steps=4, lbfgs_steps=2, n_collocation=16, n_boundary=4,
                   progress=False, eval_every=2)
    fig = plot_solution(m, prob, tmp_path / "s.png")
    assert len(fig.axes) >= (1 if not prob.has_reference() else 2)
    plot_history(h, tmp_path / "h.png")
    for f in ("s.png", "h.png"):
        assert (tmp_path / f).read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "s.png"]


def test_plot_bad_input(tmp_path):
    pytest.importorskip("matplotlib")
    from pinn.plot import plot_history, plot_solution

    prob = pinn.define_problem(lambda x, u, du, d2u: u, pinn.Box([0, 0, 0], [1, 1, 1]), [])
    with pytest.raises(ValueError, match="1-D and 2-D"):
        plot_solution(pinn.make_model(prob, 4, 1), prob)
    with pytest.raises(ValueError, match="'step' and 'loss'"):
        plot_history({"l2": [1.0]})
