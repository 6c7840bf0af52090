"""Splitters as objects: the built-ins' numpy rules equal the compiled builder, and a
user-written splitter gives a valid cluster tree and a correct H-matrix."""

import numpy as np
import pytest

import hmat


class Wrapped:
    """A user-side object (not a built-in) that delegates to a rule: runs the Python builder."""

    def __init__(self, rule):
        self.rule = rule

    def split(self, points):
        return self.rule.split(points)


def node_sets(tree):
    return [frozenset(tree.perm[s:e].tolist()) for s, e in zip(tree.start, tree.stop)]


def check_valid(tree, n, leaf_size):
    assert np.array_equal(np.sort(tree.perm), np.arange(n))
    assert tree.start[0] == 0 and tree.stop[0] == n
    for v in range(tree.nnodes):
        a, b = tree.left[v], tree.right[v]
        if a < 0:
            assert b < 0 and tree.stop[v] - tree.start[v] <= leaf_size
            continue
        assert tree.start[a] == tree.start[v] and tree.stop[a] == tree.start[b] and tree.stop[b] == tree.stop[v]
        assert tree.parent[a] == v == tree.parent[b] and tree.level[a] == tree.level[v] + 1
        assert tree.start[a] < tree.stop[a] and tree.start[b] < tree.stop[b]
        pts = tree.points[tree.perm[tree.start[v]:tree.stop[v]]]
        assert np.array_equal(tree.bbox_lo[v], pts.min(axis=0)) and np.array_equal(tree.bbox_hi[v], pts.max(axis=0))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,cls", [("bbox", hmat.BBoxSplit), ("cardinality", hmat.CardinalitySplit)])
def test_builtin_rule_in_python_equals_compiled(name, cls, d, seed):
    pts = np.random.default_rng(seed).standard_normal((700, d)) * [1.0, 3.0, 0.5][:d]
    compiled = hmat.ClusterTree(pts, leaf_size=16, split=name)
    assert hmat.ClusterTree(pts, leaf_size=16, split=cls()).split == name
    python = hmat.ClusterTree(pts, leaf_size=16, split=Wrapped(cls()))
    check_valid(python, 700, 16)
    assert np.array_equal(python.start, compiled.start) and np.array_equal(python.stop, compiled.stop)
    assert np.array_equal(python.left, compiled.left) and np.array_equal(python.level, compiled.level)
    assert node_sets(python) == node_sets(compiled)


@pytest.mark.parametrize("seed", [0, 1])
def test_pca_rule_in_python_equals_compiled_up_to_child_order(seed):
    # the principal axis has no sign: the two children may be swapped, nothing else
    pts = np.random.default_rng(seed).standard_normal((600, 3)) @ np.array([[3.0, 1, 0], [0, 1, 0], [0, 0, 0.2]])
    compiled = hmat.ClusterTree(pts, leaf_size=16, split="pca")
    python = hmat.ClusterTree(pts, leaf_size=16, split=Wrapped(hmat.PCASplit()))
    check_valid(python, 600, 16)

    def children(tree, v):
        if tree.left[v] < 0:
            return frozenset(tree.perm[tree.start[v]:tree.stop[v]].tolist())
        return frozenset([children(tree, tree.left[v]), children(tree, tree.right[v])])

    assert children(python, 0) == children(compiled, 0)


def test_user_splitter_tree_and_operator():
    class ByAngle:  # split at the median azimuth: not one of the built-in rules
        calls = 0

        def split(self, points):
            ByAngle.calls += 1
            phi = np.arctan2(points[:, 1], points[:, 0])
            return phi < np.median(phi)

    pts = hmat.sphere_points(1500)
    tree = hmat.ClusterTree(pts, leaf_size=32, split=ByAngle())
    check_valid(tree, 1500, 32)
    assert ByAngle.calls == int((tree.left >= 0).sum()) > 0
    kernel = hmat.kernels.Laplace(3)
    H = hmat.from_kernel(kernel, pts, tol=1e-8, split=ByAngle(), leaf_size=32, n_samples=0)
    diff = pts[:, None, :] - pts[None, :, :]
    r = np.sqrt((diff ** 2).sum(-1))
    with np.errstate(divide="ignore"):
        K = np.where(r > 0, 1.0 / (4 * np.pi * r), 0.0)
    x = np.random.default_rng(0).random(1500)
    assert np.linalg.norm(H @ x - K @ x) <= 1e-6 * np.linalg.norm(K, 2) * np.linalg.norm(x)


def test_degenerate_user_mask_halves_the_node():
    class AllLeft:
        def split(self, points):
            return np.ones(points.shape[0], bool)

    tree = hmat.ClusterTree(np.random.default_rng(0).random((100, 2)), leaf_size=10, split=AllLeft())
    check_valid(tree, 100, 10)
    assert tree.stop[tree.left[0]] - tree.start[tree.left[0]] == 50


@pytest.mark.parametrize("bad,exc,match", [
    ("median", ValueError, "split"),
    (3, TypeError, "split"),
    (object(), TypeError, "split"),
])
def test_bad_splitter_is_refused(bad, exc, match):
    with pytest.raises(exc, match=match):
        hmat.ClusterTree(np.random.default_rng(0).random((50, 2)), leaf_size=8, split=bad)


@pytest.mark.parametrize("out", [lambda p: np.ones(p.shape[0] + 1, bool), lambda p: np.ones(p.shape[0])])
def test_bad_mask_is_refused(out):
    class Bad:
        def split(self, points):
            return out(points)

    with pytest.raises(ValueError, match="bool mask"):
        hmat.ClusterTree(np.random.default_rng(0).random((50, 2)), leaf_size=8, split=Bad())
