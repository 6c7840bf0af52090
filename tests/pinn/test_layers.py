import io

import numpy as np
import hmat
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.autograd import gradcheck, gradgradcheck
from torch.func import jacrev, vmap

import pinn
from pinn import HMatrixLinear, LowRankLinear, MLP
from pinn.autograd import StructuredLinearFn
from pinn.problems import Burgers1D, Poisson2D

D = torch.float64


def _permuted_hlayer(m=12, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = HMatrixLinear(n, m, leaf_size=3, rank=2, dtype=D, generator=g)
    P = L.partition
    permuted = hmat.Partition(P.shape, P.r0, P.m, P.c0, P.n, P.kind,
                              torch.randperm(m, generator=g).numpy(), torch.randperm(n, generator=g).numpy(),
                              tree=(P.node_kind, P.node_first, P.node_nr, P.node_nc))
    L.restructure(permuted, [L.leaf_factors(i) for i in range(L.num_leaves)])
    with torch.no_grad():
        L.bias.normal_(generator=g)
    return L


def _compressed_layer(n=48, tol=1e-3, seed=0):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(n, n).double()
    with torch.no_grad():  # smooth kernel-like weight so the compression is non-trivial
        i = torch.arange(n, dtype=D)
        lin.weight.copy_(1.0 / (1.0 + (i[:, None] - i[None, :]).abs()) + 1e-3 * lin.weight)
    return lin, HMatrixLinear.from_linear(lin, tol=tol, leaf_size=8)


def test_forward_matches_dense_weight():
    L = _permuted_hlayer()
    x = torch.randn(5, 10, dtype=D)
    torch.testing.assert_close(L(x), x @ L.weight.T + L.bias, rtol=0, atol=1e-13)
    x3 = torch.randn(2, 3, 10, dtype=D)  # arbitrary leading dims
    torch.testing.assert_close(L(x3), x3 @ L.weight.T + L.bias, rtol=0, atol=1e-13)


def test_gradcheck_hmatrix_inputs_and_factors():
    L = _permuted_hlayer()
    st_ = L.structure
    ps = [p.detach().clone().requires_grad_(True) for p in L.factors]
    x = torch.randn(4, 10, dtype=D, requires_grad=True)
    f = lambda x, *p: StructuredLinearFn.apply(x, st_, *p)
    assert gradcheck(f, (x, *ps))
    assert gradgradcheck(f, (x, *ps))


def test_gradcheck_lowrank():
    L = LowRankLinear(7, 6, 3, dtype=D)
    x = torch.randn(4, 7, dtype=D, requires_grad=True)
    U = L.U.detach().clone().requires_grad_(True)
    V = L.V.detach().clone().requires_grad_(True)
    f = lambda x, U, V: StructuredLinearFn.apply(x, L.structure, U, V)
    assert gradcheck(f, (x, U, V))
    assert gradgradcheck(f, (x, U, V))
    assert gradcheck(L, (x,)) and gradgradcheck(L, (x,))


def test_third_derivative_through_hlayer():
    L = _permuted_hlayer(6, 6)
    net = lambda x: torch.tanh(L(x)).sum(-1)
    x = torch.randn(3, 6, dtype=D, requires_grad=True)
    g = torch.autograd.grad(net(x).sum(), x, create_graph=True)[0]
    h = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)[0]
    t3 = torch.autograd.grad(h[:, 0].sum(), x)[0]
    Ld = L.to_linear()
    netd = lambda x: torch.tanh(Ld(x)).sum(-1)
    x2 = x.detach().clone().requires_grad_(True)
    g2 = torch.autograd.grad(netd(x2).sum(), x2, create_graph=True)[0]
    h2 = torch.autograd.grad(g2[:, 0].sum(), x2, create_graph=True)[0]
    t32 = torch.autograd.grad(h2[:, 0].sum(), x2)[0]
    torch.testing.assert_close(t3, t32, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("problem", [Poisson2D(), Burgers1D()])
def test_pde_residual_hlayer_equals_dense(problem):
    lin, H = _compressed_layer(16, tol=1e-2)
    g = torch.Generator().manual_seed(1)
    net_h = MLP([2, 16, 16, 1], generator=g).double()
    net_h.layers[1] = H
    net_d = MLP([2, 16, 16, 1]).double()
    net_d.load_state_dict({k: v for k, v in net_h.state_dict().items() if "layers.1" not in k},
                          strict=False)
    net_d.layers[1] = H.to_linear()
    x = torch.as_tensor(problem.sample_collocation(32, "uniform", 0), dtype=D)
    r_h = problem.residual(net_h, x)
    r_d = problem.residual(net_d, x)
    scale = r_d.abs().max()
    assert float((r_h - r_d).detach().abs().max()) <= 1e-13 * max(1.0, float(scale.detach()))
    # parameter gradients of the residual loss agree too (dense-weight chain rule)
    gh = torch.autograd.grad(r_h.pow(2).mean(), net_h.layers[0].weight)[0]
    gd = torch.autograd.grad(r_d.pow(2).mean(), net_d.layers[0].weight)[0]
    torch.testing.assert_close(gh, gd, rtol=1e-10, atol=1e-12)


def test_vmap_jacrev_hessian():
    L = _permuted_hlayer()
    f = lambda xi: torch.tanh(L(xi)).sum()
    x = torch.randn(5, 10, dtype=D)
    H = vmap(jacrev(jacrev(f)))(x)
    Ld = L.to_linear()
    fd = lambda xi: torch.tanh(Ld(xi)).sum()
    Hd = vmap(jacrev(jacrev(fd)))(x)
    torch.testing.assert_close(H, Hd, rtol=1e-12, atol=1e-12)


def test_from_linear_error_bound_and_operator():
    lin, H = _compressed_layer(64, tol=1e-3)
    W = lin.weight.detach()
    err = float((H.weight - W).norm() / W.norm())
    assert err <= 1e-3 * (1 + 1e-6)
    op = H.operator()
    np.testing.assert_allclose(op.to_dense(), H.weight.detach().numpy(), atol=1e-14)
    assert H.nbytes < W.numel() * W.element_size()
    x = torch.randn(3, 64, dtype=D)
    np.testing.assert_allclose((op @ x.numpy().T).T, (H(x) - H.bias).detach().numpy(), atol=1e-12)
    lin2 = H.to_linear()
    torch.testing.assert_close(lin2(x), H(x))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(8, 40), m=st.integers(8, 40), tol=st.sampled_from([1e-1, 1e-2, 1e-4]),
       seed=st.integers(0, 1000))
def test_from_linear_certified_bound_property(n, m, tol, seed):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(n, m).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(m, n, generator=g, dtype=D))
    H = HMatrixLinear.from_linear(lin, tol=tol, leaf_size=4)
    W = lin.weight.detach()
    assert float((H.weight - W).norm()) <= tol * float(W.norm()) * (1 + 1e-8)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), a=st.floats(-2, 2), b=st.floats(-2, 2))
def test_linearity_and_adjoint_property(seed, a, b):
    L = _permuted_hlayer(seed=seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(2, 10, dtype=D, generator=g), torch.randn(2, 10, dtype=D, generator=g)
    st_ = L.structure
    ps = list(L.factors)
    A = lambda v: StructuredLinearFn.apply(v, st_, *ps)
    torch.testing.assert_close(A(a * x + b * y), a * A(x) + b * A(y), rtol=1e-12, atol=1e-12)
    z = torch.randn(2, 12, dtype=D, generator=g)
    At = lambda v: StructuredLinearFn.apply(v, st_.adjoint(), *ps)
    torch.testing.assert_close((A(x) * z).sum(), (x * At(z)).sum(), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip():
    _, H = _compressed_layer(32, tol=1e-2)
    net = MLP([2, 32, 32, 1]).double()
    net.layers[1] = H
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=False)
    # a fresh layer with a *different* structure: loading rebuilds the structure
    net2 = MLP([2, 32, 32, 1]).double()
    net2.layers[1] = HMatrixLinear(32, 32, leaf_size=16, rank=1, dtype=D)
    net2.load_state_dict(sd)
    x = torch.rand(7, 2, dtype=D)
    torch.testing.assert_close(net(x), net2(x), rtol=0, atol=0)
    assert net2.layers[1].leaf_info() == net.layers[1].leaf_info()


def test_lowrank_from_linear_and_state_dict():
    lin = torch.nn.Linear(20, 16).double()
    L = LowRankLinear.from_linear(lin, tol=0.5)
    s = torch.linalg.svdvals(lin.weight.detach())
    assert float((L.weight - lin.weight).norm()) <= 0.5 * float(s.norm()) + 1e-12
    full = LowRankLinear.from_linear(lin, rank=16)
    torch.testing.assert_close(full.weight, lin.weight.detach(), rtol=1e-10, atol=1e-12)
    L2 = LowRankLinear(20, 16, L.rank, dtype=D)
    L2.load_state_dict(L.state_dict())
    x = torch.randn(3, 20, dtype=D)
    torch.testing.assert_close(L(x), L2(x))
    op = L.operator()
    np.testing.assert_allclose(op.to_dense(), L.weight.detach().numpy(), atol=1e-14)


def test_mlp_and_penalty():
    net = MLP([2, 16, 16, 16, 1], hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=4, rank=2))
    assert isinstance(net.layers[1], HMatrixLinear) and isinstance(net.layers[0], torch.nn.Linear)
    assert net(torch.rand(5, 2)).shape == (5, 1)
    p = pinn.block_rank_penalty(net)
    # the definition: sum over every low-rank leaf of ||U||_F^2 + ||V||_F^2
    expected = sum(float(f.detach().pow(2).sum()) for lay in net.layers if isinstance(lay, HMatrixLinear)
                   for i, d in enumerate(lay.leaf_info()) if d["kind"] == "lowrank" for f in lay.leaf_factors(i))
    assert float(p) == pytest.approx(expected, rel=1e-5) and expected > 0 and p.requires_grad
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 4, 1], activation="softsign")
    # Glorot init: std ~ sqrt(2 / (fan_in + fan_out))
    big = MLP([200, 200, 200], generator=torch.Generator().manual_seed(0))
    assert abs(float(big.layers[0].weight.std()) - 0.1 / 2**0.5) < 0.003


def test_bad_input_layers():
    lin = torch.nn.Linear(8, 8)
    with pytest.raises(ValueError, match="tol"):
        HMatrixLinear.from_linear(lin, tol=0)
    with pytest.raises(ValueError, match="tol"):
        LowRankLinear.from_linear(lin, tol=-1.0)
    with pytest.raises(ValueError, match="rank"):
        LowRankLinear(4, 4, 9)
    L = HMatrixLinear(8, 8, leaf_size=4)
    with pytest.raises(ValueError, match="last dimension"):
        L(torch.randn(2, 5))


@pytest.mark.parametrize("make, exc, name", [
    (lambda: HMatrixLinear(8, 8, leaf_size=0), ValueError, "leaf_size"),
    (lambda: HMatrixLinear(8, 8, leaf_size=-3), ValueError, "leaf_size"),
    (lambda: HMatrixLinear(8, 8, leaf_size=2.5), TypeError, "leaf_size"),
    (lambda: HMatrixLinear(0, 8), ValueError, "in_features"),
    (lambda: HMatrixLinear(8, 0), ValueError, "out_features"),
    (lambda: HMatrixLinear(8.0, 8), TypeError, "in_features"),
    (lambda: HMatrixLinear(8, 8, rank=-1), ValueError, "rank"),
    (lambda: HMatrixLinear(8, 8, rank=1.5), TypeError, "rank"),
    (lambda: LowRankLinear(8, 8, rank=2.5), TypeError, "rank"),
    (lambda: LowRankLinear(8, 8, rank=-1), ValueError, "rank"),
    (lambda: LowRankLinear(0, 8, rank=0), ValueError, "in_features"),
    (lambda: LowRankLinear(8, True, rank=0), TypeError, "out_features"),
])
def test_layer_constructor_arguments_are_validated(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


@settings(max_examples=20, deadline=None)
@given(n_in=st.integers(1, 20), n_out=st.integers(1, 20), leaf=st.integers(1, 25), rank=st.integers(0, 4))
def test_hlayer_any_valid_sizes_build_and_match_weight(n_in, n_out, leaf, rank):
    L = HMatrixLinear(n_in, n_out, leaf_size=leaf, rank=rank, dtype=D, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, n_in, dtype=D, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(L(x), x @ L.weight.t() + L.bias, rtol=1e-12, atol=1e-12)


def test_operator_is_a_snapshot_not_a_view_of_the_parameters():
    """``layer.operator()`` of a float64 layer must not alias the live Parameters: an optimizer
    step afterwards changes neither the operator's data nor its (cached) matvec."""
    L = HMatrixLinear(12, 12, leaf_size=4, rank=2, dtype=D, generator=torch.Generator().manual_seed(0))
    H = L.operator()
    x = np.random.default_rng(0).standard_normal(12)
    y0 = H @ x  # packs the leaves
    W0 = L.weight.detach().numpy().copy()
    np.testing.assert_allclose(y0, W0 @ x, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        for p in L.factors:
            p.add_(1.0)  # what an optimizer step does, in place
    np.testing.assert_allclose(H.to_dense(), W0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H @ x, W0 @ x, rtol=1e-12, atol=1e-12)
