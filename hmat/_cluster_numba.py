"""Compiled cluster-tree construction (private).

Nodes are produced in breadth-first order, so ids grow with the level. Each node owns the
contiguous range ``perm[start:stop]`` of the permutation.
"""

import numpy as np
from numba import njit

SPLIT_BBOX = 0
SPLIT_PCA = 1
SPLIT_CARDINALITY = 2


@njit(cache=True, nogil=True)
def _bbox(points, perm, s, e, lo, hi):
    d = points.shape[1]
    for k in range(d):
        lo[k] = np.inf
        hi[k] = -np.inf
    for p in range(s, e):
        i = perm[p]
        for k in range(d):
            v = points[i, k]
            if v < lo[k]:
                lo[k] = v
            if v > hi[k]:
                hi[k] = v


@njit(cache=True, nogil=True)
def _partition(values, perm, s, e, thresh):
    """Move entries with value < thresh to the front of perm[s:e]; return the split point."""
    i = s
    j = e - 1
    while i <= j:
        if values[i - s] < thresh:
            i += 1
        else:
            values[i - s], values[j - s] = values[j - s], values[i - s]
            perm[i], perm[j] = perm[j], perm[i]
            j -= 1
    return i


@njit(cache=True, nogil=True)
def _median_split(values, perm, s, e):
    order = np.argsort(values, kind="mergesort")
    tmp = perm[s:e].copy()
    for q in range(e - s):
        perm[s + q] = tmp[order[q]]
    return s + (e - s) // 2


@njit(cache=True, nogil=True)
def build_cluster_tree(points, leaf_size, split):
    """Return (perm, start, stop, left, right, parent, level, lo, hi, nnodes)."""
    n, d = points.shape
    cap = max(2 * n, 1)
    perm = np.arange(n).astype(np.int64)
    start = np.empty(cap, np.int64)
    stop = np.empty(cap, np.int64)
    left = np.empty(cap, np.int64)
    right = np.empty(cap, np.int64)
    parent = np.empty(cap, np.int64)
    left[:] = -1
    right[:] = -1
    parent[:] = -1
    level = np.zeros(cap, np.int64)
    lo = np.empty((cap, d))
    hi = np.empty((cap, d))
    start[0] = 0
    stop[0] = n
    nnodes = 1
    head = 0
    while head < nnodes:
        node = head
        head += 1
        s = start[node]
        e = stop[node]
        _bbox(points, perm, s, e, lo[node], hi[node])
        if e - s <= leaf_size:
            continue
        m = e - s
        values = np.empty(m)
        if split == SPLIT_PCA:
            # centred and scaled coordinates z = (x - c) / sc (c, sc from the bounding box,
            # computed without overflow), so sums of products stay finite at any scale
            c = np.empty(d)
            sc = 0.0
            for k in range(d):
                c[k] = 0.5 * lo[node, k] + 0.5 * hi[node, k]
                sc = max(sc, 0.5 * hi[node, k] - 0.5 * lo[node, k])
            if sc <= 0.0:
                sc = 1.0
            mean = np.zeros(d)
            for p in range(s, e):
                for k in range(d):
                    mean[k] += (points[perm[p], k] - c[k]) / sc
            mean /= m
            cov = np.zeros((d, d))
            for p in range(s, e):
                for a in range(d):
                    da = (points[perm[p], a] - c[a]) / sc - mean[a]
                    for b in range(d):
                        cov[a, b] += da * ((points[perm[p], b] - c[b]) / sc - mean[b])
            w, vecs = np.linalg.eigh(cov)
            axis = vecs[:, d - 1]
            for p in range(s, e):
                acc = 0.0
                for k in range(d):
                    acc += ((points[perm[p], k] - c[k]) / sc - mean[k]) * axis[k]
                values[p - s] = acc
            mid = _partition(values, perm, s, e, 0.0)
        else:
            axis_k = 0
            width = -1.0
            for k in range(d):
                wk = 0.5 * hi[node, k] - 0.5 * lo[node, k]  # half width: no overflow
                if wk > width:
                    width = wk
                    axis_k = k
            for p in range(s, e):
                values[p - s] = points[perm[p], axis_k]
            if split == SPLIT_CARDINALITY or width <= 0.0:
                mid = _median_split(values, perm, s, e)
            else:
                mid = _partition(values, perm, s, e, 0.5 * lo[node, axis_k] + 0.5 * hi[node, axis_k])
        if mid <= s or mid >= e:
            # degenerate split (all values equal on the chosen axis): halve the range
            mid = s + (e - s) // 2
        for c in range(2):
            child = nnodes
            nnodes += 1
            start[child] = s if c == 0 else mid
            stop[child] = mid if c == 0 else e
            parent[child] = node
            level[child] = level[node] + 1
            if c == 0:
                left[node] = child
            else:
                right[node] = child
    return perm, start[:nnodes], stop[:nnodes], left[:nnodes], right[:nnodes], parent[:nnodes], level[:nnodes], lo[:nnodes], hi[:nnodes]
