"""HMatrixLinear checkpoints across block-structure changes, with an optimizer (issue 11, item 7)."""

import io

import pytest
import torch

from pinn import MLP, HMatrixLinear

D = torch.float64


def _net(leaf_size, rank, seed):
    g = torch.Generator().manual_seed(seed)
    return MLP([2, 32, 32, 1], hidden_layer=lambda a, b: HMatrixLinear(a, b, leaf_size=leaf_size, rank=rank,
                                                                          dtype=D, generator=g),
               generator=g).double()


def _loss(net, seed=0):
    x = torch.rand(16, 2, dtype=D, generator=torch.Generator().manual_seed(seed))
    return (net(x) - torch.sin(x.sum(1, keepdim=True))).pow(2).mean()


def _steps(net, opt, n, seed=0):
    for i in range(n):
        opt.zero_grad()
        _loss(net, seed + i).backward()
        opt.step()


def _checkpoint(net, opt):
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def _snapshot(layer):
    return ([id(p) for p in layer.factors], [p.detach().clone() for p in layer.factors], layer.leaf_info(),
            layer.get_extra_state())


def _same(layer, snap):
    ids, vals, info, extra = snap
    assert [id(p) for p in layer.factors] == ids
    assert all(torch.equal(p, v) for p, v in zip(layer.factors, vals)) and len(vals) == len(layer.factors)
    assert layer.leaf_info() == info and layer.get_extra_state() == extra


def test_standard_resume_order_across_a_rank_change_trains_every_factor():
    """model -> optimizer -> model.load_state_dict -> optimizer.load_state_dict, checkpoint of
    another block structure (other ranks): the resumed run continues the original exactly."""
    a = _net(16, 3, seed=1)  # the run that wrote the checkpoint: ranks 3
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2)
    _steps(a, opt_a, 3)
    ck = _checkpoint(a, opt_a)

    b = _net(16, 1, seed=2)  # a fresh model of another structure (ranks 1)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
    b.load_state_dict(ck["model"])
    opt_b.load_state_dict(ck["opt"])
    assert b.layers[1].leaf_info() == a.layers[1].leaf_info()

    before = [p.detach().clone() for p in b.layers[1].factors]
    _steps(a, opt_a, 2, seed=10)
    _steps(b, opt_b, 2, seed=10)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0)  # the same trajectory, bit for bit
    for p, p0 in zip(b.layers[1].factors, before):
        assert not torch.equal(p, p0), "every factor trains, not only the bias"


def test_warm_start_into_a_larger_layer_trains_every_factor():
    """model -> optimizer -> model.load_state_dict (no optimizer state) with a checkpoint of fewer
    factor tensors: the reused Parameters are the optimizer's, so all of them train."""
    a = _net(16, 2, seed=1)  # 6 factor tensors per hidden layer
    b = _net(8, 2, seed=2)  # 16
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
    b.load_state_dict(a.state_dict())
    x = torch.rand(5, 2, dtype=D)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    in_opt = {id(p) for g in opt_b.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in b.parameters())
    before = [p.detach().clone() for p in b.layers[1].factors]
    _steps(b, opt_b, 1)
    assert all(not torch.equal(p, p0) for p, p0 in zip(b.layers[1].factors, before))


def test_more_factors_with_an_optimizer_is_refused_and_changes_nothing():
    a = _net(8, 2, seed=1)  # 16 factor tensors per hidden layer
    b = _net(16, 2, seed=2)  # 6
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2)
    snap = _snapshot(b.layers[1])
    with pytest.raises(RuntimeError, match="Load the model state first, then build the optimizer"):
        b.load_state_dict(a.state_dict())
    _same(b.layers[1], snap)
    del opt_b
    # the documented order for this case: load first, then build the optimizer
    b.load_state_dict(a.state_dict())
    x = torch.rand(5, 2, dtype=D)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


@pytest.mark.parametrize("corrupt, match", [
    (lambda sd: sd.pop("layers.1.factors.3"), "no value"),
    (lambda sd: sd.__setitem__("layers.1.factors.0", torch.zeros(3, 3, dtype=D)), "shape"),
    (lambda sd: sd["layers.1._extra_state"].__setitem__("shape", (16, 32)), "shape"),
    (lambda sd: sd["layers.1._extra_state"].__setitem__("geo", []), "malformed"),
    (lambda sd: sd["layers.1._extra_state"].__setitem__("row_perm", [0] * 32), "permutation"),
    (lambda sd: sd["layers.1._extra_state"].pop("tree"), "malformed"),
])
def test_failed_load_leaves_the_layer_unchanged(corrupt, match):
    a = _net(8, 3, seed=1)
    sd = {k: (dict(v) if isinstance(v, dict) else v) for k, v in a.state_dict().items()}
    corrupt(sd)
    b = _net(16, 1, seed=2)
    snap = _snapshot(b.layers[1])
    with pytest.raises(RuntimeError, match=match):
        b.load_state_dict(sd)
    _same(b.layers[1], snap)
