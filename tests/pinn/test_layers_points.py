"""HMatrixLinear(..., in_points=, out_points=): geometric structure, gradients still exact."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pinn
from pinn import HMatrixLinear


def test_points_give_geometric_structure_and_exact_gradients():
    x = np.linspace(0, 1, 96)[:, None]
    lay = pinn.HMatrixLinear(96, 96, in_points=x, out_points=x, leaf_size=8, rank=2, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    plain = pinn.HMatrixLinear(96, 96, leaf_size=8, rank=2, dtype=torch.float64)
    assert lay.num_leaves != plain.num_leaves  # strong admissibility, not HODLR
    kinds = {d["kind"] for d in lay.leaf_info()}
    assert kinds == {"dense", "lowrank"}
    inp = torch.randn(5, 96, dtype=torch.float64, requires_grad=True)
    lin = lay.to_linear()
    torch.testing.assert_close(lay(inp), lin(inp))
    assert torch.autograd.gradcheck(lambda v: lay(v), (inp,))


def test_points_must_come_together_and_match():
    x = np.linspace(0, 1, 16)[:, None]
    with pytest.raises(ValueError, match="together"):
        pinn.HMatrixLinear(16, 16, in_points=x)
    with pytest.raises(ValueError, match="out_points"):
        pinn.HMatrixLinear(16, 8, in_points=x, out_points=x)


@settings(max_examples=8, deadline=None)
@given(n_in=st.integers(8, 40), n_out=st.integers(8, 40), rank=st.integers(0, 3),
       seed=st.integers(0, 100))
def test_weight_is_the_operator_and_differentiates_like_the_forward(n_in, n_out, rank, seed):
    """Law: ``layer.weight`` is the matrix the layer applies (also w.r.t. the factors)."""
    g = torch.Generator().manual_seed(seed)
    xi = np.linspace(0, 1, n_in)[:, None]
    xo = np.linspace(0, 1, n_out)[:, None] ** 2
    lay = HMatrixLinear(n_in, n_out, leaf_size=4, rank=rank, dtype=torch.float64, generator=g,
                        in_points=xi, out_points=xo, eta=1.0)
    W = lay.weight
    np.testing.assert_allclose(W.detach().numpy(), lay.operator().to_dense(), rtol=0, atol=1e-14)
    C = torch.randn(n_out, n_in, dtype=torch.float64, generator=g)
    params = list(lay.factors)
    g1 = torch.autograd.grad((C * W).sum(), params, allow_unused=True)
    y = lay(torch.eye(n_in, dtype=torch.float64)) - (0 if lay.bias is None else lay.bias)  # = W^T
    g2 = torch.autograd.grad((C.t() * y).sum(), params, allow_unused=True)
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert (a is None or not a.abs().sum()) and (b is None or not b.abs().sum())
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
