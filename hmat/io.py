"""Save and load H-matrices as ``.npz`` files (no pickle), with full validation on load."""

from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from ._validate import SUPPORTED_DTYPES
from .dense import Dense
from .hblock import HBlock, _trusted_node
from .lowrank import LowRank
from .operator import LinearOperator

__all__ = ["save", "load", "FORMAT_VERSION"]

#: Version of the file layout written by :func:`save`.
FORMAT_VERSION = 1
_MAGIC = "hmat-pinn/hblock"
_KIND_H, _KIND_D, _KIND_L = 0, 1, 2


def save(path, H):
    """Write ``H`` to ``path`` (``.npz``, no pickle) atomically (temp file + rename).

    Parameters
    ----------
    path : str or os.PathLike
    H : HBlock, Dense or LowRank
    """
    if not isinstance(H, (HBlock, Dense, LowRank)):
        raise TypeError(f"H must be an HBlock, Dense or LowRank, got {type(H).__name__}")
    if isinstance(H, HBlock) and H._adjoint_of is not None:
        H = H.astype(H.dtype)  # materialise an adjoint view's own structure
    nodes, bufs = [], []
    pos = [0]

    def walk(op):
        if isinstance(op, HBlock):
            nodes.append((_KIND_H, len(op.blocks), len(op.blocks[0]), op.shape[0], op.shape[1], 0, 0))
            for row in op.blocks:
                for child in row:
                    walk(child)
        elif isinstance(op, Dense):
            nodes.append((_KIND_D, 0, 0, op.shape[0], op.shape[1], -1, pos[0]))
            bufs.append(np.asarray(op.array).reshape(-1))
            pos[0] += op.shape[0] * op.shape[1]
        else:
            k = op.rank
            nodes.append((_KIND_L, 0, 0, op.shape[0], op.shape[1], k, pos[0]))
            bufs.append(np.asarray(op.U).reshape(-1))
            bufs.append(np.asarray(op.V).reshape(-1))
            pos[0] += k * (op.shape[0] + op.shape[1])

    walk(H)
    data = np.concatenate(bufs) if bufs else np.zeros(0, H.dtype)
    arrays = {
        "magic": np.array(_MAGIC),
        "version": np.array(FORMAT_VERSION, np.int64),
        "dtype": np.array(str(H.dtype)),
        "shape": np.array(H.shape, np.int64),
        "nodes": np.array(nodes, np.int64).reshape(-1, 7),
        "data": data.astype(H.dtype, copy=False),
    }
    if isinstance(H, HBlock):
        for name in ("row_perm", "col_perm"):
            p = getattr(H, name)
            if p is not None:
                arrays[name] = p
        meta = [np.nan if H.error_estimate is None else H.error_estimate, np.nan if H.tol is None else H.tol, H._kernel_evals]
        arrays["meta"] = np.array(meta, np.float64)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hmat-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> LinearOperator:
    """Read an operator written by :func:`save`, validating everything.

    Raises
    ------
    ValueError
        For a truncated, corrupted or foreign file (the message says what is wrong).
    """
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            f = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ValueError(f"corrupted or truncated hmat file {path!r}: {exc}") from exc
    try:
        return _decode(f)
    except _Corrupt as exc:
        raise ValueError(f"corrupted hmat file {path!r}: {exc}") from None


class _Corrupt(Exception):
    pass


def _need(cond, msg):
    if not cond:
        raise _Corrupt(msg)


def _decode(f):
    for key in ("magic", "version", "dtype", "shape", "nodes", "data"):
        _need(key in f, f"missing array {key!r}")
    _need(f["magic"].shape == () and str(f["magic"]) == _MAGIC, "not an hmat file")
    _need(f["version"].shape == () and int(f["version"]) == FORMAT_VERSION, f"unsupported format version {f['version']}")
    try:
        dtype = np.dtype(str(f["dtype"]))
    except TypeError:
        raise _Corrupt(f"bad dtype {f['dtype']!r}") from None
    _need(dtype in SUPPORTED_DTYPES, f"unsupported dtype {dtype}")
    data, nodes, shape = f["data"], f["nodes"], f["shape"]
    _need(data.dtype == dtype and data.ndim == 1, "data array has the wrong dtype or shape")
    _need(nodes.dtype == np.int64 and nodes.ndim == 2 and nodes.shape[1] == 7 and nodes.shape[0] >= 1, "bad node table")
    _need(shape.dtype == np.int64 and shape.shape == (2,) and (shape >= 0).all(), "bad shape")
    _need(bool(np.isfinite(data).all()), "data contains NaN or Inf")
    it = iter(range(nodes.shape[0]))
    used = [0]

    def parse():
        try:
            i = next(it)
        except StopIteration:
            raise _Corrupt("node table ends early") from None
        kind, a, b, m, n, k, off = (int(v) for v in nodes[i])
        _need(m >= 0 and n >= 0, f"node {i}: negative size")
        if kind == _KIND_H:
            _need(a >= 1 and b >= 1, f"node {i}: empty block grid")
            grid = [[parse() for _ in range(b)] for _ in range(a)]
            for r, row in enumerate(grid):
                for c, op in enumerate(row):
                    _need(op.shape[0] == grid[r][0].shape[0] and op.shape[1] == grid[0][c].shape[1], f"node {i}: children do not tile")
            h = sum(row[0].shape[0] for row in grid)
            w = sum(op.shape[1] for op in grid[0])
            _need((h, w) == (m, n), f"node {i}: children give {(h, w)}, expected {(m, n)}")
            return _trusted_node(tuple(tuple(r) for r in grid), dtype, (m, n))
        if kind == _KIND_D:
            size = m * n
            _need(0 <= off and off + size <= data.size, f"node {i}: data offset out of range")
            used[0] += size
            return Dense._trusted(data[off:off + size].reshape(m, n).copy())
        if kind == _KIND_L:
            _need(k >= 0, f"node {i}: negative rank")
            size = k * (m + n)
            _need(0 <= off and off + size <= data.size, f"node {i}: data offset out of range")
            used[0] += size
            U = data[off:off + m * k].reshape(m, k).copy()
            V = data[off + m * k:off + size].reshape(n, k).copy()
            return LowRank._trusted(U, V)
        raise _Corrupt(f"node {i}: unknown kind {kind}")

    op = parse()
    _need(next(it, None) is None, "extra nodes after the tree")
    _need(used[0] == data.size, "data array has unused entries")
    _need(op.shape == tuple(int(s) for s in shape), f"tree shape {op.shape} differs from header {tuple(shape)}")
    if not isinstance(op, HBlock):
        _need("row_perm" not in f and "col_perm" not in f, "permutations stored for a leaf operator")
        return op
    perms = {}
    for name, n in (("row_perm", op.shape[0]), ("col_perm", op.shape[1])):
        p = f.get(name)
        if p is not None:
            _need(p.dtype == np.int64 and p.shape == (n,), f"{name} has the wrong dtype or length")
            seen = np.zeros(n, bool)
            _need(n == 0 or (p.min() >= 0 and p.max() < n), f"{name} is not a permutation")
            seen[p] = True
            _need(bool(seen.all()), f"{name} is not a permutation")
        perms[name] = p
    op.row_perm, op.col_perm = perms["row_perm"], perms["col_perm"]
    if "meta" in f:
        meta = f["meta"]
        _need(meta.dtype == np.float64 and meta.shape == (3,), "bad metadata")
        op.error_estimate = None if np.isnan(meta[0]) else float(meta[0])
        op.tol = None if np.isnan(meta[1]) else float(meta[1])
        op._kernel_evals = int(meta[2])
    return op
