"""Partition: the one block structure (laws of tiling, tree, order; constructors; HBlock)."""

import dataclasses

import numpy as np
import pytest

import hmat
from hmat import BuildInfo, LeafKind, Partition

from .conftest import random_array


def _cover_count(p):
    """How often each permuted entry is covered by a leaf (must be 1 everywhere)."""
    cnt = np.zeros(p.shape, np.int64)
    for r0, m, c0, n, _ in p.leaves():
        cnt[r0:r0 + m, c0:c0 + n] += 1
    return cnt


def _dfs_leaves(p):
    """Leaf node ids by an independent recursive depth-first, row-major walk of the tree."""
    out = []

    def walk(b):
        if p.node_kind[b] != LeafKind.INTERNAL:
            out.append(b)
            return
        f, a, c = p.node_first[b], p.node_nr[b], p.node_nc[b]
        for k in range(a * c):
            walk(f + k)

    walk(0)
    return np.array(out)


def _check_laws(p):
    assert (_cover_count(p) == 1).all()
    assert np.array_equal(p.leaf_nodes, _dfs_leaves(p))
    ln = p.leaf_nodes
    assert np.array_equal(p.node_row_start[ln], p.r0) and np.array_equal(p.node_row_stop[ln], p.r0 + p.m)
    assert np.array_equal(p.node_col_start[ln], p.c0) and np.array_equal(p.node_col_stop[ln], p.c0 + p.n)
    assert np.array_equal(p.node_kind[ln], p.kind)
    assert np.array_equal(np.sort(p.row_perm), np.arange(p.shape[0]))
    assert np.array_equal(np.sort(p.col_perm), np.arange(p.shape[1]))


@pytest.mark.parametrize("n_rows,n_cols,leaf_size", [(100, 100, 16), (37, 91, 8), (1, 5, 1), (64, 64, 64), (300, 7, 4)])
def test_hodlr(n_rows, n_cols, leaf_size):
    p = Partition.hodlr(n_rows, n_cols, leaf_size)
    _check_laws(p)
    assert not any(p.permuted)
    for r0, m, c0, n, kind in p.leaves():
        if kind == LeafKind.DENSE:  # the diagonal blocks that are no longer halved
            assert min(m, n) <= leaf_size
    internal = p.node_kind == LeafKind.INTERNAL
    assert (p.node_nr[internal] == 2).all() and (p.node_nc[internal] == 2).all()
    # the tree derived from the leaf order alone is the same partition
    assert Partition(p.shape, p.r0, p.m, p.c0, p.n, p.kind) == p


def test_hodlr_off_diagonal_blocks_are_lowrank():
    p = Partition.hodlr(64, 64, 8)
    for r0, m, c0, n, kind in p.leaves():
        diagonal = r0 == c0 and m == n
        assert kind == (LeafKind.DENSE if diagonal else LeafKind.LOWRANK)


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_from_blocktree(eta):
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 2)), rng.random((200, 2))
    bt = hmat.BlockTree(hmat.ClusterTree(x, leaf_size=16), hmat.ClusterTree(y, leaf_size=16),
                        hmat.StrongAdmissibility(eta))
    p = bt.partition()
    assert p is bt.partition()
    _check_laws(p)
    r0, m, c0, n, adm = bt.leaf_arrays()
    assert np.array_equal(p.r0, r0) and np.array_equal(p.m, m) and np.array_equal(p.c0, c0) and np.array_equal(p.n, n)
    assert np.array_equal(p.kind == LeafKind.LOWRANK, adm)
    assert np.array_equal(p.row_perm, bt.row_tree.perm) and np.array_equal(p.col_perm, bt.col_tree.perm)
    assert np.array_equal(p.node_kind, bt.kind) and np.array_equal(p.leaf_nodes, bt.leaf_ids)
    tree = (p.node_kind, p.node_first, p.node_nr, p.node_nc)
    assert Partition(p.shape, p.r0, p.m, p.c0, p.n, p.kind, p.row_perm, p.col_perm, tree=tree) == p
    q = Partition(p.shape, p.r0, p.m, p.c0, p.n, p.kind, p.row_perm, p.col_perm)  # derived tree
    _check_laws(q)
    assert list(q.leaves()) == list(p.leaves())


def test_immutable():
    p = Partition.hodlr(20, 20, 4)
    with pytest.raises(AttributeError):
        p.shape = (1, 1)
    with pytest.raises(AttributeError):
        p.foo = 1
    for name in ("r0", "m", "c0", "n", "kind", "row_perm", "col_perm", "node_kind", "node_first", "leaf_nodes"):
        with pytest.raises(ValueError):
            getattr(p, name)[0] = 5
    r0 = p.r0.copy()
    q = Partition(p.shape, r0, p.m, p.c0, p.n, p.kind)
    r0[0] = 99  # the caller's array is copied
    assert q == p
    assert "Partition 20x20" in repr(p)


def test_transpose():
    rng = np.random.default_rng(1)
    p = hmat.BlockTree(hmat.ClusterTree(rng.random((120, 2)), leaf_size=8),
                       hmat.ClusterTree(rng.random((90, 2)), leaf_size=8)).partition()
    t, order = p.transpose()
    _check_laws(t)
    assert t.shape == (90, 120)
    assert np.array_equal(t.r0, p.c0[order]) and np.array_equal(t.m, p.n[order])
    assert np.array_equal(t.row_perm, p.col_perm) and np.array_equal(t.col_perm, p.row_perm)
    assert t.transpose()[0] == p


def _table(p):
    return dict(shape=p.shape, r0=p.r0, m=p.m, c0=p.c0, n=p.n, kind=p.kind)


@pytest.mark.parametrize("change,match", [
    (dict(shape=(16,)), "shape"),
    (dict(shape=(0, 16)), "shape"),
    (dict(m=np.array([8, 8])), "m has 2 entries"),
    (dict(kind=np.array([0, 1, 1, 2, 0, 1, 1, 0], np.int8)), "kind"),
    (dict(r0=np.array([0.0] * 8)), "r0 must be a 1-D integer array"),
    (dict(row_perm=np.array([0] * 16)), "row_perm is not a permutation"),
    (dict(col_perm=np.arange(15)), "col_perm must be an integer array of length 16"),
    (dict(tree=(np.array([0]),) * 4), "tree"),
    (dict(tree=(np.array([2, 0, 1, 1, 0]), np.array([1, -1, -1, -1, -1]), np.array([2, 0, 0, 0, 0]),
                np.array([3, 0, 0, 0, 0]))), "tree"),
])
def test_bad_input(change, match):
    p = Partition.hodlr(16, 16, 4)
    args = _table(p)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        Partition(**args)


def test_overlap_and_gap_refused():
    p = Partition.hodlr(16, 16, 4)
    args = _table(p)
    args["m"] = p.m.copy()
    args["m"][0] -= 1  # gap
    with pytest.raises(ValueError, match="r0, m, c0, n"):
        Partition(**args)
    args = _table(p)
    args["c0"] = p.c0.copy()
    args["c0"][1] -= 1  # overlap (and a gap at the end)
    with pytest.raises(ValueError, match="r0, m, c0, n"):
        Partition(**args)
    args = _table(p)
    order = np.arange(p.n_leaves)[::-1]  # not depth-first order
    with pytest.raises(ValueError, match="order"):
        Partition(p.shape, p.r0[order], p.m[order], p.c0[order], p.n[order], p.kind[order])
    with pytest.raises(ValueError, match="tree"):
        Partition(p.shape, p.r0[order], p.m[order], p.c0[order], p.n[order], p.kind[order],
                  tree=(p.node_kind, p.node_first, p.node_nr, p.node_nc))


def _leaf_ops(p, rng, dtype, rank=3):
    ops = []
    for _, m, _, n, kind in p.leaves():
        if kind == LeafKind.DENSE:
            ops.append(hmat.Dense(random_array(rng, (m, n), dtype)))
        else:
            k = min(rank, m, n)
            ops.append(hmat.LowRank(random_array(rng, (m, k), dtype), random_array(rng, (n, k), dtype)))
    return ops


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_hblock_from_partition(dtype):
    rng = np.random.default_rng(2)
    bt = hmat.BlockTree(hmat.ClusterTree(rng.random((150, 2)), leaf_size=10),
                        hmat.ClusterTree(rng.random((110, 2)), leaf_size=10))
    p = bt.partition()
    ops = _leaf_ops(p, rng, dtype)
    info = BuildInfo(tol=1e-3, kernel_evaluations=7, error_estimate=0.5, compressor="mine")
    H = hmat.HBlock.from_partition(p, ops, provenance=info)
    assert H.partition is p and H.provenance is info and H.tol == 1e-3 and H.error_estimate == 0.5
    assert H.stats()["kernel_evaluations"] == 7
    # reference: the leaf arrays placed in a permuted matrix, then un-permuted by indexing
    Ap = np.zeros(p.shape, np.complex128)
    for (r0, m, c0, n, _), op in zip(p.leaves(), ops):
        Ap[r0:r0 + m, c0:c0 + n] = op.U @ op.V.conj().T if isinstance(op, hmat.LowRank) else op.array
    A = np.empty_like(Ap)
    A[np.ix_(p.row_perm, p.col_perm)] = Ap
    x = random_array(rng, (110,), dtype)
    eps = 10 * np.finfo(dtype).eps * np.linalg.norm(A) * np.linalg.norm(x)
    assert np.linalg.norm(H @ x - A @ x) <= eps
    # the nested children built from the partition give back the same leaves and partition
    assert [(lf.row_start, lf.col_start) for lf in H.leaves()] == [(r, c) for r, _, c, _, _ in p.leaves()]
    nested = hmat.HBlock(H.blocks, H.row_perm, H.col_perm)
    q = nested.partition
    _check_laws(q)
    assert list(q.leaves()) == list(p.leaves())


def test_hblock_from_partition_bad_input():
    rng = np.random.default_rng(3)
    p = Partition.hodlr(20, 20, 5)
    ops = _leaf_ops(p, rng, np.float64)
    with pytest.raises(TypeError, match="partition"):
        hmat.HBlock.from_partition("p", ops)
    with pytest.raises(ValueError, match="leaf_ops has"):
        hmat.HBlock.from_partition(p, ops[:-1])
    bad = list(ops)
    bad[1] = hmat.Dense(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"leaf_ops\[1\]"):
        hmat.HBlock.from_partition(p, bad)
    bad = list(ops)
    first_dense = int(np.flatnonzero(p.kind == LeafKind.DENSE)[0])
    m, n = int(p.m[first_dense]), int(p.n[first_dense])
    bad[first_dense] = hmat.LowRank(np.ones((m, 1)), np.ones((n, 1)))
    with pytest.raises(TypeError, match="Dense"):
        hmat.HBlock.from_partition(p, bad)
    with pytest.raises(TypeError, match="provenance"):
        hmat.HBlock.from_partition(p, ops, provenance={"tol": 1})


def test_provenance_is_immutable_and_passed_on():
    rng = np.random.default_rng(4)
    pts = rng.random((400, 3))
    H = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-5, leaf_size=32)
    info = H.provenance
    assert info.tol == 1e-5 and info.kernel_evaluations > 0 and info.error_estimate is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.tol = 1.0
    with pytest.raises(AttributeError):
        H.tol = 1.0
    with pytest.raises(AttributeError):
        H.error_estimate = 1.0
    assert H.H.provenance == info and H.astype(np.float32).provenance == info
    T = H.truncate(1e-3)
    assert T.provenance.kernel_evaluations == info.kernel_evaluations and T.tol == 1e-3
    assert T.error_estimate is not None and T.error_estimate <= 1e-3
    with pytest.raises(ValueError, match="tol"):
        BuildInfo(tol=-1.0)
    with pytest.raises(ValueError, match="kernel_evaluations"):
        BuildInfo(kernel_evaluations=-2)
    with pytest.raises(ValueError, match="error_estimate"):
        BuildInfo(error_estimate=float("nan"))


def test_leaf_kind_codes():
    assert (int(LeafKind.DENSE), int(LeafKind.LOWRANK), int(LeafKind.INTERNAL)) == (0, 1, 2)
    bt = hmat.BlockTree(hmat.ClusterTree.from_size(64, 8), hmat.ClusterTree.from_size(64, 8), hmat.WeakAdmissibility())
    assert set(np.unique(bt.kind)) == {LeafKind.DENSE, LeafKind.LOWRANK, LeafKind.INTERNAL}


def test_nested_tree_argument():
    args = ((2, 3), [0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1], [1, 2, 1, 2], [0, 1, 1, 0])
    flat = Partition(*args, tree=[[0, 1], [2, 3]])
    assert flat.n_nodes == 5 and (flat.node_nr[0], flat.node_nc[0]) == (2, 2)
    rows = Partition(*args, tree=[[[[0, 1]]], [[[2, 3]]]])
    assert rows.n_nodes == 7 and (rows.node_nr[0], rows.node_nc[0]) == (2, 1)
    assert flat != rows and list(flat.leaves()) == list(rows.leaves())
    assert Partition(*args) == flat  # derived: stacked rows with equal cuts merge
    with pytest.raises(ValueError, match="tree"):
        Partition(*args, tree=[[0, 1], [2]])
    with pytest.raises(ValueError, match="tree"):
        Partition(*args, tree=[[0, 2], [1, 3]])
    with pytest.raises(ValueError, match="tree"):
        Partition(*args, tree=[[0, 1, 2, 3]])


def test_pickle_round_trip():
    import pickle

    rng = np.random.default_rng(7)
    p = hmat.BlockTree(hmat.ClusterTree(rng.random((80, 2)), leaf_size=8),
                       hmat.ClusterTree(rng.random((60, 2)), leaf_size=8)).partition()
    for q in (p, Partition.hodlr(30, 20, 4)):
        r = pickle.loads(pickle.dumps(q))
        assert r == q and r.permuted == q.permuted and r.r0.flags.writeable is False
