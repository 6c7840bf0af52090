"""HMatrixLinear on hmat.Partition (issue 12): constructors, restructure, derived structures."""
import numpy as np
import pytest
import torch

import hmat
from hmat import LeafKind, Partition
from pinn import HMatrixLinear
from pinn.autograd import Structure
from pinn.geometric import geometric_hmatrix_linear
from pinn.layers import partition_from_grid

D = torch.float64


def _dense_of(layer):
    return layer.weight.detach().numpy()


def test_layer_partition_is_hmats_hodlr():
    L = HMatrixLinear(20, 24, leaf_size=4, rank=2, dtype=D, generator=torch.Generator().manual_seed(0))
    assert L.partition == Partition.hodlr(24, 20, 4)
    assert L.num_leaves == L.partition.n_leaves
    # the HODLR constructor and the plain one give the same layer for the same generator
    H = HMatrixLinear.hodlr(20, 24, leaf_size=4, rank=2, dtype=D, generator=torch.Generator().manual_seed(0))
    assert H.partition == L.partition
    assert all(torch.equal(a, b) for a, b in zip(H.factors, L.factors))
    # the operator is an HBlock over the same partition and the same matrix
    op = L.operator()
    assert op.partition == L.partition
    W = _dense_of(L)
    assert np.linalg.norm(op.to_dense() - W) <= 1e-14 * np.linalg.norm(W)


def test_structure_is_derived_from_the_partition():
    x = np.random.default_rng(0).random((40, 2))
    L = HMatrixLinear.geometric(x, x[::-1].copy(), leaf_size=6, eta=1.0, rank=2, dtype=D,
                                generator=torch.Generator().manual_seed(1))
    P = L.partition
    assert P.permuted == (True, True)
    st = L.structure
    assert isinstance(st, Structure) and st.shape == P.shape
    assert [(lf.r0, lf.m, lf.c0, lf.n) for lf in st.leaves] == [lv[:4] for lv in P.leaves()]
    assert [lf.kind for lf in st.leaves] == list(P.kind)
    assert torch.equal(st.row_perm, torch.tensor(P.row_perm)) and torch.equal(st.col_perm, torch.tensor(P.col_perm))
    # .geometric is geometric_hmatrix_linear
    G = geometric_hmatrix_linear(x, x[::-1].copy(), leaf_size=6, eta=1.0, rank=2, dtype=D,
                                 generator=torch.Generator().manual_seed(1))
    assert G.partition == P and all(torch.equal(a, b) for a, b in zip(G.factors, L.factors))


def test_from_partition_and_restructure_roundtrip():
    g = torch.Generator().manual_seed(2)
    L = HMatrixLinear(16, 12, leaf_size=3, rank=2, dtype=D, generator=g)
    x = torch.rand(5, 16, dtype=D, generator=g)
    y = L(x).detach()
    M = HMatrixLinear.from_partition(L.partition, [L.leaf_factors(i) for i in range(L.num_leaves)],
                                     bias=L.bias.detach())
    assert torch.equal(M(x), y)
    assert all(p is not q for p, q in zip(M.factors, L.factors))  # copies
    # restructure to one dense leaf: the same function, new Parameters, bias kept
    one = Partition((12, 16), [0], [12], [0], [16], [LeafKind.DENSE])
    W = L.weight.detach().clone()
    new = M.restructure(one, [(W,)])
    assert M.partition is one and M.num_leaves == 1 and list(M.factors) == new
    torch.testing.assert_close(M(x), y, rtol=1e-13, atol=1e-13 * float(y.abs().max()))
    # a Parameter passed in is kept as the very object
    p = torch.nn.Parameter(W.clone())
    assert M.restructure(one, [(p,)])[0] is p


def test_restructure_bad_input_leaves_the_layer_unchanged():
    L = HMatrixLinear(8, 6, leaf_size=2, rank=1, dtype=D)
    before = (L.partition, list(L.factors))
    one = Partition((6, 8), [0], [6], [0], [8], [LeafKind.LOWRANK])
    with pytest.raises(TypeError, match="partition"):
        L.restructure("hodlr", [])
    with pytest.raises(ValueError, match="shape"):
        L.restructure(Partition.hodlr(8, 6, 2), [])
    with pytest.raises(ValueError, match="factors has 0 entries"):
        L.restructure(one, [])
    with pytest.raises(ValueError, match=r"factors\[0\]"):
        L.restructure(one, [(torch.zeros(6, 2), torch.zeros(8, 3))])
    with pytest.raises(ValueError, match=r"factors\[0\]"):
        L.restructure(one, [(torch.zeros(6, 8),)])
    assert L.partition is before[0] and list(L.factors) == before[1]


def test_from_hblock_takes_the_kind_of_each_leafs_operator():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((32, 32))  # incompressible: admissible leaves stay dense
    H = hmat.from_dense(W, tol=1e-8, leaf_size=8)
    L = HMatrixLinear.from_hblock(H, dtype=D)
    ops = [lf.op for lf in H.leaves()]
    assert [k for k in L.partition.kind] == [LeafKind.LOWRANK if isinstance(o, hmat.LowRank) else LeafKind.DENSE
                                             for o in ops]
    assert not np.array_equal(L.partition.kind, H.partition.kind)  # admissible leaves held dense
    assert L.partition.leaf_nodes.tolist() == H.partition.leaf_nodes.tolist()
    assert np.linalg.norm(_dense_of(L) - H.to_dense()) <= 1e-13 * np.linalg.norm(W)


def test_partition_from_grid():
    leaves = [(0, 2, 0, 2, LeafKind.DENSE), (0, 2, 2, 3, LeafKind.LOWRANK),
              (2, 3, 0, 2, LeafKind.LOWRANK), (2, 3, 2, 3, LeafKind.DENSE)]
    P = partition_from_grid((5, 5), [[0, 1], [2, 3]], leaves)
    assert P.n_leaves == 4 and P.children(0) == ((1, 2), (3, 4))
    assert [lv[:4] for lv in P.leaves()] == [lv[:4] for lv in leaves]
    with pytest.raises(ValueError, match="depth-first"):
        partition_from_grid((5, 5), [[1, 0], [2, 3]], leaves)
    with pytest.raises(ValueError, match="depth-first"):
        partition_from_grid((5, 5), [[0, 1], [2, 7]], leaves)
    with pytest.raises(ValueError, match="tree"):
        partition_from_grid((5, 5), [[0, 1], [2]], leaves)
    one = partition_from_grid((5, 5), 0, [(0, 5, 0, 5, LeafKind.DENSE)])
    assert one.n_leaves == 1 and one.n_nodes == 1


def test_lowrank_layer_structure_from_its_one_leaf_partition():
    from pinn import LowRankLinear

    L = LowRankLinear(7, 5, 2, dtype=D)
    P = L.partition
    assert P.shape == (5, 7) and P.n_leaves == 1 and P.kind.tolist() == [LeafKind.LOWRANK]
    st = L.structure
    assert [(lf.kind, lf.r0, lf.c0, lf.m, lf.n, lf.idx) for lf in st.leaves] == [(LeafKind.LOWRANK, 0, 0, 5, 7, (0, 1))]
    x = torch.rand(3, 7, dtype=D)
    torch.testing.assert_close(L(x), x @ L.weight.t() + L.bias, rtol=1e-14, atol=1e-14)


def test_leafspec_kind_is_the_leafkind():
    from pinn.autograd import LeafSpec

    assert LeafSpec("dense", 0, 0, 2, 2, (0,)).kind is LeafKind.DENSE
    assert LeafSpec(LeafKind.LOWRANK, 0, 0, 2, 2, (0, 1)).adjoint().kind is LeafKind.LOWRANK
    with pytest.raises(ValueError, match="kind"):
        LeafSpec(LeafKind.INTERNAL, 0, 0, 2, 2, (0,))
    with pytest.raises(ValueError, match="kind"):
        LeafSpec("hier", 0, 0, 2, 2, (0,))
