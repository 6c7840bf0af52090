import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import pinn
from pinn.compress import (compress, dense_hidden_bytes, dynamic_int8, hidden_bytes,
                           quantize_weight, reorder)
from pinn.train import make_model


@pytest.fixture(scope="module")
def model():
    m = make_model("poisson2d", 32, 3, seed=0)
    return m


@pytest.mark.parametrize("method", ["hmatrix", "svd", "prune"])
@pytest.mark.parametrize("budget", [0.5, 0.2])
def test_budget_is_met(model, method, budget):
    cm, info = compress(model, method, budget=budget, leaf_size=8) if method == "hmatrix" else \
        compress(model, method, budget=budget)
    assert info["feasible"]
    assert info["bytes"] <= budget * dense_hidden_bytes(model)
    assert hidden_bytes(cm) == info["bytes"]
    x = torch.rand(5, 2)
    assert cm(x).shape == (5, 1)
    # the input model is untouched
    assert all(type(l) is torch.nn.Linear for l in model.layers)


def test_budget_search_uses_the_budget(model):
    """Bisection returns the smallest tol meeting the budget: a bit less tol overshoots it."""
    cm, info = compress(model, "svd", budget=0.5)
    tol = info["setting"]["tol"]
    cm2, info2 = compress(model, "svd", tol=tol * 0.97)
    assert info2["bytes"] > 0.5 * dense_hidden_bytes(model) or info2["bytes"] == info["bytes"]


def test_tol_modes_bound_the_error(model):
    for method in ("hmatrix", "svd", "prune"):
        cm, info = compress(model, method, tol=0.3)
        assert info["weight_error"] <= 0.3 * (1 + 1e-6)


def test_quantize(model):
    cm8, i8 = compress(model, "quantize-int8")
    cm4, i4 = compress(model, "quantize-int4")
    assert i8["setting"]["bits"] == 8 and i4["setting"]["bits"] == 4
    assert i4["bytes"] < i8["bytes"] < dense_hidden_bytes(model)
    assert i8["weight_error"] < i4["weight_error"] < 0.2
    # fake quantization keeps the input autograd graph (PDE residuals work)
    p = pinn.get_problem("poisson2d")
    x = torch.rand(8, 2)
    r = p.residual(cm8, x)
    assert torch.isfinite(r).all()
    # the real int8 model is for timing only: it runs forward
    q = dynamic_int8(model)
    assert q(torch.rand(4, 2)).shape == (4, 1)
    _, ib = compress(model, "quantize", budget=0.1)
    assert ib["bytes"] <= 0.1 * dense_hidden_bytes(model)
    _, inf = compress(model, "quantize", budget=0.01)
    assert inf["feasible"] is False


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(2, 12), seed=st.integers(0, 1000))
def test_quantize_weight_properties(bits, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(6, 9, generator=g, dtype=torch.float64)
    Q = quantize_weight(W, bits)
    s = W.abs().amax(1, keepdim=True) / (2 ** (bits - 1) - 1)
    assert ((Q - W).abs() <= s / 2 + 1e-12).all()  # rounding error at most half a step
    codes = Q / s
    assert torch.allclose(codes, codes.round(), atol=1e-9)
    assert torch.equal(quantize_weight(Q, bits), Q) or torch.allclose(quantize_weight(Q, bits), Q)


@pytest.mark.parametrize("method", ["spectral-weight", "spectral-activation"])
def test_reorder_is_a_symmetry(model, method):
    x = torch.rand(20, 2)
    new, perms = reorder(model, method, x=x)
    torch.testing.assert_close(new(x), model(x), rtol=1e-5, atol=1e-6)
    assert len(perms) == len(model.layers) - 1
    cm, info = compress(model, "hmatrix", tol=0.5, reorder_method=method, x=x)
    assert info["setting"]["reorder"] == method


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_random_hidden_permutation_is_a_symmetry(seed):
    """Law behind the reorder option: permuting neurons consistently keeps the function."""
    m = make_model("poisson2d", 12, 3, seed=seed % 7)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(10, 2, generator=g)
    y = m(x)
    L = m.layers
    with torch.no_grad():
        for i in range(len(L) - 1):
            p = torch.randperm(L[i].out_features, generator=g)
            L[i].weight.copy_(L[i].weight[p])
            L[i].bias.copy_(L[i].bias[p])
            L[i + 1].weight.copy_(L[i + 1].weight[:, p])
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-6)


def test_bad_compress_input(model):
    with pytest.raises(ValueError, match="unknown method"):
        compress(model, "distill", budget=0.5)
    for b in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="budget"):
            compress(model, "svd", budget=b)
    with pytest.raises(ValueError, match="tol"):
        compress(model, "hmatrix", tol=0)
    with pytest.raises(ValueError, match="tol"):
        compress(model, "svd", tol=-1e-3)
    with pytest.raises(ValueError, match="no compressible layers"):
        compress(pinn.MLP([2, 8, 1]), "svd", budget=0.5)
    with pytest.raises(TypeError, match="pinn.MLP"):
        compress(torch.nn.Sequential(torch.nn.Linear(2, 2)), "svd", budget=0.5)
    with pytest.raises(ValueError, match="reorder"):
        reorder(model, "random")


@pytest.mark.parametrize("leaf_size", [0, 1, -4, 2.5, True])
def test_leaf_size_below_two_is_refused_not_reported_infeasible(model, leaf_size):
    """Regression (issue 11): leaf_size=1 used to report every budget infeasible."""
    with pytest.raises(ValueError, match="leaf_size must be an integer >= 2"):
        compress(model, "hmatrix", budget=0.5, leaf_size=leaf_size)


def test_leaf_size_two_meets_a_budget(model):
    cm, info = compress(model, "hmatrix", budget=0.5, leaf_size=2)
    assert info["feasible"] and info["setting"]["leaf_size"] == 2
    assert info["bytes"] <= 0.5 * dense_hidden_bytes(model)
