"""Cluster trees: a permutation of point indices plus a binary tree of contiguous ranges."""

from __future__ import annotations

import numpy as np

from ._cluster_numba import SPLIT_BBOX, SPLIT_CARDINALITY, SPLIT_PCA, build_cluster_tree
from ._norms import fro
from ._validate import check_choice, check_finite_array, check_positive

__all__ = ["ClusterTree", "ClusterNode", "BBoxSplit", "PCASplit", "CardinalitySplit"]


class _BuiltinSplit:
    """A built-in splitter: the compiled tree builder runs it (``code``); ``split`` is the
    same rule in numpy, for reading and for tests."""

    __slots__ = ()
    name = code = None

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


def _longest_axis(points):
    """``(axis, lo, hi)``: the longest side of the bounding box of ``points`` (k, d)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return int(np.argmax(0.5 * hi - 0.5 * lo)), lo, hi  # half widths: no overflow


class BBoxSplit(_BuiltinSplit):
    """Halve the longest side of the node's bounding box (geometric; ``split="bbox"``)."""

    name, code = "bbox", SPLIT_BBOX

    def split(self, points):
        """``points``: (k, d) float64 of one node -> bool mask (k,), True = left child."""
        a, lo, hi = _longest_axis(points)
        return points[:, a] < 0.5 * lo[a] + 0.5 * hi[a]


class CardinalitySplit(_BuiltinSplit):
    """Split at the median along the longest side (balanced tree; ``split="cardinality"``)."""

    name, code = "cardinality", SPLIT_CARDINALITY

    def split(self, points):
        """``points``: (k, d) float64 of one node -> bool mask (k,), True = left child."""
        a = _longest_axis(points)[0]
        mask = np.zeros(points.shape[0], bool)
        mask[np.argsort(points[:, a], kind="stable")[: points.shape[0] // 2]] = True
        return mask


class PCASplit(_BuiltinSplit):
    """Split at the mean along the principal axis (``split="pca"``)."""

    name, code = "pca", SPLIT_PCA

    def split(self, points):
        """``points``: (k, d) float64 of one node -> bool mask (k,), True = left child."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        c, sc = 0.5 * lo + 0.5 * hi, float(np.max(0.5 * hi - 0.5 * lo)) or 1.0
        z = (points - c) / sc
        z -= z.mean(axis=0)
        axis = np.linalg.eigh(z.T @ z)[1][:, -1]
        return z @ axis < 0.0


_SPLITS = {"bbox": BBoxSplit(), "pca": PCASplit(), "cardinality": CardinalitySplit()}


def _splitter(split):
    """A string or a splitter object -> the splitter (TypeError/ValueError naming ``split``)."""
    if isinstance(split, str):
        check_choice(split, "split", _SPLITS)
        return _SPLITS[split]
    if not callable(getattr(split, "split", None)):
        raise TypeError(f"split must be 'bbox', 'pca', 'cardinality' or an object with a method "
                        f"split(points) -> bool mask, got {type(split).__name__}")
    return split


def _build_python(points, leaf_size, splitter):
    """The cluster tree of a user splitter, in the compiled builder's node order (breadth-first)."""
    n, d = points.shape
    perm = np.arange(n, dtype=np.int64)
    start, stop, left, right, parent, level, lo, hi = [0], [n], [-1], [-1], [-1], [0], [], []
    head = 0
    while head < len(start):
        node, head = head, head + 1
        s, e = start[node], stop[node]
        idx = perm[s:e]
        lo.append(points[idx].min(axis=0) if e > s else np.zeros(d))
        hi.append(points[idx].max(axis=0) if e > s else np.zeros(d))
        if e - s <= leaf_size:
            continue
        mask = np.asarray(splitter.split(points[idx].copy()))
        if mask.shape != (e - s,) or mask.dtype != bool:
            raise ValueError(f"split.split(points) must return a bool mask of shape ({e - s},), "
                             f"got {mask.dtype} {mask.shape}")
        k = int(mask.sum())
        if k == 0 or k == e - s:  # degenerate split: halve the range, as the compiled builder does
            mask = np.arange(e - s) < (e - s) // 2
            k = int(mask.sum())
        perm[s:e] = np.concatenate([idx[mask], idx[~mask]])
        for a, b in ((s, s + k), (s + k, e)):
            start.append(a)
            stop.append(b)
            left.append(-1)
            right.append(-1)
            parent.append(node)
            level.append(level[node] + 1)
        left[node], right[node] = len(start) - 2, len(start) - 1
    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return (perm, i64(start), i64(stop), i64(left), i64(right), i64(parent), i64(level),
            np.asarray(lo, np.float64).reshape(-1, d), np.asarray(hi, np.float64).reshape(-1, d))


class ClusterNode:
    """A light view of one node of a :class:`ClusterTree`.

    Attributes
    ----------
    tree : ClusterTree
    id : int
        Node number (breadth-first order; the root is 0).
    """

    __slots__ = ("tree", "id")

    def __init__(self, tree, id):
        self.tree = tree
        self.id = int(id)

    @property
    def start(self) -> int:
        """First permuted position owned by this node."""
        return int(self.tree.start[self.id])

    @property
    def stop(self) -> int:
        """One past the last permuted position owned by this node."""
        return int(self.tree.stop[self.id])

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def level(self) -> int:
        return int(self.tree.level[self.id])

    @property
    def is_leaf(self) -> bool:
        return bool(self.tree.left[self.id] < 0)

    @property
    def children(self):
        """The two children, or an empty tuple for a leaf."""
        t = self.tree
        if t.left[self.id] < 0:
            return ()
        return (ClusterNode(t, t.left[self.id]), ClusterNode(t, t.right[self.id]))

    @property
    def indices(self):
        """Original point indices of this node, int64 array of length :attr:`size`."""
        return self.tree.perm[self.start:self.stop]

    @property
    def bbox(self):
        """Bounding box ``(lo, hi)``, two float64 arrays of length d."""
        return self.tree.bbox_lo[self.id], self.tree.bbox_hi[self.id]

    @property
    def diameter(self) -> float:
        """Euclidean diameter of the bounding box."""
        lo, hi = self.bbox
        return 2.0 * fro(0.5 * hi - 0.5 * lo)  # scale-safe

    def distance(self, other) -> float:
        """Euclidean distance between the bounding boxes of two nodes (0 if they overlap)."""
        lo1, hi1 = self.bbox
        lo2, hi2 = other.bbox
        gap = np.maximum(0.0, np.maximum(0.5 * lo1 - 0.5 * hi2, 0.5 * lo2 - 0.5 * hi1))
        return 2.0 * fro(gap)  # scale-safe

    def __eq__(self, other):
        return isinstance(other, ClusterNode) and other.tree is self.tree and other.id == self.id

    def __hash__(self):
        return hash((id(self.tree), self.id))

    def __repr__(self):
        return f"<ClusterNode {self.id} [{self.start}:{self.stop}) level={self.level}>"


class ClusterTree:
    """Binary cluster tree over points in any dimension.

    Parameters
    ----------
    points : array_like, shape (n, d)
        Point coordinates (float64 after conversion; a 1-D array is read as d = 1).
    leaf_size : int, default 64
        Nodes with at most this many points are leaves.
    split : {"bbox", "pca", "cardinality"} or splitter object
        ``"bbox"`` (:class:`BBoxSplit`) halves the longest side of the bounding box (geometric);
        ``"pca"`` (:class:`PCASplit`) splits at the mean along the principal axis;
        ``"cardinality"`` (:class:`CardinalitySplit`) splits at the median along the longest
        side (balanced tree). The built-ins run in compiled code. Any object with a method
        ``split(points) -> mask`` (``points``: the node's coordinates, shape (k, d) float64;
        ``mask``: bool, shape (k,), True for the first child) is called once per node
        that is split; a mask that puts every point on one side halves the node instead.

    Attributes
    ----------
    points : ndarray, shape (n, d), float64
    perm : ndarray, shape (n,), int64
        ``perm[p]`` is the original index of the point at permuted position ``p``.
    iperm : ndarray, shape (n,), int64
        Inverse permutation.
    start, stop, left, right, parent, level : ndarray, shape (nnodes,), int64
        Flat node arrays (children -1 for leaves).
    bbox_lo, bbox_hi : ndarray, shape (nnodes, d), float64
    """

    def __init__(self, points, leaf_size=64, split="bbox"):
        if np.iscomplexobj(points):
            raise TypeError("points must be real coordinates, got a complex array")
        pts = check_finite_array(points, "points", dtype=np.float64)
        if pts.ndim == 1:
            pts = pts[:, None]
        if pts.ndim != 2:
            raise ValueError(f"points must have shape (n, d), got {pts.shape}")
        if pts.shape[1] == 0:
            raise ValueError("points must have at least one coordinate (d >= 1)")
        leaf_size = check_positive(leaf_size, "leaf_size", integer=True)
        splitter = _splitter(split)
        pts = np.ascontiguousarray(pts)
        if isinstance(splitter, _BuiltinSplit):
            out = build_cluster_tree(pts, leaf_size, splitter.code)
            split = splitter.name
        else:
            out = _build_python(pts, leaf_size, splitter)
        self._set(pts, leaf_size, split, *out)

    def _set(self, pts, leaf_size, split, perm, start, stop, left, right, parent, level, lo, hi):
        self.points = pts
        self.leaf_size = leaf_size
        self.split = split
        self.perm = perm
        self.iperm = np.empty_like(perm)
        self.iperm[perm] = np.arange(perm.size, dtype=np.int64)
        self.start, self.stop = start, stop
        self.left, self.right, self.parent, self.level = left, right, parent, level
        self.bbox_lo, self.bbox_hi = lo, hi

    @classmethod
    def from_size(cls, n, leaf_size=64):
        """A tree over indices ``0..n-1`` with no geometry (identity permutation, halving).

        Parameters
        ----------
        n : int
            Number of indices, >= 1.
        leaf_size : int
        """
        n = check_positive(n, "n", integer=True)
        return cls(np.arange(n, dtype=np.float64)[:, None], leaf_size=leaf_size, split="cardinality")

    @classmethod
    def _from_arrays(cls, points, leaf_size, split, perm, start, stop, left, right, parent, level, lo, hi):
        self = cls.__new__(cls)
        self._set(points, leaf_size, split, perm, start, stop, left, right, parent, level, lo, hi)
        return self

    # ------------------------------------------------------------------ queries
    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.perm.size)

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def nnodes(self) -> int:
        return int(self.start.size)

    @property
    def depth(self) -> int:
        """Largest node level (the root has level 0)."""
        return int(self.level.max())

    @property
    def root(self) -> ClusterNode:
        return ClusterNode(self, 0)

    def node(self, i) -> ClusterNode:
        return ClusterNode(self, i)

    def leaves(self):
        """All leaf nodes, in order of their ranges."""
        ids = np.flatnonzero(self.left < 0)
        ids = ids[np.argsort(self.start[ids], kind="stable")]
        return [ClusterNode(self, i) for i in ids]

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"<ClusterTree n={self.n} d={self.dim} nodes={self.nnodes} depth={self.depth} split={self.split!r}>"
