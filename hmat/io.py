"""Save and load H-matrices as ``.npz`` files (no pickle), with full validation on load."""

from __future__ import annotations

import errno
import os
import stat
import tempfile

import numpy as np

from . import _precision
from ._packed import Packed, Segment, leaf_size
from ._validate import SUPPORTED_DTYPES
from .dense import Dense, trusted_dense
from .hblock import HBlock, adjoint_source, packed_root, stored_packed
from .lowrank import LowRank, trusted_lowrank
from .operator import LinearOperator
from .partition import LeafKind, Partition, permutation_or_none
from .provenance import BuildInfo

__all__ = ["save", "load", "write_atomic", "FORMAT_VERSION", "MAX_DEPTH"]

#: Version of the file layout written by :func:`save` (:func:`load` reads 1 to 4; version 2
#: adds the optional storage arrays of symmetric and mixed-precision H-matrices, version 3 the
#: optional ``compressor`` name of the build provenance, version 4 the ``leaf_kind`` of each
#: leaf of an HBlock's :class:`~hmat.Partition` -- admissible or not, which the stored
#: operator alone does not tell: an admissible leaf whose low-rank form did not pay is stored
#: dense. Older files take each leaf's kind from its operator.)
FORMAT_VERSION = 4
_READABLE = (1, 2, 3, 4)
_MAGIC = "hmat-pinn/hblock"
#: node codes of the file layout (fixed by FORMAT_VERSION 1, not by LeafKind's values)
_FILE_CODE = {LeafKind.INTERNAL: 0, LeafKind.DENSE: 1, LeafKind.LOWRANK: 2}
_FROM_FILE = {code: kind for kind, code in _FILE_CODE.items()}


#: Deepest HBlock nesting :func:`save` writes and :func:`load` reads (far beyond any cluster
#: tree: depth ~ log2(n / leaf_size)); keeps every recursive walk of the tree well inside
#: Python's recursion limit.
MAX_DEPTH = 256


def save(path, H):
    """Write ``H`` to ``path`` (``.npz``, no pickle) atomically (temp file + rename).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. An existing file keeps its permission bits; a symbolic link is
        followed (its target is replaced, the link stays). A new file gets the default
        permissions (``0o666`` less the umask).
    H : HBlock, Dense or LowRank

    Raises
    ------
    TypeError
        If ``H`` is not one of the three types.
    ValueError
        If ``H`` holds NaN or Inf, or metadata :func:`load` would refuse: nothing is
        written that cannot be read back.
    OSError
        From the file system (missing directory, no permission), naming ``path``.

    Notes
    -----
    The data goes to a temporary file ``.<name>.<pid>.<random>.hmat-tmp`` next to the
    target, which is renamed over it. The temporary file is removed on any exception
    (``KeyboardInterrupt`` included); one left by a killed process (``SIGKILL``) is
    removed by the next ``save`` to the same path once that process is gone.
    """
    if not isinstance(H, (HBlock, Dense, LowRank)):
        raise TypeError(f"H must be an HBlock, Dense or LowRank, got {type(H).__name__}")
    if isinstance(H, HBlock) and adjoint_source(H) is not None:
        H = H.astype(H.dtype)  # materialise an adjoint view's own structure
    arrays = _encode(H)
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _storage(H):
    """The storage arrays of an H-matrix whose stored data differ from its logical leaves
    (symmetric storage, single-precision parts), or None: ``{"data": ..., "data_lo": ...,
    "storage": (9, rows) int64 (r0, m, c0, n, rank, off, id, mirror id, in data_lo),
    "segments": rows per segment, "symmetry": str}``."""
    pk = stored_packed(H) if isinstance(H, HBlock) else None
    if pk is None:
        return None
    lowp = [s.buf.dtype != pk.dtype for s in pk.segments]
    if pk.sym is None and not any(lowp):
        return None
    ids, mids, _ = pk.leaf_ids()
    off, used = [], [0, 0]
    for s, lo in zip(pk.segments, lowp):
        off.append(s.off + used[lo])
        used[lo] += s.buf.size
    table = [np.concatenate([getattr(s, f) for s in pk.segments]) for f in ("r0", "m", "c0", "n")]
    # the file's rank row: -1 for a dense leaf (its own code, see _FILE_CODE)
    table.append(np.concatenate([np.where(s.is_dense(), -1, s.rank) for s in pk.segments]))
    prec = np.concatenate([np.full(s.r0.size, int(lo), np.int64) for s, lo in zip(pk.segments, lowp)])
    bufs = [[s.file_buf() for s, lo in zip(pk.segments, lowp) if lo == want] for want in (False, True)]
    low = _precision.low_dtype(pk.dtype) or pk.dtype
    return {
        "data": np.concatenate(bufs[0]) if bufs[0] else np.zeros(0, pk.dtype),
        "data_lo": np.concatenate(bufs[1]) if bufs[1] else np.zeros(0, low),
        "storage": np.stack(table + [np.concatenate(off), ids, mids, prec]).astype(np.int64),
        "segments": np.array([s.r0.size for s in pk.segments], np.int64),
        "symmetry": np.array("none" if pk.sym is None else pk.sym),
    }


def write_atomic(path, write):
    """Write a file atomically: ``write(f)`` fills a temporary file next to ``path``, which is
    then renamed over it (fsynced first).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. An existing file keeps its permission bits; a symbolic link is
        followed (its target is replaced, the link stays).
    write : callable
        ``write(f)`` with ``f`` a binary file object open for writing.

    Raises
    ------
    OSError
        From the file system, naming ``path`` (not the temporary file).

    Notes
    -----
    The temporary file is removed on any exception; one left by a killed process is removed
    by the next write to the same path once that process is gone. :func:`save` and the
    per-rank files of :mod:`hmat.mpi` are written this way.
    """
    given = os.fspath(path)
    target = os.path.realpath(given)  # follow a symbolic link: replace its target
    directory, base = os.path.split(target)
    mode = _target_mode(target, given)
    _remove_stale_temps(directory, base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise _name_path(exc, given) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (tmp, target):
            raise _name_path(exc, given) from exc
        raise


_TMP_SUFFIX = ".hmat-tmp"


def _name_path(exc, given):
    """The same kind of OSError, naming the path the caller gave instead of a temp file."""
    if exc.errno is None:
        return type(exc)(f"{given}: {exc}")
    return type(exc)(exc.errno, exc.strerror or str(exc), given)


def _target_mode(target, given):
    """Permission bits for the new file: the existing target's, else 0o666 less the umask."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return 0o666 & ~_umask()
    except OSError as exc:
        raise _name_path(exc, given) from exc
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", given)
    return stat.S_IMODE(st.st_mode)


def _umask():
    try:  # Linux >= 4.7: read it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _remove_stale_temps(directory, base):
    """Remove temp files of earlier saves to ``base`` whose writing process no longer exists."""
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _encode(H):
    """The arrays of the file, after checking that :func:`load` will accept them."""
    nodes, bufs = [], []
    pos = 0
    storage = _storage(H)  # leaves' data from the storage arrays: nodes hold no offsets
    for op, at in _preorder(H):  # depth-first, children in row-major order (the order load reads)
        if op is None:  # an internal node: at = (depth, rows, cols, grid rows, grid cols)
            if at[0] > MAX_DEPTH:
                raise ValueError(f"H is nested deeper than {MAX_DEPTH} levels; it cannot be saved")
            nodes.append((_FILE_CODE[LeafKind.INTERNAL], at[3], at[4], at[1], at[2], 0, 0))
        elif storage is not None:
            nodes.append((_FILE_CODE[LeafKind.DENSE if isinstance(op, Dense) else LeafKind.LOWRANK], 0, 0, op.shape[0], op.shape[1],
                          -1 if isinstance(op, Dense) else op.rank, -1))
        elif isinstance(op, Dense):
            nodes.append((_FILE_CODE[LeafKind.DENSE], 0, 0, op.shape[0], op.shape[1], -1, pos))
            bufs.append(np.asarray(op.array).reshape(-1))
            pos += op.shape[0] * op.shape[1]
        else:
            k = op.rank
            nodes.append((_FILE_CODE[LeafKind.LOWRANK], 0, 0, op.shape[0], op.shape[1], k, pos))
            bufs.append(np.asarray(op.U).reshape(-1))
            bufs.append(np.asarray(op.V).reshape(-1))
            pos += k * (op.shape[0] + op.shape[1])
    data = np.concatenate(bufs) if bufs else np.zeros(0, H.dtype)
    if storage is not None:
        data = storage.pop("data")
        if not bool(np.isfinite(storage["data_lo"]).all()):
            raise ValueError("H contains NaN or Inf; it cannot be saved (load would refuse the file)")
    if not bool(np.isfinite(data).all()):
        raise ValueError("H contains NaN or Inf; it cannot be saved (load would refuse the file)")
    arrays = {
        "magic": np.array(_MAGIC),
        "version": np.array(FORMAT_VERSION, np.int64),
        "dtype": np.array(str(H.dtype)),
        "shape": np.array(H.shape, np.int64),
        "nodes": np.array(nodes, np.int64).reshape(-1, 7),
        "data": data.astype(H.dtype, copy=False),
    }
    if storage is not None:
        arrays.update(storage)
    if isinstance(H, HBlock):
        for name in ("row_perm", "col_perm"):
            p = getattr(H, name)
            if p is not None:
                arrays[name] = p
        meta = np.array([_meta_value(H.error_estimate, "H.error_estimate"), _meta_value(H.tol, "H.tol"),
                         H.provenance.kernel_evaluations], np.float64)
        _check_meta(meta, ValueError)
        arrays["meta"] = meta
        if H.provenance.compressor is not None:
            arrays["compressor"] = np.array(H.provenance.compressor)
        arrays["leaf_kind"] = np.array([_FILE_CODE[LeafKind(k)] for k in H.partition.kind.tolist()], np.int64)
    # the list of arrays: a damaged zip directory that hides an optional array (row_perm,
    # meta) would otherwise load as a different operator
    arrays["manifest"] = np.array(sorted([*arrays, "manifest"]))
    return arrays


def _preorder(H):
    """``(op, None)`` for a leaf operator ``H``; for an HBlock, its :class:`~hmat.Partition`
    nodes depth-first (children in row-major order): ``(leaf_op, depth)`` for a leaf and
    ``(None, (depth, rows, cols, grid_rows, grid_cols))`` for an internal node (a root that
    is one leaf is a 1 x 1 grid, as :attr:`HBlock.blocks` has it)."""
    if not isinstance(H, HBlock):
        yield H, None
        return
    p = H.partition
    ops = [lf.op for lf in H.leaves()]
    leaf_of = dict(zip(p.leaf_nodes.tolist(), range(p.n_leaves)))
    if 0 in leaf_of:
        yield None, (1, H.shape[0], H.shape[1], 1, 1)
        yield ops[0], 2
        return
    rs, re, cs, ce = p.node_row_start, p.node_row_stop, p.node_col_start, p.node_col_stop
    stack = [(0, 1)]
    while stack:
        b, depth = stack.pop()
        q = leaf_of.get(b)
        if q is not None:
            yield ops[q], depth
            continue
        f, a, w = int(p.node_first[b]), int(p.node_nr[b]), int(p.node_nc[b])
        yield None, (depth, int(re[b] - rs[b]), int(ce[b] - cs[b]), a, w)
        stack.extend((c, depth + 1) for c in range(f + a * w - 1, f - 1, -1))


def _meta_value(v, name):
    if v is None:
        return np.nan
    v = float(v)
    if np.isnan(v):
        raise ValueError(f"{name} is NaN; it cannot be saved")
    return v


def _check_meta(meta, exc):
    """error_estimate in [0, inf] (NaN: unknown), tol in (0, inf) (NaN: unknown), evaluations an int >= 0."""
    est, tol, evals = (float(v) for v in meta)
    if not (np.isnan(est) or est >= 0):
        raise exc(f"error_estimate must be >= 0, got {est!r}")
    if not (np.isnan(tol) or 0 < tol < np.inf):
        raise exc(f"tol must be a finite number > 0, got {tol!r}")
    if not (np.isfinite(evals) and evals >= 0 and evals == int(evals) and evals < 2.0**63):
        raise exc(f"kernel evaluation count must be an integer >= 0, got {evals!r}")


def load(path) -> LinearOperator:
    """Read an operator written by :func:`save`, validating everything.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    HBlock, Dense or LowRank

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (other OS errors, e.g. permission, pass through).
    ValueError
        For a truncated, corrupted or foreign file (a ``.npy`` array, another ``.npz``):
        the message names the file and says what is wrong.
    """
    try:
        z = np.load(os.fspath(path), allow_pickle=False)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # zipfile, zlib, numpy header and format errors of every kind
        raise ValueError(f"corrupted or truncated hmat file {path!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not an hmat file: it holds a single .npy array, not an .npz archive")
    try:
        with z:
            f = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"corrupted or truncated hmat file {path!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return _decode(f)
    except _Corrupt as exc:
        raise ValueError(f"corrupted hmat file {path!r}: {exc}") from None


class _Corrupt(Exception):
    pass


def _need(cond, msg):
    if not cond:
        raise _Corrupt(msg)


_STORAGE = {"data_lo", "storage", "segments", "symmetry"}
_KNOWN = {"magic", "version", "dtype", "shape", "nodes", "data", "row_perm", "col_perm", "meta", "manifest",
          "compressor", "leaf_kind"} | _STORAGE


def _decode(f):
    for key in ("magic", "version", "dtype", "shape", "nodes", "data"):
        _need(key in f, f"missing array {key!r}")
    unknown = sorted(set(f) - _KNOWN)
    _need(not unknown, f"unexpected arrays {unknown}")
    if "manifest" in f:  # files written since the manifest was added list their arrays
        man = f["manifest"]
        _need(man.ndim == 1 and man.dtype.kind == "U", "bad manifest")
        listed = {str(k) for k in man}
        _need(listed == set(f), f"arrays {sorted(listed ^ set(f))} missing or not listed in the manifest")
    _need(f["magic"].shape == () and str(f["magic"]) == _MAGIC, "not an hmat file")
    v = f["version"]
    _need(v.shape == () and v.dtype.kind in "iu", f"format version must be an integer, got {v.dtype} {v!r}")
    _need(int(v) in _READABLE, f"unsupported format version {int(v)} (this library reads {_READABLE})")
    _need("compressor" not in f or int(v) >= 3, "a compressor name in a version-1 or -2 file")
    _need("leaf_kind" not in f or int(v) >= 4, "leaf kinds in a file of version 3 or older")
    present = _STORAGE & set(f)
    _need(not present or (int(v) >= 2 and present == _STORAGE), f"storage arrays {sorted(present)} incomplete or in a version-1 file")
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
    stored_leaves = _storage_leaves(f, dtype) if present else None
    it = iter(range(nodes.shape[0]))
    used = [0]  # leaves occupy consecutive, disjoint data ranges in node order

    def take(i, off, size):
        _need(off == used[0], f"node {i}: data offset {off}, expected {used[0]} (ranges overlap or leave gaps)")
        _need(off + size <= data.size, f"node {i}: data offset out of range")
        used[0] += size

    def parse(depth):
        try:
            i = next(it)
        except StopIteration:
            raise _Corrupt("node table ends early") from None
        code, a, b, m, n, k, off = (int(v) for v in nodes[i])
        kind = _FROM_FILE.get(code)
        _need(m >= 0 and n >= 0, f"node {i}: negative size")
        if kind == LeafKind.INTERNAL:
            _need(a >= 1 and b >= 1, f"node {i}: empty block grid")
            _need(depth <= MAX_DEPTH, f"node {i}: HBlocks nested deeper than {MAX_DEPTH} levels")
            _need(a * b <= nodes.shape[0], f"node {i}: more children than nodes")
            grid = []
            for _ in range(a):
                row = []
                for _ in range(b):
                    row.append(parse(depth + 1))
                grid.append(row)
            for r, row in enumerate(grid):
                for c, op in enumerate(row):
                    _need(_shape(op)[0] == _shape(grid[r][0])[0] and _shape(op)[1] == _shape(grid[0][c])[1],
                          f"node {i}: children do not tile")
            h = sum(_shape(row[0])[0] for row in grid)
            w = sum(_shape(op)[1] for op in grid[0])
            _need((h, w) == (m, n), f"node {i}: children give {(h, w)}, expected {(m, n)}")
            return (m, n, grid)  # an internal node: its shape and children grid
        if stored_leaves is not None and kind in (LeafKind.DENSE, LeafKind.LOWRANK):
            leaf = next(stored_leaves["ops"], None)
            _need(leaf is not None, f"node {i}: more leaves than the storage holds")
            want = Dense if kind == LeafKind.DENSE else LowRank
            _need(isinstance(leaf, want) and leaf.shape == (m, n) and (kind == LeafKind.DENSE or leaf.rank == k),
                  f"node {i}: leaf differs from the storage")
            return leaf
        if kind == LeafKind.DENSE:
            size = m * n
            take(i, off, size)
            return trusted_dense(data[off:off + size].reshape(m, n))  # packed (copied) below
        if kind == LeafKind.LOWRANK:
            _need(k >= 0, f"node {i}: negative rank")
            size = k * (m + n)
            take(i, off, size)
            return trusted_lowrank(data[off:off + m * k].reshape(m, k), data[off + m * k:off + size].reshape(n, k))
        raise _Corrupt(f"node {i}: unknown kind {code}")

    op = parse(1)
    _need(next(it, None) is None, "extra nodes after the tree")
    if stored_leaves is not None:
        _need(next(stored_leaves["ops"], None) is None, "the storage holds more leaves than the tree")
        _need(isinstance(op, tuple), "storage arrays for a leaf operator")
    _need(stored_leaves is not None or used[0] == data.size, "data array has unused entries")
    _need(_shape(op) == tuple(int(s) for s in shape), f"tree shape {_shape(op)} differs from header {tuple(shape)}")
    if not isinstance(op, tuple):
        _need("row_perm" not in f and "col_perm" not in f and "leaf_kind" not in f,
              "permutations or leaf kinds stored for a leaf operator")
        return _own(op)
    perms = {}
    for name, n in (("row_perm", _shape(op)[0]), ("col_perm", _shape(op)[1])):
        p = f.get(name)
        if p is not None:
            _need(p.dtype == np.int64 and p.shape == (n,), f"{name} has the wrong dtype or length")
            try:
                p = permutation_or_none(p, n, name)
            except ValueError as exc:
                raise _Corrupt(str(exc)) from None
        perms[name] = p
    info = None
    if "meta" in f:
        meta = f["meta"]
        _need(meta.dtype == np.float64 and meta.shape == (3,), "bad metadata")
        _check_meta(meta, _Corrupt)
        name = None
        if "compressor" in f:
            c = f["compressor"]
            _need(c.shape == () and c.dtype.kind == "U", "compressor name must be one string")
            name = str(c)
        info = BuildInfo(tol=None if np.isnan(meta[1]) else float(meta[1]), kernel_evaluations=int(meta[2]),
                         error_estimate=None if np.isnan(meta[0]) else float(meta[0]), compressor=name)
    else:
        _need("compressor" not in f, "a compressor name without metadata")
    part, ops = _partition_of_tree(op, perms["row_perm"], perms["col_perm"], f.get("leaf_kind"))
    if stored_leaves is None:
        return HBlock.from_partition(part, ops, info)
    _check_geometry(part, stored_leaves)
    # apply and store through the storage; leaf objects made again when asked for
    return packed_root(part, stored_leaves["packed"], dtype, info)


def _shape(x):
    """Shape of a parsed node: a leaf operator, or ``(m, n, grid)`` for an internal node."""
    return (x[0], x[1]) if isinstance(x, tuple) else x.shape


def _own(op):
    """A leaf operator read from the file as one that owns its arrays (not views of ``data``)."""
    if isinstance(op, Dense):
        return trusted_dense(op.array.copy())
    return trusted_lowrank(op.U.copy(), op.V.copy())


def _partition_of_tree(root, row_perm, col_perm, leaf_kind=None):
    """The :class:`~hmat.Partition` of a parsed node tree and its leaf operators (leaf order).

    ``leaf_kind``: the file's leaf kinds (file codes, leaf order; version 4), or None to take
    each leaf's kind from its operator (older files)."""
    table, ops = [], []

    def walk(x, r, c):
        if not isinstance(x, tuple):
            kind = LeafKind.DENSE if isinstance(x, Dense) else LeafKind.LOWRANK
            table.append((r, x.shape[0], c, x.shape[1], kind))
            ops.append(x)
            return len(ops) - 1
        out = []
        for row in x[2]:
            cc, out_row = c, []
            for child in row:
                out_row.append(walk(child, r, cc))
                cc += _shape(child)[1]
            r += _shape(row[0])[0]
            out.append(out_row)
        return out

    tree = walk(root, 0, 0)
    r0, m, c0, n, kind = (np.array(col, np.int64) for col in zip(*table))
    if leaf_kind is not None:
        _need(leaf_kind.dtype == np.int64 and leaf_kind.shape == kind.shape,
              f"leaf_kind must be int64 with one entry per leaf ({kind.size})")
        codes = (_FILE_CODE[LeafKind.DENSE], _FILE_CODE[LeafKind.LOWRANK])
        _need(bool(np.isin(leaf_kind, codes).all()), "leaf_kind: a leaf is neither dense nor low-rank")
        stored = np.where(leaf_kind == codes[0], int(LeafKind.DENSE), int(LeafKind.LOWRANK))
        # an admissible leaf may be stored dense, an inadmissible one is never low-rank
        _need(bool((stored[kind == LeafKind.LOWRANK] == LeafKind.LOWRANK).all()),
              "leaf_kind: a low-rank leaf marked dense (inadmissible)")
        kind = stored
    try:
        part = Partition(_shape(root), r0, m, c0, n, kind, row_perm, col_perm, tree=tree)
    except ValueError as exc:
        raise _Corrupt(f"bad block structure: {exc}") from None
    return part, ops


def _storage_leaves(f, dtype):
    """Validate the storage arrays; ``{"packed": Packed, "ops": iterator of logical leaves,
    "table": the logical (r0, m, c0, n, kind, rank)}``."""
    lo, tab, segn, sym = f["data_lo"], f["storage"], f["segments"], f["symmetry"]
    low = _precision.low_dtype(dtype) or dtype
    _need(lo.dtype == low and lo.ndim == 1, "data_lo has the wrong dtype or shape")
    _need(bool(np.isfinite(lo).all()), "data_lo contains NaN or Inf")
    _need(tab.dtype == np.int64 and tab.ndim == 2 and tab.shape[0] == 9, "bad storage table")
    _need(segn.dtype == np.int64 and segn.ndim == 1 and (segn >= 0).all() and int(segn.sum()) == tab.shape[1],
          "bad storage segments")
    _need(sym.shape == () and str(sym) in ("none", "symmetric", "hermitian"), "bad symmetry")
    r0, m, c0, n, rank, off, ids, mids, prec = (tab[j] for j in range(9))
    _need(bool((m >= 0).all() and (n >= 0).all() and (r0 >= 0).all() and (c0 >= 0).all() and (rank >= -1).all()),
          "storage: negative sizes")
    _need(bool(np.isin(prec, (0, 1)).all()), "storage: bad precision flags")
    _need(str(sym) != "none" or bool((mids == -1).all()), "storage: mirrored leaves without symmetry")
    q = int(max(ids.max(initial=-1), mids.max(initial=-1))) + 1
    _need(bool((ids >= 0).all() and (mids >= -1).all()), "storage: bad leaf ids")
    # the file's rank row codes a dense leaf as -1: map it to LeafKind once
    kind = np.where(rank == -1, int(LeafKind.DENSE), int(LeafKind.LOWRANK))
    rank = np.maximum(rank, 0)
    size = leaf_size(m, n, kind, rank)
    bufs = (f["data"], lo)
    used = [0, 0]
    for t in range(tab.shape[1]):  # each buffer consumed in row order, without gaps
        b = int(prec[t])
        _need(int(off[t]) == used[b] and used[b] + int(size[t]) <= bufs[b].size, f"storage row {t}: bad data offset")
        used[b] += int(size[t])
    _need(used == [f["data"].size, lo.size], "storage: data arrays have unused entries")
    segs, start = [], 0
    for cnt in segn.tolist():
        sl = slice(start, start + cnt)
        start += cnt
        if cnt == 0:
            continue
        b = int(prec[sl][0])
        _need(bool((prec[sl] == b).all()), "storage: a segment mixes precisions")
        a0, a1 = int(off[sl][0]), int(off[sl][-1] + size[sl][-1])
        segs.append(Segment.from_file(r0[sl].copy(), m[sl].copy(), c0[sl].copy(), n[sl].copy(), kind[sl].copy(),
                                      rank[sl].copy(), off[sl] - a0, bufs[b][a0:a1], ids[sl].copy(), mids[sl].copy()))
    packed = Packed(segs, dtype=dtype, sym=None if str(sym) == "none" else str(sym))
    # every logical leaf: stored (rows of one kind), or the mirror of exactly one stored leaf
    cover = np.zeros(q, np.int64)
    np.add.at(cover, np.unique(ids), 1)
    pairs = {(int(i), int(j)) for i, j in zip(ids, mids) if j >= 0}
    _need(len({i for i, _ in pairs}) == len(pairs), "storage: a leaf has two mirrors")
    np.add.at(cover, np.array([j for _, j in pairs], np.int64), 1)
    _need(q > 0 and bool((cover == 1).all()), "storage: leaves missing or stored twice")
    for i in np.unique(ids[kind == LeafKind.DENSE]):
        _need(int((ids == i).sum()) == 1, f"storage: dense leaf {int(i)} split")
    return {"packed": packed, "ops": iter(packed.leaf_ops()), "table": packed.logical_table()}


def _check_geometry(part, stored):
    """The storage's leaf positions (stored and mirrored) are the tree's."""
    lr0, lm, lc0, ln, _, _ = stored["table"]
    _need(part.n_leaves == lr0.size, "storage and tree differ in their number of leaves")
    got = np.stack([part.r0, part.c0, part.m, part.n], axis=1)
    want = np.stack([lr0, lc0, lm, ln], axis=1) if lr0.size else np.zeros((0, 4), np.int64)
    _need(bool(np.array_equal(got, want)), "storage leaf positions differ from the tree")
