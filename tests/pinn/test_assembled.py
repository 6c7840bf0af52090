"""The assembled-weight path of HMatrixLinear (pinn.assembled): same function, same
derivatives and the same training as the leaf-by-leaf path, up to rounding."""
import numpy as np
import pytest
import torch

from pinn import HMatrixLinear, LowRankLinear, MLP
from pinn.assembled import assemble_weight, assembled_forward
from pinn.dynamic import DynamicHCompression
from pinn.problems import get_problem
from pinn.train import train

D = torch.float64


def _hmodel(width=16, leaf=4, rank=2, seed=0, din=1):
    g = torch.Generator().manual_seed(seed)
    return MLP([din, width, width, width, 1], generator=g,
               hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=leaf, rank=rank,
                                                       dtype=D, generator=g)).double()


def _geometric_layer(seed=0):
    """A layer with row/column permutations and leaves of several ranks (and a rank-0
    leaf) from a certified compression of a random weight on scattered neurons."""
    rng = np.random.default_rng(seed)
    lin = torch.nn.Linear(48, 40, dtype=D)
    pts_in, pts_out = rng.random((48, 2)), rng.random((40, 2))
    with torch.no_grad():
        d = np.linalg.norm(pts_out[:, None] - pts_in[None], axis=2)
        lin.weight.copy_(torch.as_tensor(1.0 / (0.05 + d)))
    return HMatrixLinear.from_linear(lin, tol=1e-3, leaf_size=4,
                                     points=(pts_out, pts_in))


@pytest.mark.parametrize("make", [lambda: _hmodel().layers[1], _geometric_layer])
def test_assembled_weight_equals_the_layer_weight(make):
    L = make()
    W, A = L.weight.detach(), assemble_weight(L).detach()
    assert A.shape == W.shape and A.dtype == W.dtype
    assert float((A - W).norm()) <= 1e-14 * float(W.norm())
    # and the layer applied leaf by leaf is x W^T + b
    x = torch.randn(7, L.in_features, dtype=D)
    y = L(x).detach()
    assert float((x @ A.t() + L.bias.detach() - y).norm()) <= 1e-13 * float(x.norm() * W.norm())


def test_permuted_layer_really_is_permuted():
    # guards the test above against a layer without permutations
    L = _geometric_layer()
    assert L.row_perm is not None and L.col_perm is not None
    assert not torch.equal(L.row_perm, torch.arange(L.out_features))
    ranks = {d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank"}
    assert len(ranks) >= 2


def _lrmodel(seed=0):
    g = torch.Generator().manual_seed(seed)
    return MLP([1, 16, 16, 16, 1], generator=g,
               hidden_layer=lambda a, b: LowRankLinear(a, b, 3, dtype=D, generator=g)).double()


@pytest.mark.parametrize("make", [_hmodel, _lrmodel])
def test_loss_and_parameter_gradients_equal_the_leaf_path(make):
    prob = get_problem("poisson1d")
    model = make()
    batch = prob.make_batch(32, 2, "sobol", 0, D)

    def grads():
        model.zero_grad()
        tot = sum(prob.losses(model, batch).values())  # second input derivatives
        tot.backward()
        return float(tot.detach()), [p.grad.clone() for p in model.parameters()]

    l0, g0 = grads()
    with assembled_forward(model):
        l1, g1 = grads()
    assert abs(l1 - l0) <= 1e-12 * abs(l0)
    for a, b in zip(g0, g1):
        assert float((a - b).norm()) <= 1e-11 * float(a.norm()) + 1e-300


def test_context_restores_the_layer_and_refuses_nesting():
    model = _hmodel()
    L = model.layers[1]
    with assembled_forward(model):
        assert "forward" in vars(L)
        with pytest.raises(ValueError, match="already inside"):
            with assembled_forward(model):
                pass
    assert "forward" not in vars(L) and "start_probe" not in vars(L)
    m = _lrmodel()
    with assembled_forward(m):
        assert "forward" in vars(m.layers[1])
    assert "forward" not in vars(m.layers[1])
    with pytest.raises(TypeError, match="HMatrixLinear"):
        assemble_weight(torch.nn.Linear(3, 3))


def _train(model, assembled, callbacks=(), adam=12, lbfgs=6):
    ctx = assembled_forward(model) if assembled else None
    if ctx:
        ctx.__enter__()
    try:
        return train(model, "poisson1d", adam_steps=adam, lbfgs_steps=lbfgs, lr=3e-3,
                     n_collocation=32, n_boundary=2, seed=0, progress=False, eval_every=4,
                     callbacks=callbacks)
    finally:
        if ctx:
            ctx.__exit__(None, None, None)


def test_training_curve_equals_the_leaf_path_adam_and_lbfgs():
    h0 = _train(_hmodel(), False)
    h1 = _train(_hmodel(), True)
    assert h0["step"] == h1["step"] and h0["phase"].count("lbfgs") >= 1
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(h1["l2"], h0["l2"], rtol=1e-9, atol=0)


def test_dynamic_training_equals_the_leaf_path():
    """Probes, refinement (structure changes) and Adam-state carry-over under the
    assembled path: the same losses, the same structures."""
    def run(assembled):
        m = _hmodel(rank=1)
        cb = DynamicHCompression(1e-3, every=4, probe_steps=2, grow_rank=1)
        h = _train(m, assembled, [cb], adam=13, lbfgs=0)
        return h, cb, m

    h0, cb0, m0 = run(False)
    h1, cb1, m1 = run(True)
    assert len(cb0.log) == 3 and any(e.get("grown", 0) for e in cb0.log)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-9, atol=0)
    for a, b in zip(m0.layers[1:-1], m1.layers[1:-1]):
        assert a.leaf_info() == b.leaf_info()


def test_shared_weight_follows_in_place_updates():
    """An in-place change of one factor (as an optimizer step makes, also the fused Adam
    that does not advance version counters) is seen by the next forward call."""
    model = _hmodel()
    x = torch.randn(5, 1, dtype=D)
    with assembled_forward(model):
        y0 = model(x).detach()
        assert torch.equal(model(x).detach(), y0)
        p = model.layers[2].factors[-1]
        p.grad = torch.full_like(p, 1.0)
        torch.optim.Adam([p], lr=0.5, fused=True).step()
        y1 = model(x).detach()
    ref = model(x).detach()  # the leaf-by-leaf path, after the change
    assert float((y1 - y0).norm()) > 1e-3 * float(y0.norm())
    assert float((y1 - ref).norm()) <= 1e-13 * float(ref.norm())


def test_fused_adam_of_the_study_equals_the_loop_adam_with_dynamic_refinement():
    """The study's optimizer (torch's fused Adam) is the same algorithm as the
    per-parameter Adam, also across DynamicHCompression's structure changes (parameters
    replaced, Adam states carried over)."""
    from pinn.studies.pinn_compare import adam_optimizer

    def run(fused):
        m = _hmodel(rank=1)
        cb = DynamicHCompression(1e-3, every=4, probe_steps=2, grow_rank=1)
        with assembled_forward(m):
            h = train(m, "poisson1d", adam_steps=13, lbfgs_steps=0, n_collocation=32,
                      n_boundary=2, seed=0, progress=False, eval_every=4, callbacks=[cb],
                      optimizer=adam_optimizer(3e-3, fused))
        return h, cb, m

    h0, cb0, m0 = run(False)
    h1, cb1, m1 = run(True)
    assert any(e.get("grown", 0) for e in cb1.log)
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-9, atol=0)
    for a, b in zip(m0.layers[1:-1], m1.layers[1:-1]):
        assert a.leaf_info() == b.leaf_info()
