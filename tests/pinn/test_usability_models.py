"""Issue 14 items 3, 8 (predict) and 12 (device): network options through the public API."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pinn
from pinn.layers import ACTIVATIONS, INITIALIZERS

# an independent reference for each activation name
TORCH_ACT = {"tanh": torch.nn.Tanh(), "sin": torch.sin, "cos": torch.cos,
             "gelu": torch.nn.GELU(), "silu": torch.nn.SiLU(), "relu": torch.nn.ReLU(),
             "elu": torch.nn.ELU(), "softplus": torch.nn.Softplus(),
             "sigmoid": torch.nn.Sigmoid()}


def test_per_layer_widths():
    m = pinn.make_model("poisson2d", [10, 20, 5], seed=1)
    assert m.sizes == [2, 10, 20, 5, 1]
    assert [tuple(l.weight.shape) for l in m.layers] == [(10, 2), (20, 10), (5, 20), (1, 5)]
    assert pinn.make_model("poisson2d", (7, 7), depth=2).sizes == [2, 7, 7, 1]
    assert pinn.make_model("burgers1d").sizes == [2] + [20] * 8 + [1]  # problem defaults


@pytest.mark.parametrize("kw, msg", [
    (dict(width=0), "width must be a positive integer"),
    (dict(width=-3), "width must be a positive integer"),
    (dict(width=2.5), "width must be a positive integer"),
    (dict(width=[]), "empty"),
    (dict(width=[4, 0]), "width must be a positive integer"),
    (dict(width=[4, 4], depth=3), "depth .* must equal len"),
    (dict(width=4, depth=0), "depth must be a positive integer"),
    (dict(width=4, dtype=torch.float16), "dtype"),
    (dict(width=4, activation="tahn"), "activation must be one of"),
    (dict(width=4, initializer="glorot"), "initializer must be one of"),
])
def test_make_model_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg):
        pinn.make_model("poisson1d", **kw)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations(name):
    m = pinn.make_model("poisson2d", [6, 5], seed=2, activation=name, dtype=torch.float64)
    x = torch.rand(7, 2, dtype=torch.float64)
    act = TORCH_ACT[name]
    L = m.layers
    ref = L[2](act(L[1](act(L[0](x)))))
    torch.testing.assert_close(m(x), ref, rtol=0, atol=0)


def test_initializers():
    g = torch.Generator().manual_seed(0)
    n_in, n_out = 300, 200
    for name, bound, std in [
            ("glorot_uniform", math.sqrt(6 / (n_in + n_out)), math.sqrt(2 / (n_in + n_out))),
            ("he_uniform", math.sqrt(6 / n_in), math.sqrt(2 / n_in)),
            ("glorot_normal", None, math.sqrt(2 / (n_in + n_out))),
            ("he_normal", None, math.sqrt(2 / n_in)),
            ("lecun_normal", None, math.sqrt(1 / n_in))]:
        m = pinn.MLP([n_in, n_out, 1], generator=g, initializer=name).double()
        w = m.layers[0].weight.detach()
        if bound is not None:
            assert float(w.abs().max()) <= bound
        # 60000 samples: the standard deviation estimate is within ~0.3 % (1 sigma)
        assert abs(float(w.std()) / std - 1) < 0.02, name
        assert float(m.layers[0].bias.abs().max()) == 0.0
    m = pinn.MLP([3, 4, 1], initializer="zeros")
    assert all(float(l.weight.abs().max()) == 0 for l in m.layers)
    assert set(INITIALIZERS) == {"glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
                                 "lecun_normal", "zeros"}


def test_same_seed_same_weights():
    a = pinn.make_model("heat1d", [8, 9], seed=5, initializer="he_uniform")
    b = pinn.make_model("heat1d", [8, 9], seed=5, initializer="he_uniform")
    c = pinn.make_model("heat1d", [8, 9], seed=6, initializer="he_uniform")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=2),
       st.lists(st.floats(0.1, 50), min_size=2, max_size=2), st.floats(-3, 3),
       st.integers(0, 1000))
def test_box_dirichlet_transform_is_exact_on_the_faces(lo, ext, value, seed):
    lo = np.array(lo)
    hi = lo + np.array(ext)
    t = pinn.BoxDirichlet(lo, hi, value=value)
    m = pinn.make_model("poisson2d", [8, 8], seed=seed, dtype=torch.float64, output_transform=t)
    xb = pinn.Rectangle(lo, hi).sample_boundary(64, "uniform", seed)
    u = pinn.predict(m, xb)
    np.testing.assert_array_equal(u, value)  # a zero factor: exactly the value
    xi = pinn.Rectangle(lo, hi).sample_interior(16, "uniform", seed)
    assert np.any(pinn.predict(m, xi) != value)


def test_box_dirichlet_one_side_for_initial_time():
    t = pinn.BoxDirichlet([-1.0, 0.0], [1.0, 1.0], dims=[1], side="lower", value=0.5)
    m = pinn.make_model("burgers1d", [6], seed=0, output_transform=t, dtype=torch.float64)
    x0 = np.column_stack([np.linspace(-1, 1, 9), np.zeros(9)])
    np.testing.assert_array_equal(pinn.predict(m, x0), 0.5)
    x1 = np.column_stack([np.linspace(-1, 1, 9), np.ones(9)])
    assert np.all(pinn.predict(m, x1) != 0.5)
    with pytest.raises(ValueError, match="side"):
        pinn.BoxDirichlet([0.0], [1.0], side="left")
    with pytest.raises(ValueError, match="dims"):
        pinn.BoxDirichlet([0.0], [1.0], dims=[1])
    with pytest.raises(TypeError, match="output_transform must be callable"):
        pinn.MLP([1, 4, 1], output_transform=3)


def test_hard_boundary_condition_trains_with_zero_bc_loss():
    prob = pinn.problems.Poisson1D()
    m = pinn.make_model(prob, 16, 2, seed=0, output_transform=pinn.BoxDirichlet([0.0], [1.0]))
    h = pinn.train(m, prob, adam_steps=200, lbfgs_steps=50, n_collocation=64, progress=False)
    assert max(h["bc"]) < 1e-12  # u(0) = u(1) = 0 = exact values, at every step
    assert h["final_l2"] < 1e-2  # measured 1.0e-3 (seed 0, one thread)


def test_predict():
    m = pinn.make_model("poisson2d", [5, 5], seed=0)
    x = np.random.default_rng(0).uniform(size=(10, 2))
    y = pinn.predict(m, x)
    assert y.shape == (10,) and y.dtype == np.float64
    ref = m(torch.as_tensor(x, dtype=torch.float32)).detach().double().numpy()[:, 0]
    np.testing.assert_array_equal(y, ref)
    # other batch sizes: other float32 matmul blockings, equal to rounding
    np.testing.assert_allclose(pinn.predict(m, x, batch_size=3), y, rtol=0,
                               atol=16 * np.finfo(np.float32).eps * np.abs(y).max())
    np.testing.assert_array_equal(pinn.predict(m, torch.as_tensor(x)), y)
    m1 = pinn.make_model("poisson1d", 4, 1)
    assert pinn.predict(m1, np.linspace(0, 1, 5)).shape == (5,)
    with pytest.raises(ValueError, match="x must have shape"):
        pinn.predict(m, np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="batch_size"):
        pinn.predict(m, x, batch_size=0)


def test_device_argument_is_threaded_through_on_cpu():
    m = pinn.make_model("poisson1d", 4, 2, device="cpu")
    assert all(p.device.type == "cpu" for p in m.parameters())
    seen = {}

    def spy(state):
        seen["device"] = state.device
        seen["batch"] = state.batch["pde"].device
        seen["params"] = {p.device.type for p in state.params}

    pinn.train(m, "poisson1d", adam_steps=2, lbfgs_steps=0, n_collocation=8, device="cpu",
               callbacks=[spy], progress=False)
    assert seen == {"device": torch.device("cpu"), "batch": torch.device("cpu"),
                    "params": {"cpu"}}


@pytest.mark.gpu
def test_training_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    prob = pinn.define_problem(
        lambda x, u, du, d2u, c: -d2u[:, 0, 0] - c * math.pi**2 * torch.sin(math.pi * x[:, 0]),
        pinn.Interval(-1.0, 1.0), [pinn.DirichletBC(0.0)],
        reference=lambda x: np.sin(np.pi * x[:, 0]), parameters={"c": 1.0})
    m = pinn.make_model(prob, 16, 2, seed=0, device="cuda")
    prob.to("cuda")
    cbs = [pinn.callbacks.Resampler(every=50, method="rar", n_candidates=200, n_add=4)]
    h = pinn.train(m, prob, adam_steps=200, lbfgs_steps=50, n_collocation=64, n_boundary=2,
                   callbacks=cbs, progress=False)
    assert next(m.parameters()).device.type == "cuda"
    assert prob.parameters()[0].device.type == "cuda"
    assert abs(float(prob.parameters()[0].detach()) - 1.0) < 0.05
    assert h["final_l2"] < 0.1
    assert pinn.predict(m, [[0.5]]).shape == (1,)
