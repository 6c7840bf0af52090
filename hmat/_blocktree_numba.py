"""Compiled block-tree construction for the built-in admissibility conditions (private)."""

import math

import numpy as np
from numba import njit

from .partition import LeafKind

# the LeafKind codes as plain ints (compile-time constants of the compiled code)
KIND_DENSE = int(LeafKind.DENSE)
KIND_LOWRANK = int(LeafKind.LOWRANK)
KIND_INTERNAL = int(LeafKind.INTERNAL)


@njit(cache=True, nogil=True)
def _admissible(mode, eta, s, t, rlo, rhi, clo, chi, rstart, rstop, cstart, cstop, m, n):
    if mode == 0:
        return rstop[s] * n <= cstart[t] * m or cstop[t] * m <= rstart[s] * n
    # half gaps and half widths (no overflow), scaled by their largest value (no overflow
    # or underflow of the squares): the test is invariant under this common scaling
    big = 0.0
    for k in range(rlo.shape[1]):
        g = max(0.0, max(0.5 * rlo[s, k] - 0.5 * chi[t, k], 0.5 * clo[t, k] - 0.5 * rhi[s, k]))
        big = max(big, g, 0.5 * rhi[s, k] - 0.5 * rlo[s, k], 0.5 * chi[t, k] - 0.5 * clo[t, k])
    if big == 0.0:
        return False
    d2 = 0.0
    ds = 0.0
    dt = 0.0
    for k in range(rlo.shape[1]):
        g = max(0.0, max(0.5 * rlo[s, k] - 0.5 * chi[t, k], 0.5 * clo[t, k] - 0.5 * rhi[s, k])) / big
        d2 += g * g
        ds += ((0.5 * rhi[s, k] - 0.5 * rlo[s, k]) / big) ** 2
        dt += ((0.5 * chi[t, k] - 0.5 * clo[t, k]) / big) ** 2
    dist = math.sqrt(d2)
    return dist > 0.0 and math.sqrt(min(ds, dt)) <= eta * dist


@njit(cache=True, nogil=True)
def build_block_tree(rl, rr, rlo, rhi, rstart, rstop, cl, cr, clo, chi, cstart, cstop, mode, eta):
    """Breadth-first block tree. Returns (rnode, cnode, kind, first, nr, nc)."""
    m = rstop[0]
    n = cstop[0]
    cap = 1024
    rnode = np.empty(cap, np.int64)
    cnode = np.empty(cap, np.int64)
    kind = np.empty(cap, np.int64)
    first = np.empty(cap, np.int64)
    first[:] = -1
    nr = np.zeros(cap, np.int64)
    nc = np.zeros(cap, np.int64)
    rnode[0] = 0
    cnode[0] = 0
    count = 1
    head = 0
    while head < count:
        s = rnode[head]
        t = cnode[head]
        if _admissible(mode, eta, s, t, rlo, rhi, clo, chi, rstart, rstop, cstart, cstop, m, n):
            kind[head] = KIND_LOWRANK
        elif rl[s] < 0 and cl[t] < 0:
            kind[head] = KIND_DENSE
        else:
            kind[head] = KIND_INTERNAL
            a = 2 if rl[s] >= 0 else 1
            b = 2 if cl[t] >= 0 else 1
            if count + a * b > cap:
                cap2 = 2 * cap
                rnode = _grow(rnode, cap2, 0)
                cnode = _grow(cnode, cap2, 0)
                kind = _grow(kind, cap2, 0)
                first = _grow(first, cap2, -1)
                nr = _grow(nr, cap2, 0)
                nc = _grow(nc, cap2, 0)
                cap = cap2
            first[head] = count
            nr[head] = a
            nc[head] = b
            for i in range(a):
                si = s if a == 1 else (rl[s] if i == 0 else rr[s])
                for j in range(b):
                    tj = t if b == 1 else (cl[t] if j == 0 else cr[t])
                    rnode[count] = si
                    cnode[count] = tj
                    count += 1
        head += 1
    return rnode[:count], cnode[:count], kind[:count], first[:count], nr[:count], nc[:count]


@njit(cache=True, nogil=True)
def _grow(a, cap, fill):
    out = np.empty(cap, a.dtype)
    out[:a.size] = a
    for i in range(a.size, cap):
        out[i] = fill
    return out


@njit(cache=True, nogil=True)
def leaves_dfs(kind, first, nr, nc):
    """Block-node ids of the leaves in depth-first, row-major order."""
    out = np.empty(kind.size, np.int64)
    stack = np.empty(kind.size + 1, np.int64)
    top = 0
    stack[0] = 0
    top = 1
    cnt = 0
    while top > 0:
        top -= 1
        b = stack[top]
        if kind[b] != KIND_INTERNAL:
            out[cnt] = b
            cnt += 1
        else:
            k = nr[b] * nc[b]
            for c in range(k - 1, -1, -1):
                stack[top] = first[b] + c
                top += 1
    return out[:cnt]
