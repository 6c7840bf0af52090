"""The grouped (batched) leaf application of ``pinn.autograd`` against a per-leaf reference.

The reference assembles the dense weight from the leaves with plain
differentiable torch ops (``W[row_perm[p], col_perm[q]] = W_perm[p, q]``), so
``y = x W^T`` and every gradient -- of ``x`` and of each factor, first and
second order -- can be compared to 1e-12 in float64.
"""
import numpy as np
import pytest
import torch
from hmat import LeafKind
from hypothesis import given, settings, strategies as st

import pinn
from pinn.autograd import LeafSpec, Structure, StructuredLinearFn, structured_linear

D = torch.float64
TOL = 1e-12


# ----------------------------------------------------------------------------- reference
def reference_weight(struct, params):
    """Dense ``W`` (original coordinates) assembled leaf by leaf."""
    m, n = struct.shape
    Wp = torch.zeros(m, n, dtype=D)
    for lf in struct.leaves:
        if lf.kind == LeafKind.DENSE:
            A = params[lf.idx[0]]
            blk = A.t() if lf.transposed else A
        else:
            U, V = params[lf.idx[0]], params[lf.idx[1]]
            if lf.transposed:
                U, V = V, U
            blk = U @ V.t()
        pad = torch.zeros(m, n, dtype=D)
        pad = pad.index_put((torch.arange(lf.r0, lf.r0 + lf.m)[:, None],
                             torch.arange(lf.c0, lf.c0 + lf.n)[None, :]), blk)
        Wp = Wp + pad
    rp = torch.arange(m) if struct.row_perm is None else struct.row_perm
    cp = torch.arange(n) if struct.col_perm is None else struct.col_perm
    W = torch.zeros(m, n, dtype=D)
    return W.index_put((rp[:, None], cp[None, :]), Wp)


def reference_apply(x, struct, params):
    return x @ reference_weight(struct, params).t()


# ----------------------------------------------------------------------------- structures
def make_structure(row_sizes, col_sizes, kinds, ranks, perm_seed=None, adjoint=False, seed=0):
    """Tiling of ``row_sizes x col_sizes`` blocks; ``kinds``/``ranks`` cycled over the blocks."""
    gen = torch.Generator().manual_seed(seed)
    leaves, params = [], []
    r0 = 0
    b = 0
    for m in row_sizes:
        c0 = 0
        for n in col_sizes:
            kind = kinds[b % len(kinds)]
            if kind == "dense":
                leaves.append(LeafSpec("dense", r0, c0, m, n, (len(params),)))
                params.append(torch.randn(m, n, dtype=D, generator=gen))
            else:
                k = ranks[b % len(ranks)]
                leaves.append(LeafSpec("lowrank", r0, c0, m, n, (len(params), len(params) + 1)))
                params.append(torch.randn(m, k, dtype=D, generator=gen))
                params.append(torch.randn(n, k, dtype=D, generator=gen))
            c0 += n
            b += 1
        r0 += m
    shape = (sum(row_sizes), sum(col_sizes))
    rp = cp = None
    if perm_seed is not None:
        pg = torch.Generator().manual_seed(perm_seed)
        rp = torch.randperm(shape[0], generator=pg)
        cp = torch.randperm(shape[1], generator=pg)
    s = Structure(shape, leaves, rp, cp)
    if adjoint:
        s = s.adjoint()
    return s, [p.requires_grad_() for p in params]


def check_against_reference(struct, params, lead, seed=1):
    gen = torch.Generator().manual_seed(seed)
    m, n = struct.shape
    x = torch.randn(*lead, n, dtype=D, generator=gen).requires_grad_()
    gy = torch.randn(*lead, m, dtype=D, generator=gen)
    y = structured_linear(x, struct, params)
    yr = reference_apply(x, struct, params)
    assert y.shape == yr.shape == (*lead, m)
    assert y.dtype == D
    torch.testing.assert_close(y, yr, rtol=0, atol=TOL)

    # first derivatives: x and every factor
    ins = [x, *params]
    g = torch.autograd.grad(y, ins, gy, create_graph=True)
    gr = torch.autograd.grad(yr, ins, gy, create_graph=True)
    for a, b in zip(g, gr):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)

    # second derivatives through the backward (input gradient and factor gradients)
    w = [torch.randn(t.shape, dtype=D, generator=gen) for t in g]
    s = sum((a * wi).sum() for a, wi in zip(g, w))
    sr = sum((a * wi).sum() for a, wi in zip(gr, w))
    h = torch.autograd.grad(s, ins, allow_unused=True)
    hr = torch.autograd.grad(sr, ins, allow_unused=True)
    for a, b, t in zip(h, hr, ins):
        a = torch.zeros_like(t) if a is None else a
        b = torch.zeros_like(t) if b is None else b
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- example tests
@pytest.mark.parametrize("perm", [None, 3])
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (0,)])
def test_mixed_structure_matches_reference(perm, adjoint, lead):
    # equal shapes repeat -> several multi-leaf groups; ranks 0, 1, 2 mixed
    s, ps = make_structure([3, 3, 2, 3], [4, 2, 4, 4], ["dense", "lowrank", "lowrank"], [1, 2, 0, 2],
                           perm_seed=perm, adjoint=adjoint)
    groups = s.groups(ps)
    assert len(groups) < len(s.leaves)
    assert any(g.g > 1 for g in groups)
    check_against_reference(s, ps, lead)


def test_all_rank_zero_and_empty_structure():
    s, ps = make_structure([3, 2], [2, 4], ["lowrank"], [0], perm_seed=1)
    x = torch.randn(4, 6, dtype=D, requires_grad=True)
    y = structured_linear(x, s, ps)
    assert torch.equal(y, torch.zeros(4, 5, dtype=D))
    check_against_reference(s, ps, (4,))
    gU = torch.autograd.grad(y.sum(), ps[0], allow_unused=True)[0]
    assert gU is None or gU.shape == (3, 0)
    empty = Structure((3, 4), [])
    y = structured_linear(torch.randn(2, 4, dtype=D), empty, [])
    assert torch.equal(y, torch.zeros(2, 3, dtype=D))


def test_wrong_shape_message():
    s, ps = make_structure([2], [3], ["dense"], [1])
    with pytest.raises(ValueError, match=r"x: last dimension must be 3, got shape \(2, 4\)"):
        structured_linear(torch.zeros(2, 4, dtype=D), s, ps)


def test_float32_dtype_and_structure_to():
    s, ps = make_structure([4, 4], [4, 4], ["dense", "lowrank"], [2], perm_seed=0)
    p32 = [p.detach().float().requires_grad_() for p in ps]
    x = torch.randn(3, 8)
    s2 = s.to("cpu")
    y = structured_linear(x, s2, p32)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, (x.double() @ reference_weight(s, ps).t()).float(),
                               rtol=1e-5, atol=1e-5)


def test_grouping_cache_follows_parameter_shapes():
    """The grouping is cached on the Structure and recomputed when a rank changes."""
    s, ps = make_structure([3, 3], [3, 3], ["lowrank"], [2], perm_seed=2)
    g1 = s.groups(ps)
    assert s.groups(ps) is g1
    assert len(g1) == 1 and g1[0].g == 4
    gen = torch.Generator().manual_seed(5)
    ps2 = list(ps)
    ps2[0] = torch.randn(3, 1, dtype=D, generator=gen).requires_grad_()  # leaf 0 -> rank 1
    ps2[1] = torch.randn(3, 1, dtype=D, generator=gen).requires_grad_()
    g2 = s.groups(ps2)
    assert g2 is not g1 and len(g2) == 2
    check_against_reference(s, ps2, (4,))


def test_only_needed_factor_grads():
    """``grad(y, x)`` works (the engine does not want the factors); factors alone too."""
    s, ps = make_structure([3, 3], [2, 2], ["dense", "lowrank"], [1], perm_seed=4)
    x = torch.randn(5, 4, dtype=D, requires_grad=True)
    y = structured_linear(x, s, ps)
    (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx, torch.ones(5, 6, dtype=D) @ reference_weight(s, ps), rtol=0, atol=TOL)
    y = structured_linear(x, s, ps)
    gp = torch.autograd.grad(y.sum(), ps[3])
    yr = reference_apply(x, s, ps)
    torch.testing.assert_close(gp[0], torch.autograd.grad(yr.sum(), ps[3])[0], rtol=0, atol=TOL)


def test_vmap_jacrev_matches_reference():
    s, ps = make_structure([3, 2, 3], [2, 2, 3], ["lowrank", "dense"], [2, 1], perm_seed=6)
    x = torch.randn(4, 7, dtype=D)
    J = torch.func.jacrev(lambda z: structured_linear(z, s, ps))(x)
    Jr = torch.func.jacrev(lambda z: reference_apply(z, s, ps))(x)
    torch.testing.assert_close(J, Jr, rtol=0, atol=TOL)
    # Jacobian w.r.t. the factors (vmap over the cotangents through _param_grads)
    f = lambda *q: structured_linear(x, s, list(q))  # noqa: E731
    fr = lambda *q: reference_apply(x, s, list(q))  # noqa: E731
    Jp = torch.func.jacrev(f, argnums=tuple(range(len(ps))))(*[p.detach() for p in ps])
    Jpr = torch.func.jacrev(fr, argnums=tuple(range(len(ps))))(*[p.detach() for p in ps])
    for a, b in zip(Jp, Jpr):
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------- gradcheck
def _layer_fn(layer):
    st = layer.structure
    ps = [p.detach().clone().requires_grad_() for p in layer.factors]
    return (lambda x, *q: StructuredLinearFn.apply(x, st, *q)), ps


@pytest.mark.parametrize("points", [False, True])
def test_gradcheck_hmatrix_layer(points):
    torch.manual_seed(0)
    if points:
        pin = np.linspace(0, 1, 40)[:, None]
        pout = np.linspace(0, 1, 12)[:, None] ** 2
        layer = pinn.HMatrixLinear(40, 12, leaf_size=4, rank=2, dtype=D, in_points=pin, out_points=pout,
                                   eta=1.0)
    else:
        layer = pinn.HMatrixLinear(20, 12, leaf_size=4, rank=2, dtype=D)
    fn, ps = _layer_fn(layer)
    x = torch.randn(2, layer.in_features, dtype=D, requires_grad=True)
    st = layer.structure
    y = fn(x, *ps)
    torch.testing.assert_close(y, reference_apply(x, st, ps), rtol=0, atol=TOL)
    assert len(st.groups(ps)) < len(st.leaves)
    assert torch.autograd.gradcheck(fn, (x, *ps))
    assert torch.autograd.gradgradcheck(fn, (x, *ps))


# ----------------------------------------------------------------------------- properties
sizes = st.lists(st.integers(1, 4), min_size=1, max_size=4)


@settings(deadline=None, max_examples=25)
@given(rows=sizes, cols=sizes,
       kinds=st.lists(st.sampled_from(["dense", "lowrank"]), min_size=1, max_size=4),
       ranks=st.lists(st.integers(0, 3), min_size=1, max_size=3),
       perm=st.one_of(st.none(), st.integers(0, 100)),
       adjoint=st.booleans(),
       lead=st.sampled_from([(), (0,), (3,), (2, 2)]),
       seed=st.integers(0, 1000))
def test_property_matches_reference(rows, cols, kinds, ranks, perm, adjoint, lead, seed):
    s, ps = make_structure(rows, cols, kinds, ranks, perm_seed=perm, adjoint=adjoint, seed=seed)
    check_against_reference(s, ps, lead, seed=seed + 1)


@pytest.mark.parametrize("kind, rank", [("dense", 0), ("lowrank", 3), ("lowrank", 0)])
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
def test_single_full_leaf_fast_path_matches_reference(kind, rank, adjoint, lead):
    """One full-size leaf without permutations (LowRankLinear) takes the plain-matmul path;
    same values, first and second derivatives as the reference."""
    s, ps = make_structure([7], [5], [kind], [rank], adjoint=adjoint)
    assert pinn.autograd._single_leaf(s) is not None
    check_against_reference(s, ps, lead)
    # with a permutation it is no longer the fast path, and still right
    sp, pp = make_structure([7], [5], [kind], [rank], perm_seed=2, adjoint=adjoint)
    assert pinn.autograd._single_leaf(sp) is None
    check_against_reference(sp, pp, lead)
