import numpy as np
import pytest
import torch

import pinn
from pinn.compress import compress
from pinn.ntk import jacobians, ntk, ntk_compare
from pinn.train import make_model


def _autograd_rows(model, problem, xb, xr):
    m = model.double()
    ps = [p for p in m.parameters()]
    rows_u, rows_r = [], []
    for x in xb:
        u = m(torch.as_tensor(x[None], dtype=torch.float64)).sum()
        rows_u.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(u, ps)]))
    for x in xr:
        r = problem.residual(m, torch.as_tensor(x[None], dtype=torch.float64)).sum()
        rows_r.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(r, ps)]))
    return torch.stack(rows_u), torch.stack(rows_r)


@pytest.mark.parametrize("kind", ["dense", "hmatrix", "lowrank"])
def test_ntk_matches_autograd(kind):
    p = pinn.get_problem("burgers1d")
    m = make_model(p, 12, 3, seed=0)
    if kind == "hmatrix":
        m, _ = compress(m, "hmatrix", tol=0.3, leaf_size=4)
    elif kind == "lowrank":
        m, _ = compress(m, "svd", rank=3)
    xb = p.boundary_points(6, "uniform", 0)[:5]
    xr = p.sample_collocation(7, "uniform", 0)
    Ju, Jr = jacobians(m, p, xb, xr, chunk=4)
    from pinn.compress import clone_model
    Au, Ar = _autograd_rows(clone_model(m), p, xb, xr)
    torch.testing.assert_close(Ju, Au, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(Jr, Ar, rtol=1e-10, atol=1e-12)
    K = ntk(m, p, xb, xr)
    assert K["K_uu"].shape == (5, 5) and K["K_rr"].shape == (7, 7) and K["K_ur"].shape == (5, 7)
    assert K["K_rr"].dtype == np.float64
    np.testing.assert_allclose(K["K_uu"], K["K_uu"].T, atol=1e-12)


def test_ntk_of_pruned_and_quantized_models():
    p = pinn.get_problem("poisson2d")
    m = make_model(p, 12, 3, seed=1)
    xb, xr = p.boundary_points(4, "uniform", 0), p.sample_collocation(4, "uniform", 0)
    for meth, kw in (("prune", dict(budget=0.5)), ("quantize-int8", {})):
        cm, _ = compress(m, meth, **kw)
        cm(torch.rand(2, 2))  # a forward pass first (pruned weights become non-leaf)
        K = ntk(cm, p, xb, xr)
        assert np.isfinite(K["K_rr"]).all()


def test_ntk_compare_metrics():
    p = pinn.get_problem("poisson1d")
    m = make_model(p, 10, 2, seed=0)
    xb, xr = p.boundary_points(2), p.sample_collocation(8, "grid")
    K = ntk(m, p, xb, xr)
    same = ntk_compare(K, K)
    assert same["rel_fro"] == 0 and abs(same["alignment"] - 1) < 1e-12
    assert same["top_eig_rel_err_max"] == 0 and same["trace_ratio"] == same["trace_ratio_tilde"]
    K2 = {k: 2 * v for k, v in K.items()}
    c = ntk_compare(K, K2)
    assert abs(c["rel_fro"] - 1) < 1e-12 and abs(c["alignment"] - 1) < 1e-12
    assert abs(c["top_eig_rel_err_max"] - 1) < 1e-9
    with pytest.raises(ValueError, match="shapes"):
        ntk_compare(K, {**K, "K_uu": np.zeros((1, 1))})


def test_effective_ntk_is_free_of_the_parametrization():
    """A lossless re-parametrization (full-rank SVD factors) keeps the function: the NTK
    w.r.t. the effective dense weights is unchanged, the parameter NTK is not."""
    p = pinn.get_problem("poisson1d")
    m = make_model(p, 10, 3, seed=2).double()
    full, info = compress(m, "svd", rank=10)
    assert info["weight_error"] < 1e-12
    xb, xr = p.boundary_points(2), p.sample_collocation(6, "grid")
    K = ntk(m, p, xb, xr)
    # for a dense network the effective weights are its parameters
    Ke = ntk(m, p, xb, xr, wrt="effective")
    for k in K:
        np.testing.assert_allclose(Ke[k], K[k], rtol=1e-12, atol=1e-12 * np.abs(K[k]).max())
    same = ntk_compare(K, ntk(full, p, xb, xr, wrt="effective"))
    assert same["rel_fro"] < 1e-10
    assert ntk_compare(K, ntk(full, p, xb, xr))["rel_fro"] > 1e-2
    with pytest.raises(ValueError, match="wrt"):
        ntk(m, p, xb, xr, wrt="weights")
