"""HMatrixLinear(..., in_points=, out_points=): geometric structure, gradients still exact."""

import numpy as np
import pytest
import torch

import pinn


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
