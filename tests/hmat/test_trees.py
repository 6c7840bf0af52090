"""Cluster-tree and block-tree invariants (hypothesis over point clouds)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import hmat
from hmat.blocktree import BlockTree

points_st = st.integers(1, 300).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda d: arrays(np.float64, (n, d), elements=st.floats(-10, 10, allow_nan=False, width=32))
    )
)


def check_tree(t, n, leaf_size):
    assert np.array_equal(np.sort(t.perm), np.arange(n)), "perm is a permutation"
    assert np.array_equal(t.perm[t.iperm], np.arange(n))
    for i in range(t.nnodes):
        node = t.node(i)
        kids = node.children
        if kids:
            a, b = kids
            assert a.start == node.start and a.stop == b.start and b.stop == node.stop, "children partition parent"
            assert a.size > 0 and b.size > 0
            assert a.level == b.level == node.level + 1
        else:
            assert node.size <= leaf_size, "leaves hold at most leaf_size points"
        lo, hi = node.bbox
        pts = t.points[node.indices]
        assert np.all(pts >= lo - 1e-12) and np.all(pts <= hi + 1e-12), "bbox contains its points"


@settings(max_examples=40, deadline=None)
@given(points_st, st.integers(1, 40), st.sampled_from(["bbox", "pca", "cardinality"]))
def test_cluster_tree_invariants(points, leaf_size, split):
    t = hmat.ClusterTree(points, leaf_size=leaf_size, split=split)
    check_tree(t, points.shape[0], leaf_size)


def test_cardinality_split_is_balanced():
    t = hmat.ClusterTree(np.random.default_rng(0).random((1000, 2)), leaf_size=10, split="cardinality")
    for i in range(t.nnodes):
        kids = t.node(i).children
        if kids:
            assert abs(kids[0].size - kids[1].size) <= 1


def test_from_size_is_identity_and_halving():
    t = hmat.ClusterTree.from_size(100, leaf_size=10)
    assert np.array_equal(t.perm, np.arange(100))
    check_tree(t, 100, 10)
    sizes = [lf.size for lf in t.leaves()]
    assert len(sizes) == 16 and min(sizes) >= 6 and max(sizes) <= 7, sizes
    assert [lf.start for lf in t.leaves()] == sorted(lf.start for lf in t.leaves())


def test_duplicate_points_terminate():
    t = hmat.ClusterTree(np.zeros((500, 3)), leaf_size=8)
    check_tree(t, 500, 8)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 250), st.integers(2, 250), st.floats(0.3, 4.0), st.integers(1, 3), st.integers(0, 1000))
def test_block_tree_partition_and_admissibility(m, n, eta, d, seed):
    rng = np.random.default_rng(seed)
    R = hmat.ClusterTree(rng.random((m, d)), leaf_size=8)
    C = hmat.ClusterTree(rng.random((n, d)) + 0.3, leaf_size=8)
    adm = hmat.StrongAdmissibility(eta)
    bt = BlockTree(R, C, adm)
    r0, mm, c0, nn, admissible = bt.leaf_arrays()
    cover = np.zeros((m, n), np.int64)
    for a, b, c, e in zip(r0, mm, c0, nn):
        cover[a:a + b, c:c + e] += 1
    assert (cover == 1).all(), "leaves partition the matrix"
    for lid, is_adm in zip(bt.leaf_ids, admissible):
        s, t = R.node(bt.rnode[lid]), C.node(bt.cnode[lid])
        if is_adm:
            assert adm(s, t), "every admissible leaf satisfies the condition"
            assert min(s.diameter, t.diameter) <= eta * s.distance(t) + 1e-12
        else:
            assert s.is_leaf and t.is_leaf, "inadmissible leaves are leaf x leaf"
    # the Python path (any callable) gives the same tree
    bt2 = BlockTree(R, C, lambda s, t: adm(s, t))
    assert np.array_equal(bt.kind, bt2.kind) and np.array_equal(bt.rnode, bt2.rnode)


def test_weak_admissibility_is_hodlr():
    t = hmat.ClusterTree.from_size(64, leaf_size=8)
    bt = BlockTree(t, t, hmat.WeakAdmissibility())
    r0, m, c0, n, adm = bt.leaf_arrays()
    for a, b, c, e, ad in zip(r0, m, c0, n, adm):
        if ad:
            assert (a, b) != (c, e), "diagonal blocks are never admissible"
        else:
            assert a == c and b == e, "only diagonal leaves are dense"
    bt2 = BlockTree(t, t, lambda s, u: hmat.WeakAdmissibility()(s, u))
    assert np.array_equal(bt.kind, bt2.kind)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(points=np.zeros((0, 2))), ValueError, "empty"),
        (dict(points=np.array([[0.0, np.nan]])), ValueError, "NaN"),
        (dict(points=np.zeros((4, 2)), leaf_size=0), ValueError, "leaf_size"),
        (dict(points=np.zeros((4, 2)), leaf_size=2.5), TypeError, "leaf_size"),
        (dict(points=np.zeros((4, 2)), split="kd"), ValueError, "split"),
        (dict(points=np.zeros((2, 2, 2))), ValueError, "points"),
    ],
)
def test_cluster_tree_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hmat.ClusterTree(**kwargs)


def test_admissibility_bad_input():
    with pytest.raises(ValueError, match="eta"):
        hmat.StrongAdmissibility(0)
    with pytest.raises(ValueError, match="eta"):
        hmat.StrongAdmissibility(-1.0)
    t = hmat.ClusterTree.from_size(10, 4)
    with pytest.raises(TypeError, match="admissibility"):
        BlockTree(t, t, admissibility=3)
