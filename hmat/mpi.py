"""MPI-distributed H-matrices: build, matvec and Krylov solves across processes (mpi4py).

Run under ``mpiexec -n P python script.py``; every function and method here is
*collective* (all ranks of the communicator call it, in the same order) unless its
docstring says "local".

Layout
------
Every rank builds the same cluster and block trees (cheap, deterministic). The rows of the
matrix, in the row cluster tree's permuted order, are cut into ``P`` contiguous ranges
at positions that no leaf straddles, balanced by the estimated build cost of the leaves
in each range. Rank ``r`` assembles only the leaves of its row range ``[row_cuts[r],
row_cuts[r + 1])`` with the compiled builder; no rank holds the whole matrix.

A distributed vector is one contiguous slice per rank of the *permuted* index: rank ``r``
holds ``y[row_cuts[r]:row_cuts[r + 1]]`` of the permuted row space (and the column space
is cut at ``col_cuts``, the same cuts when rows and columns share one tree). The original
indices of a rank's slice are ``row_perm[row_cuts[r]:row_cuts[r + 1]]``, so a right-hand
side can be evaluated locally; :meth:`DistributedHMatrix.distribute` and
:meth:`DistributedHMatrix.collect` convert from/to a full vector in original order.

A matvec gathers ``x`` once (one ``Allgatherv``: every rank receives the ``N`` entries of
``x``) and multiplies its own leaves; the adjoint multiplies locally and sums the column
contributions with one ``Reduce_scatter``. Communication per product is therefore ``O(N)``
words per rank, independent of the number of leaves.

Not distributed: H-LU / Cholesky and the other arithmetic (``add``, ``multiply``,
``truncate``, ``coarsen``) -- :meth:`DistributedHMatrix.gather` returns an ordinary
:class:`~hmat.HBlock` for small problems. See ``docs/mpi.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from . import _threads
from ._aca_numba import sample_entries
from ._kernel_jit import compiled_for
from ._packed import BuiltLeaves, Packed, Segment, cost_chunks, mirror_partner
from ._packed import leaf_size as packed_entries
from ._progress import progress_bar
from ._validate import SUPPORTED_DTYPES, check_choice, check_dtype, check_positive, check_tol
from .aca import twin_groups
from .admissibility import StrongAdmissibility, WeakAdmissibility
from .blocktree import BlockTree
from .cluster import ClusterTree
from .hblock import HBlock, packed_root
from .kernels import Kernel
from .linalg import permuted_apply
from .partition import LeafKind
from .provenance import BuildInfo

__all__ = ["DistributedHMatrix", "from_kernel", "load", "require_mpi", "local_threads", "row_cuts", "demo"]

_EXTRA_HINT = 'install the optional extra: pip install "hmat-pinn[mpi]" (mpi4py, mpich, pylops-mpi)'
FORMAT_VERSION = 1
_MAGIC = "hmat-pinn/distributed-hblock"


# ---------------------------------------------------------------------- MPI plumbing

def require_mpi():
    """The ``mpi4py.MPI`` module, or an ImportError naming the ``mpi`` extra (local)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"hmat.mpi needs mpi4py and an MPI library; {_EXTRA_HINT}") from exc
    return MPI


def _require_pylops_mpi():
    try:
        import pylops_mpi
    except ImportError as exc:
        raise ImportError(f"this needs pylops-mpi; {_EXTRA_HINT}") from exc
    return pylops_mpi


def _comm(comm):
    MPI = require_mpi()
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator, got {type(comm).__name__}")
    return comm


def local_threads(comm=None):
    """Threads per rank that fill this node without oversubscription: CPUs / ranks on the node.

    Collective. Pass the result to :func:`hmat.set_num_threads`.
    """
    MPI = require_mpi()
    comm = _comm(comm)
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return max(1, _threads.get_num_threads() // node.Get_size())
    finally:
        node.Free()


def _agree(comm, fn, *args, **kwargs):
    """Run ``fn`` on every rank; when it raises on any rank, every rank raises.

    The failing rank re-raises its own exception; the others raise the same type
    (ValueError, TypeError or ImportError; RuntimeError for anything else) naming the
    failing rank, so no rank is left waiting in a later collective.
    """
    out, err = None, None
    try:
        out = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
        err = exc
    msg = None if err is None else (type(err).__name__, str(err))
    msgs = comm.allgather(msg)
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    if not bad:
        return out
    if err is not None:
        raise err
    r, (kind, text) = bad[0]
    cls = {"ValueError": ValueError, "TypeError": TypeError, "ImportError": ImportError}.get(kind, RuntimeError)
    raise cls(f"rank {r} failed: {text}")


def _even_cuts(n, p):
    return (np.arange(p + 1, dtype=np.int64) * n) // p


def row_cuts(r0, m, cost, nrows, nparts):
    """Contiguous row cuts balancing ``cost`` (local, deterministic).

    Cuts lie only at positions that no leaf ``[r0, r0 + m)`` straddles, so every leaf
    belongs to exactly one part; cut ``k`` is the valid position whose cumulative cost (of
    the leaves starting above it) is nearest to ``k / nparts`` of the total (and not
    below cut ``k - 1``).

    Parameters
    ----------
    r0, m : ndarray, shape (nleaves,), int64
        First row and number of rows of each leaf (permuted order).
    cost : ndarray, shape (nleaves,), float64
        Estimated cost of each leaf.
    nrows : int
    nparts : int
        Number of parts (ranks).

    Returns
    -------
    ndarray, shape (nparts + 1,), int64
        ``0 = cuts[0] <= cuts[1] <= ... <= cuts[nparts] = nrows``; a part may be empty.
    """
    straddle = np.zeros(nrows + 1, np.int64)
    np.add.at(straddle, r0 + 1, 1)
    np.add.at(straddle, r0 + m, -1)
    valid = np.flatnonzero(np.cumsum(straddle) == 0)  # includes 0 and nrows
    valid = valid[(valid >= 0) & (valid <= nrows)]
    csum = np.concatenate([[0.0], np.cumsum(np.bincount(r0, weights=cost, minlength=nrows)[:nrows])])
    at = csum[valid]
    total = csum[-1]
    cuts = [0]
    for k in range(1, nparts):
        i = int(np.argmin(np.abs(at - total * k / nparts)))
        cuts.append(max(int(valid[i]), cuts[-1]))
    cuts.append(nrows)
    return np.asarray(cuts, np.int64)


def _entry_name(kernel):
    """Module and name of a compiled kernel's entry function (the same on every rank)."""
    return f"{getattr(kernel.entry, '__module__', '')}.{getattr(kernel.entry, '__qualname__', '')}"


def _fingerprint(*arrays, extra=""):
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _admissibility(admissibility, eta):
    eta = check_positive(eta, "eta")
    check_choice(admissibility, "admissibility", {"strong", "weak"})
    return StrongAdmissibility(eta) if admissibility == "strong" else WeakAdmissibility()


def _leaf_cost(m, n, admissible):
    """Estimated build cost of each leaf (the compiled builder's own estimate)."""
    return np.where(admissible, 24 * (m + n), m * n).astype(np.float64)


# ---------------------------------------------------------------------- build

def from_kernel(
    kernel,
    points,
    *,
    comm=None,
    targets=None,
    tol=1e-6,
    eta=2.0,
    leaf_size=64,
    admissibility="strong",
    split="bbox",
    dtype=None,
    n_samples=4096,
    seed=0,
    progress=False,
):
    """Build a distributed H-matrix of ``K[i, j] = kernel(targets[i], points[j])``.

    Collective: every rank passes the same arguments (checked; a mismatch or bad input on
    any rank makes every rank raise). Each rank assembles only the leaves of its row
    range, with the same compiled ACA builder as :func:`hmat.from_kernel`, so the leaves
    are those of the single-process build (for a symmetric kernel on one point set, a rank
    whose leaf's transposed twin belongs to another rank builds the twin itself and
    transposes it, exactly as the serial build does).

    Parameters
    ----------
    kernel : hmat.kernels.Kernel
        A built-in (compiled) kernel; Python kernels are not supported here.
    points : array_like, shape (n, d), float64
        Column (source) points, identical on every rank.
    comm : mpi4py.MPI.Intracomm, optional
        Default ``MPI.COMM_WORLD``.
    targets : array_like, shape (m, d), optional
        Row (target) points; default ``points``.
    tol, eta, leaf_size, split, dtype, n_samples, seed
        As in :func:`hmat.from_kernel`.
    admissibility : {"strong", "weak"}
    progress : bool
        tqdm bar over this rank's leaves, shown on rank 0 only.

    Returns
    -------
    DistributedHMatrix
        Shape ``(m, n)``, dtype ``dtype`` (default ``kernel.dtype``).
    """
    comm = _comm(comm)

    def setup():
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a built-in hmat.kernels.Kernel, got {type(kernel).__name__}")
        t = check_tol(tol)
        ls = check_positive(leaf_size, "leaf_size", integer=True)
        adm = _admissibility(admissibility, eta)
        kdt = check_dtype(kernel.dtype, "kernel.dtype")
        dt = check_dtype(dtype if dtype is not None else kdt)
        if kdt.kind == "c" and dt.kind != "c":
            raise TypeError(f"dtype {dt} would drop the imaginary part of the complex kernel {kernel!r}; "
                            f"use a complex dtype (complex64 or complex128)")
        ns = check_positive(n_samples, "n_samples", integer=True, minimum=0)
        for name, a in (("points", points), ("targets", targets)):
            if a is not None and np.iscomplexobj(a):
                raise TypeError(f"{name} must be real coordinates, got a complex array")
        if not isinstance(split, str):  # saved per rank by name and compared across ranks
            raise TypeError(f"split must be 'bbox', 'pca' or 'cardinality' in hmat.mpi, got {type(split).__name__}")
        col_tree = ClusterTree(points, leaf_size=ls, split=split)
        row_tree = col_tree if targets is None else ClusterTree(targets, leaf_size=ls, split=split)
        for name, tr in (("points", col_tree), ("targets", row_tree)):
            big = float(np.max(np.abs(tr.points))) if tr.points.size else 0.0
            if big > 1e150:
                raise ValueError(f"{name} has coordinates of magnitude {big:.3g} > 1e150: the built-in kernels' "
                                 f"squared distances would overflow; rescale the points (and the kernel parameter)")
        for name, tr in (("points", col_tree), ("targets", row_tree)):
            if kernel.dim is not None and tr.dim != kernel.dim:
                raise ValueError(f"{name} must have d = {kernel.dim} coordinates for {kernel!r}, got {tr.dim}")
        if row_tree.dim != col_tree.dim:
            raise ValueError(f"targets and points differ in dimension ({row_tree.dim} vs {col_tree.dim})")
        key = _fingerprint(col_tree.points, None if targets is None else row_tree.points,
                           extra=repr((_entry_name(kernel), kernel.param, t, float(eta), ls, admissibility, split, str(dt), ns, seed)))
        return t, ls, adm, dt, ns, col_tree, row_tree, key

    t, ls, adm, dt, ns, col_tree, row_tree, key = _agree(comm, setup)
    keys = comm.allgather(key)
    if len(set(keys)) != 1:
        bad = [r for r, k in enumerate(keys) if k != keys[0]]
        raise ValueError(f"ranks {bad} were given different points, targets or parameters than rank 0")
    params = {"tol": t, "eta": float(eta), "leaf_size": ls, "admissibility": admissibility, "split": split}
    # Only local work runs inside _agree (a failure there must not strand a rank in a
    # collective); the collectives in between cannot fail on one rank alone.
    plan = _agree(comm, _plan, comm.Get_size(), comm.Get_rank(), kernel, row_tree, col_tree, adm, dt, params)
    built = _agree(comm, _build_computed, plan, kernel, progress)
    recv = _agree(comm, _exchange_alloc, plan, built)
    _exchange(comm, plan, built, recv)
    received = sum(a.nbytes for a in recv["recv_table"] + recv["recv_data"])
    parts = _agree(comm, _assemble, plan, built, recv)
    del built, recv
    H = DistributedHMatrix._create(comm, *parts)
    H.build_comm_bytes = int(received)
    if ns:
        est = _agree(comm, H._sampled_error_local, kernel, ns, seed)
        H.error_estimate = H._combine_error(est)
    return H


def _plan(P, rank, kernel, row_tree, col_tree, adm, dtype, params):
    """Which rank stores and which rank computes each leaf (local, identical on every rank).

    Storage: rank ``r`` stores the leaves of its row range (cuts balanced by estimated
    cost). Computation: as in the serial build, for a symmetric kernel on one point set
    only the leaf of each transposed pair with ``r0 <= c0`` is built by ACA (the other is
    its transpose). A pair inside one rank's rows is computed there; a pair across two
    ranks is computed by whichever of the two has less work so far (greedy, largest first),
    and the result is sent to the other rank, which stores it or its transpose.
    """
    bt = BlockTree(row_tree, col_tree, adm)
    r0, m, c0, n, admissible = bt.leaf_arrays()
    cost = _leaf_cost(m, n, admissible)
    rcuts = row_cuts(r0, m, cost, row_tree.n, P)
    ccuts = rcuts if row_tree is col_tree else _even_cuts(col_tree.n, P)
    Xp = np.ascontiguousarray(row_tree.points[row_tree.perm])
    Yp = Xp if row_tree is col_tree else np.ascontiguousarray(col_tree.points[col_tree.perm])
    owner = np.searchsorted(rcuts, r0, side="right") - 1
    partner = mirror_partner(Xp, Yp, r0, m, c0, n, kernel.symmetric)
    nl = r0.size
    twin_owner = np.full(nl, -1, np.int64)
    if partner is None:
        built = np.ones(nl, bool)
        computer = owner.copy()
    else:
        built = r0 <= c0
        bp = np.flatnonzero(built)
        q = partner[bp]
        has_twin = q != bp
        twin_owner[bp[has_twin]] = owner[q[has_twin]]
        computer = np.full(nl, -1, np.int64)
        here = (twin_owner[bp] < 0) | (twin_owner[bp] == owner[bp])
        computer[bp[here]] = owner[bp[here]]
        load = np.bincount(owner[bp[here]], weights=cost[bp[here]], minlength=P)
        cross = bp[~here]
        for p in cross[np.argsort(-cost[cross], kind="stable")].tolist():
            a, b = int(owner[p]), int(twin_owner[p])
            t = a if load[a] <= load[b] else b
            computer[p] = t
            load[t] += cost[p]
    mine = built & (computer == rank)

    def sends(src, dst):
        """Leaves computed on ``src`` that ``dst`` needs: stored ones first, then twins."""
        base = built & (computer == src)
        return np.concatenate([np.flatnonzero(base & (owner == dst)), np.flatnonzero(base & (twin_owner == dst))])

    return {
        "P": P, "rank": rank, "bt": bt, "r0": r0, "m": m, "c0": c0, "n": n, "admissible": admissible, "cost": cost,
        "rcuts": rcuts, "ccuts": ccuts, "Xp": Xp, "Yp": Yp, "owner": owner, "partner": partner, "built": built,
        "dtype": dtype, "params": params, "gx": twin_groups(Xp), "gy": twin_groups(Yp),
        "keep": np.flatnonzero(mine & (owner == rank)),  # computed and stored here
        "away": np.flatnonzero(mine & (owner != rank)),  # computed here, stored elsewhere
        "mirrored": np.flatnonzero((owner == rank) & ~built),  # stored here as transposes
        "send": [np.zeros(0, np.int64) if d == rank else sends(rank, d) for d in range(P)],
        "recv": [np.zeros(0, np.int64) if s == rank else sends(s, rank) for s in range(P)],
    }


def _build_computed(plan, kernel, progress):
    """Run the compiled builder on the leaves this rank computes (local).

    Returns ``{"keep": (chunks, results), "away": (chunks, results), "evals": int}``.
    """
    r0, m, c0, n, adm, cost = (plan[k] for k in ("r0", "m", "c0", "n", "admissible", "cost"))
    Xp, Yp, tol = plan["Xp"], plan["Yp"], plan["params"]["tol"]
    build_chunk, param = compiled_for(kernel.entry).build_chunk, float(kernel.param)
    proto = np.zeros(0, plan["dtype"])
    threads = _threads.get_num_threads()
    out = {"evals": 0}
    total = int(plan["keep"].size + plan["away"].size)
    with progress_bar(total=total, desc=f"hmat build (rank {plan['rank']})", unit="leaf",
                      disable=not (progress and plan["rank"] == 0)) as bar:
        for key in ("keep", "away"):
            ids = plan[key]
            chunks = [ids[a:b] for a, b in cost_chunks(cost[ids], threads)]

            def work(idx):
                res = build_chunk(param, Xp, Yp, r0[idx], m[idx], c0[idx], n[idx], adm[idx], tol, proto, 0,
                                  plan["gx"], plan["gy"])
                bar.update(int(idx.size))
                return res

            res = list(_threads.map_first_here(work, chunks, threads, jitted=build_chunk))
            out[key] = (chunks, res)
            out["evals"] += sum(int(x[5]) for x in res)
    return out


def _locate(plan, built):
    """:class:`hmat._packed.BuiltLeaves` of the leaves computed here (not sealed: the
    received twins are added in :func:`_assemble`)."""
    located = BuiltLeaves(plan["r0"].size)
    for key in ("keep", "away"):
        for idx, (kd, rk, off, buf, pos, _) in zip(*built[key]):
            located.add(idx, kd, rk, off, buf)
    return located


def _split_table(table):
    """A received leaf table ``[kind..., rank...]`` (int64, shape (2q,)) -> ``(kind, rank)``."""
    q = table.size // 2
    return table[:q], table[q:]


def _exchange_alloc(plan, built):
    """Send buffers (leaf tables ``[kind..., rank...]`` and data, packed per destination) and
    leaf-table receive buffers (local)."""
    located = _locate(plan, built)
    m, n, dtype = plan["m"], plan["n"], plan["dtype"]
    send_table, send_data = [], []
    for ids in plan["send"]:
        kd, rk = located.kind[ids], located.rank[ids]
        sz = packed_entries(m[ids], n[ids], kd, rk)
        data = np.empty(int(sz.sum()), dtype)
        o = 0
        for p, s in zip(ids.tolist(), sz.tolist()):
            data[o:o + s] = located.data(p, s)
            o += s
        send_table.append(np.concatenate([kd, rk]))
        send_data.append(data)
    return {"send_table": send_table, "send_data": send_data,
            "recv_table": [np.empty(2 * ids.size, np.int64) for ids in plan["recv"]]}


def _alltoallv(comm, send, recv):
    """Personalised exchange of 1-D arrays: ``send[d]`` to rank ``d``, ``recv[s]`` from rank ``s``."""
    dtype = send[0].dtype if send else recv[0].dtype
    scount = np.array([a.size for a in send], np.int64)
    rcount = np.array([a.size for a in recv], np.int64)
    sbuf = np.concatenate(send) if scount.sum() else np.zeros(1, dtype)
    rbuf = np.empty(max(1, int(rcount.sum())), dtype)
    sdisp = np.concatenate([[0], np.cumsum(scount)[:-1]])
    rdisp = np.concatenate([[0], np.cumsum(rcount)[:-1]])
    comm.Alltoallv([sbuf, (scount, sdisp)], [rbuf, (rcount, rdisp)])
    return [rbuf[a:a + c] for a, c in zip(rdisp.tolist(), rcount.tolist())]


def _exchange(comm, plan, built, recv):
    """Send each computed leaf to the rank that stores it or its transpose (collective).

    Volume: the data of the leaf pairs that straddle two ranks' rows, once, at build time.
    """
    recv["recv_table"] = _alltoallv(comm, recv["send_table"], recv["recv_table"])
    m, n = plan["m"], plan["n"]
    sizes = [int(packed_entries(m[ids], n[ids], *_split_table(tab)).sum())
             for ids, tab in zip(plan["recv"], recv["recv_table"])]
    recv["recv_data"] = _alltoallv(comm, recv.pop("send_data"), [np.empty(s, plan["dtype"]) for s in sizes])
    recv.pop("send_table")


def _assemble(plan, built, recv):
    """This rank's segments (local): the arguments of :meth:`DistributedHMatrix._create`."""
    r0, m, c0, n, owner, partner = (plan[k] for k in ("r0", "m", "c0", "n", "owner", "partner"))
    rank, dtype = plan["rank"], plan["dtype"]
    lo = int(plan["rcuts"][rank])
    threads = _threads.get_num_threads()
    segments, ids = [], []

    def seg(idx, kd, rk, off, buf):
        return Segment(r0[idx] - lo, m[idx].copy(), c0[idx].copy(), n[idx].copy(), kd, rk, off, buf)

    for idx, (kd, rk, off, buf, pos, _) in zip(*built["keep"]):
        segments.append(seg(idx, kd, rk, off, buf[:pos]))
        ids.append(idx)
    located = _locate(plan, built)
    for src_ids, tab, data in zip(plan["recv"], recv["recv_table"], recv["recv_data"]):
        kd, rk = _split_table(tab)
        sz = packed_entries(m[src_ids], n[src_ids], kd, rk)
        off = np.concatenate([[0], np.cumsum(sz)[:-1]]).astype(np.int64)
        stored = owner[src_ids] == rank  # a prefix (see _plan.sends)
        k = int(stored.sum())
        if k:
            end = int(sz[:k].sum())
            segments.append(seg(src_ids[:k], kd[:k].copy(), rk[:k].copy(), off[:k].copy(),
                                data[:end].copy() if k < src_ids.size else data))
            ids.append(src_ids[:k])
        twins = src_ids[k:]
        located.add(twins, kd[k:], rk[k:], off[k:], data)
    mirrored = plan["mirrored"]
    if mirrored.size:
        located.seal()
        cost = plan["cost"]
        chunks = [mirrored[a:b] for a, b in cost_chunks(cost[mirrored], threads)]

        def mirror(q):
            p = partner[q]
            buf, off, end = located.mirrors(np.empty(0, dtype), 0, m[q], n[q], p)
            return seg(q, located.kind[p], located.rank[p], off, buf[:end])

        segments += _threads.map_ordered(mirror, chunks, threads)
        ids += chunks
    if dtype.itemsize * (2 if dtype.kind == "f" else 1) <= 8:  # float32, complex64: like the serial build
        for sg in segments:
            if not np.isfinite(sg.buf).all():
                raise ValueError(f"kernel values overflow dtype {dtype} (beyond {np.finfo(dtype).max:.3g}); "
                                 f"use a double-precision dtype or rescale the kernel")
    return (plan["bt"], plan["rcuts"], plan["ccuts"], Packed(segments), ids, dtype, plan["params"],
            built["evals"], plan["Xp"], plan["Yp"])


# ---------------------------------------------------------------------- the operator

class DistributedHMatrix:
    """An H-matrix whose block rows are spread over the ranks of an MPI communicator.

    Create it with :func:`from_kernel` or :func:`load`. Vectors are distributed as one
    contiguous slice per rank of the permuted index (see the module docstring): a
    forward product takes the local slice of ``x`` over ``col_slice`` and returns the local
    slice of ``y`` over ``row_slice``.

    Attributes
    ----------
    comm : mpi4py.MPI.Intracomm
    shape : tuple of int
        Global shape ``(M, N)``.
    dtype : numpy.dtype
    row_cuts, col_cuts : ndarray, shape (P + 1,), int64
        Rank ``r`` owns permuted rows ``row_cuts[r]:row_cuts[r + 1]`` (columns likewise).
    row_perm, col_perm : ndarray, int64
        ``row_perm[p]`` is the original index at permuted position ``p``.
    tol : float
        The tolerance of the build.
    error_estimate : float or None
        Sampled relative entry error (as :attr:`hmat.HBlock.error_estimate`).
    kernel_evaluations : int
        Kernel evaluations summed over ranks (twins built on two ranks count twice).
    last_comm_words : int
        Entries this rank received in its last product (the communication volume).
    build_comm_bytes : int
        Bytes this rank received during the build (leaves computed by another rank).
    """

    @classmethod
    def _create(cls, comm, bt, rcuts, ccuts, packed, ids, dtype, params, evals, Xp, Yp):
        self = cls.__new__(cls)
        self.comm = comm
        self._bt = bt
        self.shape = (int(bt.row_tree.n), int(bt.col_tree.n))
        self.dtype = np.dtype(dtype)
        self.row_cuts, self.col_cuts = np.asarray(rcuts, np.int64), np.asarray(ccuts, np.int64)
        self.row_perm, self.col_perm = bt.row_tree.perm, bt.col_tree.perm
        self._packed = packed
        self._ids = [np.asarray(i, np.int64) for i in ids]
        self._params = dict(params)
        self.tol = params["tol"]
        self.error_estimate = None
        self._evals_local = int(evals)
        self.kernel_evaluations = int(comm.allreduce(int(evals)))
        self._Xp, self._Yp = Xp, Yp
        self._adjoint = False
        self._source = self
        self.last_comm_words = 0
        self.build_comm_bytes = 0
        return self

    # ------------------------------------------------------------------ layout (local)
    @property
    def nranks(self) -> int:
        return self.comm.Get_size()

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def row_slice(self) -> slice:
        """This rank's permuted output rows (local)."""
        r = self.rank
        return slice(int(self.row_cuts[r]), int(self.row_cuts[r + 1]))

    @property
    def col_slice(self) -> slice:
        """This rank's permuted input entries (local)."""
        r = self.rank
        return slice(int(self.col_cuts[r]), int(self.col_cuts[r + 1]))

    @property
    def local_rows(self):
        """Original indices of this rank's output rows, int64 array (local)."""
        return self.row_perm[self.row_slice]

    @property
    def local_cols(self):
        """Original indices of this rank's input entries, int64 array (local)."""
        return self.col_perm[self.col_slice]

    @property
    def local_nbytes(self) -> int:
        """Bytes of the leaves stored on this rank (local)."""
        return int(self._source._packed.nbytes)

    @property
    def local_nleaves(self) -> int:
        """Leaves stored on this rank (local)."""
        return int(self._source._packed.nleaves)

    @property
    def H(self):
        """The adjoint ``A^H``: a view sharing this rank's leaves (no communication)."""
        out = DistributedHMatrix.__new__(DistributedHMatrix)
        out.__dict__.update(self.__dict__)
        out._adjoint = not self._adjoint
        out.shape = self.shape[::-1]
        out.row_cuts, out.col_cuts = self.col_cuts, self.row_cuts
        out.row_perm, out.col_perm = self.col_perm, self.row_perm
        return out

    def adjoint(self):
        """Same as :attr:`H`."""
        return self.H

    # ------------------------------------------------------------------ products
    def _check_local(self, X, n_local, name):
        X = np.asarray(X)
        if X.ndim not in (1, 2) or X.shape[0] != n_local:
            raise ValueError(f"{name} must have shape ({n_local},) or ({n_local}, k) on rank {self.rank}, got {X.shape}")
        if X.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or Inf on rank {self.rank}")
        return X

    def _agree_operand(self, X, n_local, name):
        """Check this rank's operand; one allgather tells every rank whether all agree."""
        err, sig = None, None
        try:
            X = self._check_local(X, n_local, name)
            sig = (X.ndim, X.shape[1] if X.ndim == 2 else 1, X.dtype.str)
        except (ValueError, TypeError) as exc:
            err = (type(exc).__name__, str(exc))
        allv = self.comm.allgather((err, sig))
        bad = [(r, e) for r, (e, _) in enumerate(allv) if e is not None]
        if bad:
            r, (kind, text) = bad[0]
            cls = TypeError if kind == "TypeError" else ValueError
            raise cls(text if r == self.rank else f"rank {r} failed: {text}")
        if len({g for _, g in allv}) != 1:
            raise ValueError(f"{name} differs in ndim, number of columns or dtype across ranks: {[g for _, g in allv]}")
        out_dtype = np.result_type(X.dtype, self.dtype)
        if out_dtype not in SUPPORTED_DTYPES:
            out_dtype = np.result_type(out_dtype, np.float64)
        return np.ascontiguousarray(X, dtype=out_dtype)

    def _forward(self, X):
        """Source operator times local slice X (source column cuts) -> local rows."""
        src = self._source
        cc = src.col_cuts
        k = 1 if X.ndim == 1 else X.shape[1]
        full = np.empty((src.shape[1],) + X.shape[1:], X.dtype)
        counts = np.diff(cc) * k
        self.comm.Allgatherv(X, [full, (counts, cc[:-1] * k)])
        self.last_comm_words = int(src.shape[1] - X.shape[0]) * k
        rows = int(src.row_cuts[self.rank + 1] - src.row_cuts[self.rank])
        return src._packed.apply(full, rows, False)

    def _backward(self, X):
        """Source operator's adjoint times local slice X (source row cuts) -> local columns."""
        src = self._source
        MPI = require_mpi()
        cc = src.col_cuts
        k = 1 if X.ndim == 1 else X.shape[1]
        full = np.ascontiguousarray(src._packed.apply(X, src.shape[1], True), dtype=X.dtype)
        out = np.empty((int(cc[self.rank + 1] - cc[self.rank]),) + X.shape[1:], X.dtype)
        self.comm.Reduce_scatter(full, out, list(np.diff(cc) * k), op=MPI.SUM)
        self.last_comm_words = int(src.shape[1] - out.shape[0]) * k
        return out

    def matvec(self, x):
        """``A @ x`` on distributed vectors.

        Parameters
        ----------
        x : ndarray, shape (n_local,) or (n_local, 1)
            This rank's slice ``x[col_slice]`` in permuted order; any supported dtype.

        Returns
        -------
        ndarray, shape (m_local,)
            This rank's slice ``y[row_slice]``, dtype ``result_type(A.dtype, x.dtype)``.
        """
        return self.matmat(x)

    def matmat(self, X):
        """``A @ X`` for a distributed block of vectors: local (n_local, k) -> local (m_local, k)."""
        X = self._agree_operand(X, self.col_slice.stop - self.col_slice.start, "x")
        return self._backward(X) if self._adjoint else self._forward(X)

    def rmatvec(self, x):
        """``A^H @ x``: local slice over ``row_slice`` -> local slice over ``col_slice``."""
        return self.H.matvec(x)

    def rmatmat(self, X):
        """``A^H @ X`` for a distributed block of vectors."""
        return self.H.matmat(X)

    # ------------------------------------------------------------------ global vectors
    def distribute(self, x, space="cols"):
        """This rank's slice of a full vector given in original order (local).

        Parameters
        ----------
        x : array_like, shape (N,) or (N, k)
            The same full vector on every rank, original index order.
        space : {"cols", "rows"}
            Slice for the input (``cols``) or the output (``rows``) side.
        """
        check_choice(space, "space", {"cols", "rows"})
        perm, sl = (self.col_perm, self.col_slice) if space == "cols" else (self.row_perm, self.row_slice)
        x = np.asarray(x)
        if x.ndim not in (1, 2) or x.shape[0] != perm.size:
            raise ValueError(f"x must have shape ({perm.size},) or ({perm.size}, k), got {x.shape}")
        return np.ascontiguousarray(x[perm[sl]])

    def collect(self, y, space="rows"):
        """The full vector in original order, on every rank, from each rank's slice."""
        check_choice(space, "space", {"cols", "rows"})
        perm, cuts = (self.row_perm, self.row_cuts) if space == "rows" else (self.col_perm, self.col_cuts)
        y = _agree(self.comm, self._check_local, y, int(cuts[self.rank + 1] - cuts[self.rank]), "y")
        parts = self.comm.allgather(np.ascontiguousarray(y))
        return permuted_apply(lambda _: np.concatenate(parts, axis=0), None, None, perm)

    def __matmul__(self, x):
        """``A @ x`` for a full vector/matrix in original order, given and returned on every rank."""
        return self.collect(self.matmat(self.distribute(x, "cols")), "rows")

    # ------------------------------------------------------------------ pylops-mpi
    def distributed_array(self, local=None, space="cols"):
        """A :class:`pylops_mpi.DistributedArray` laid out like this operator's ``space``.

        Parameters
        ----------
        local : ndarray, shape (n_local,), optional
            This rank's slice (zeros when omitted).
        space : {"cols", "rows"}
        """
        pm = _require_pylops_mpi()
        check_choice(space, "space", {"cols", "rows"})
        cuts = self.col_cuts if space == "cols" else self.row_cuts
        sizes = [int(s) for s in np.diff(cuts)]
        out = pm.DistributedArray(global_shape=int(cuts[-1]), base_comm=self.comm, partition=pm.Partition.SCATTER,
                                  local_shapes=[(s,) for s in sizes], dtype=self.dtype)
        out[:] = 0 if local is None else np.asarray(local)
        return out

    def to_pylops(self):
        """This operator as a :class:`pylops_mpi.MPILinearOperator` (for ``pylops_mpi.cg``/``cgls``).

        Its vectors are :class:`pylops_mpi.DistributedArray` with the layout of
        :meth:`distributed_array` (create them with that method).
        """
        return _pylops_operator(self)

    # ------------------------------------------------------------------ statistics
    def memory(self):
        """Stored bytes: ``{"local", "per_rank", "total", "max_over_mean"}`` (collective)."""
        per = self.comm.allgather(self.local_nbytes)
        mean = sum(per) / len(per)
        return {"local": self.local_nbytes, "per_rank": per, "total": int(sum(per)),
                "max_over_mean": (max(per) / mean) if mean > 0 else 1.0}

    def stats(self):
        """Structure and storage statistics reduced over ranks (collective).

        Returns
        -------
        dict
            The keys of :meth:`hmat.HBlock.stats` (except ``depth``) plus ``n_ranks``,
            ``rows_per_rank``, ``leaves_per_rank``, ``nbytes_per_rank`` and
            ``load_balance`` (max / mean stored bytes per rank).
        """
        segs = self._source._packed.segments
        ranks = np.concatenate([s.rank for s in segs] or [np.zeros(0, np.int64)])
        dense = np.concatenate([s.is_dense() for s in segs] or [np.zeros(0, bool)])
        lr = ranks[~dense]
        loc = (int(ranks.size), int(dense.sum()), int(lr.size), int(lr.min()) if lr.size else 1 << 62,
               int(lr.max()) if lr.size else -1, int(lr.sum()), np.bincount(lr).tolist() if lr.size else [])
        allv = self.comm.allgather(loc)
        mem = self.memory()
        hist_len = max(len(a[6]) for a in allv)
        hist = np.zeros(hist_len, np.int64)
        for a in allv:
            hist[:len(a[6])] += np.asarray(a[6], np.int64)
        nlr = sum(a[2] for a in allv)
        entries = mem["total"] // self.dtype.itemsize
        dense = self.shape[0] * self.shape[1] * self.dtype.itemsize
        return {
            "shape": self.shape,
            "dtype": str(self.dtype),
            "n_ranks": self.nranks,
            "rows_per_rank": np.diff(self.row_cuts).tolist(),
            "leaves_per_rank": [a[0] for a in allv],
            "n_leaves": sum(a[0] for a in allv),
            "n_dense": sum(a[1] for a in allv),
            "n_lowrank": nlr,
            "rank_min": min(a[3] for a in allv) if nlr else 0,
            "rank_mean": sum(a[5] for a in allv) / nlr if nlr else 0.0,
            "rank_max": max(a[4] for a in allv) if nlr else 0,
            "rank_histogram": hist.tolist(),
            "stored_entries": int(entries),
            "nbytes": mem["total"],
            "nbytes_per_rank": mem["per_rank"],
            "load_balance": mem["max_over_mean"],
            "dense_nbytes": dense,
            "compression_ratio": dense / mem["total"] if mem["total"] else float("inf"),
            "kernel_evaluations": self.kernel_evaluations,
            "error_estimate": self.error_estimate,
        }

    def _sampled_error_local(self, kernel, n_samples, seed):
        """This rank's ``(||A_S||, ||A_S - H_S||)`` on the serial build's random entries (local)."""
        src = self._source
        rng = np.random.default_rng(seed)
        M, N = src.shape
        pi = rng.integers(0, M, n_samples).astype(np.int64)
        pj = rng.integers(0, N, n_samples).astype(np.int64)
        sl = src.row_slice
        sel = (pi >= sl.start) & (pi < sl.stop)
        pi, pj = pi[sel], pj[sel]
        approx = np.zeros(pi.size, dtype=src.dtype)
        for s in src._packed.segments:
            sample_entries(*s.table(), s.buf, pi - sl.start, pj, approx)
        true = np.empty(pi.size, dtype=np.result_type(src.dtype, kernel.dtype))
        compiled_for(kernel.entry).eval_pairs(float(kernel.param), src._Xp, src._Yp, pi, pj, true)
        return np.array([np.linalg.norm(true), np.linalg.norm(true - approx)], np.float64)

    def _combine_error(self, local):
        """Relative sampled error from every rank's partial norms (collective, scale-safe)."""
        parts = np.array(self.comm.allgather(local)).reshape(-1, 2)
        den, num = np.linalg.norm(parts[:, 0]), np.linalg.norm(parts[:, 1])
        return float(num / den) if den > 0 else float(num)

    def __repr__(self):
        return (f"<{self.shape[0]}x{self.shape[1]} DistributedHMatrix dtype={self.dtype} rank {self.rank}/{self.nranks}"
                f" rows {self.row_slice.start}:{self.row_slice.stop} leaves={self.local_nleaves}"
                f" {self.local_nbytes / 2**20:.2f} MiB here{' (adjoint)' if self._adjoint else ''}>")

    # ------------------------------------------------------------------ gather
    def gather(self, root=None):
        """The whole operator as an ordinary :class:`~hmat.HBlock` (for small problems).

        Parameters
        ----------
        root : int, optional
            Rank that receives it (others get None); default: every rank.

        Returns
        -------
        HBlock or None
            Equal to the single-process build (same leaves, same permutations).
        """
        src = self._source
        loc = [(ids, s.kind, s.rank, s.buf) for ids, s in zip(src._ids, src._packed.segments)]
        parts = self.comm.allgather(loc) if root is None else self.comm.gather(loc, root=root)
        if parts is None:
            return None
        bt = src._bt
        r0, m, c0, n, _ = bt.leaf_arrays()
        nl = r0.size
        kinds = np.full(nl, -1, np.int64)
        ranks = np.zeros(nl, np.int64)
        where = [None] * nl
        for part in parts:
            for ids, kd, rk, buf in part:
                kinds[ids], ranks[ids] = kd, rk
                sz = packed_entries(m[ids], n[ids], kd, rk)
                start = np.cumsum(sz) - sz
                for t, q in enumerate(ids):
                    where[q] = (buf, int(start[t]), int(sz[t]))
        if (kinds == -1).any():  # pragma: no cover - guarded by the build
            raise RuntimeError("gather: leaves missing")
        sizes = packed_entries(m, n, kinds, ranks)
        off = np.zeros(nl, np.int64)
        np.cumsum(sizes[:-1], out=off[1:])
        data = np.empty(int(sizes.sum()), src.dtype)
        for q in range(nl):
            b, o, s = where[q]
            data[off[q]:off[q] + s] = b[o:o + s]
        packed = Packed([Segment(r0.copy(), m.copy(), c0.copy(), n.copy(), kinds, ranks, off, data)])
        info = BuildInfo(tol=src.tol, kernel_evaluations=src.kernel_evaluations, error_estimate=src.error_estimate)
        H = packed_root(bt.partition(), packed, src.dtype, info)
        return H.H if self._adjoint else H

    # ------------------------------------------------------------------ save
    def save(self, path):
        """Write one file per rank plus ``manifest.json`` into directory ``path`` (collective).

        Each rank writes ``rank<r>.npz`` atomically (temp file + rename), then rank 0 writes
        ``common.npz`` (points) and, last, the manifest with every file's SHA-256: a
        directory without a complete manifest is never loadable, and :func:`load` checks
        every file against it.
        """
        if self._adjoint:
            raise ValueError("save the operator itself, not its adjoint view")
        path = os.fspath(path)
        comm = self.comm
        _agree(comm, lambda: os.makedirs(path, exist_ok=True) if comm.Get_rank() == 0 else None)
        name = f"rank{self.rank:05d}.npz"
        segs = self._packed.segments
        leaf_ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
        # the file's rank code: -1 for a dense leaf; factors row-major (Segment.file_buf)
        ranks = np.concatenate([np.where(s.is_dense(), -1, s.rank) for s in segs]) if segs else np.zeros(0, np.int64)
        data = np.concatenate([s.file_buf() for s in segs]) if segs else np.zeros(0, self.dtype)
        digest = _agree(comm, _write_npz, os.path.join(path, name), {
            "magic": np.array(_MAGIC), "leaf_ids": leaf_ids, "ranks": ranks, "data": data,
            "seg_lens": np.array([s.r0.size for s in segs], np.int64),
        })
        digests = comm.gather((name, digest), root=0)

        def finish():
            if comm.Get_rank() != 0:
                return
            common = "common.npz"
            arrays = {"col_points": self._bt.col_tree.points}
            if self._bt.row_tree is not self._bt.col_tree:
                arrays["row_points"] = self._bt.row_tree.points
            cdig = _write_npz(os.path.join(path, common), arrays)
            manifest = {
                "magic": _MAGIC, "version": FORMAT_VERSION, "dtype": str(self.dtype), "shape": list(self.shape),
                "n_ranks": self.nranks, "row_cuts": self.row_cuts.tolist(), "col_cuts": self.col_cuts.tolist(),
                "params": self._params, "error_estimate": self.error_estimate,
                "kernel_evaluations": self.kernel_evaluations,
                "common": [common, cdig], "ranks": [list(d) for d in digests],
            }
            _write_atomic(os.path.join(path, "manifest.json"), json.dumps(manifest, indent=1).encode())

        _agree(comm, finish)


def _write_atomic(path, payload):
    from .io import write_atomic

    write_atomic(path, lambda f: f.write(payload))


def _write_npz(path, arrays):
    import io

    bio = io.BytesIO()
    np.savez(bio, **arrays)
    payload = bio.getvalue()
    _write_atomic(path, payload)
    return hashlib.sha256(payload).hexdigest()


# ---------------------------------------------------------------------- load

class _Corrupt(Exception):
    pass


def _need(cond, msg):
    if not cond:
        raise _Corrupt(msg)


def _read_npz(path, digest):
    with open(path, "rb") as f:
        payload = f.read()
    _need(hashlib.sha256(payload).hexdigest() == digest, f"{os.path.basename(path)} does not match its manifest checksum")
    import io

    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise _Corrupt(f"unreadable {os.path.basename(path)}: {exc}") from None


def load(path, comm=None):
    """Read a :class:`DistributedHMatrix` written by :meth:`DistributedHMatrix.save` (collective).

    Needs as many ranks as wrote it. Every file is checked against the manifest's
    checksum, the trees are rebuilt from the stored points and every rank's leaf table is
    validated against them.

    Raises
    ------
    ValueError
        On every rank, when any rank finds a file missing, truncated, corrupted or foreign,
        or the number of ranks differs (the message says what is wrong).
    """
    comm = _comm(comm)
    path = os.fspath(path)

    def read():
        try:
            return _load_local(comm, path)
        except _Corrupt as exc:
            raise ValueError(f"corrupted distributed hmat directory {path!r}: {exc}") from None
        except FileNotFoundError as exc:
            raise ValueError(f"missing file in distributed hmat directory {path!r}: {exc.filename}") from None

    args = _agree(comm, read)
    H = DistributedHMatrix._create(comm, *args[:-1])
    H.error_estimate = args[-1]
    return H


def _load_local(comm, path):
    try:
        with open(os.path.join(path, "manifest.json"), "rb") as f:
            man = json.loads(f.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"manifest.json is not valid JSON: {exc}") from None
    _need(isinstance(man, dict) and man.get("magic") == _MAGIC, "not a distributed hmat directory")
    _need(man.get("version") == FORMAT_VERSION, f"unsupported format version {man.get('version')!r}")
    P = comm.Get_size()
    _need(man.get("n_ranks") == P, f"written by {man.get('n_ranks')} ranks, loaded with {P}")
    try:
        dtype = np.dtype(man["dtype"])
        params = man["params"]
        shape = tuple(int(s) for s in man["shape"])
        rcuts = np.asarray(man["row_cuts"], np.int64)
        ccuts = np.asarray(man["col_cuts"], np.int64)
        cname, cdig = man["common"]
        files = dict((str(a), str(b)) for a, b in man["ranks"])
        evals = int(man["kernel_evaluations"])
        err = man["error_estimate"]
        err = None if err is None else float(err)
        tol = check_tol(params["tol"])
        adm = _admissibility(params["admissibility"], params["eta"])
        ls = check_positive(params["leaf_size"], "leaf_size", integer=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise _Corrupt(f"bad manifest entry: {exc}") from None
    _need(dtype in SUPPORTED_DTYPES, f"unsupported dtype {dtype}")
    _need(str(cname) == "common.npz", "bad common file name")
    common = _read_npz(os.path.join(path, "common.npz"), str(cdig))
    _need("col_points" in common, "common.npz lacks col_points")
    try:
        col_tree = ClusterTree(common["col_points"], leaf_size=ls, split=params["split"])
        row_tree = col_tree if "row_points" not in common else ClusterTree(common["row_points"], leaf_size=ls, split=params["split"])
        bt = BlockTree(row_tree, col_tree, adm)
    except (TypeError, ValueError) as exc:
        raise _Corrupt(f"cannot rebuild the trees: {exc}") from None
    _need(shape == (row_tree.n, col_tree.n), f"shape {shape} differs from the stored points")
    for name, cuts, size in (("row_cuts", rcuts, shape[0]), ("col_cuts", ccuts, shape[1])):
        _need(cuts.shape == (P + 1,) and cuts[0] == 0 and cuts[-1] == size and bool((np.diff(cuts) >= 0).all()), f"bad {name}")
    r = comm.Get_rank()
    name = f"rank{r:05d}.npz"
    _need(name in files, f"manifest lists no file for rank {r}")
    f = _read_npz(os.path.join(path, name), files[name])
    for key in ("magic", "leaf_ids", "ranks", "data", "seg_lens"):
        _need(key in f, f"{name} lacks {key!r}")
    _need(str(f["magic"]) == _MAGIC, f"{name} is not a distributed hmat rank file")
    ids, ranks, data, seg_lens = f["leaf_ids"], f["ranks"], f["data"], f["seg_lens"]
    _need(ids.dtype == np.int64 and ranks.dtype == np.int64 and seg_lens.dtype == np.int64, f"{name}: bad table dtypes")
    _need(ids.ndim == 1 and ranks.shape == ids.shape and seg_lens.ndim == 1, f"{name}: bad table shapes")
    _need(data.dtype == dtype and data.ndim == 1, f"{name}: data has the wrong dtype or shape")
    _need(bool(np.isfinite(data).all()), f"{name}: data contains NaN or Inf")
    r0, m, c0, n, _ = bt.leaf_arrays()
    lo, hi = int(rcuts[r]), int(rcuts[r + 1])
    expect = np.flatnonzero((r0 >= lo) & (r0 < hi))
    _need(np.array_equal(np.sort(ids), expect), f"{name}: leaves differ from this rank's block rows")
    _need(bool((seg_lens >= 0).all()) and int(seg_lens.sum()) == ids.size, f"{name}: bad segment lengths")
    mi, ni = m[ids], n[ids]
    _need(bool(((ranks == -1) | ((ranks >= 0) & (ranks * (mi + ni) < mi * ni + mi + ni))).all()), f"{name}: bad leaf ranks")
    # the file's rank codes a dense leaf as -1: map it to LeafKind once
    kinds = np.where(ranks == -1, int(LeafKind.DENSE), int(LeafKind.LOWRANK))
    ranks = np.maximum(ranks, 0)
    sizes = packed_entries(mi, ni, kinds, ranks)
    _need(int(sizes.sum()) == data.size, f"{name}: data size does not match the leaf table")
    segments, id_list = [], []
    a, pos = 0, 0
    for L in seg_lens.tolist():
        sl = slice(a, a + L)
        off = np.zeros(L, np.int64)
        if L > 1:
            np.cumsum(sizes[sl][:-1], out=off[1:])
        total = int(sizes[sl].sum())
        q = ids[sl]
        segments.append(Segment.from_file(r0[q] - lo, m[q].copy(), c0[q].copy(), n[q].copy(), kinds[sl].copy(),
                                          ranks[sl].copy(), off, np.ascontiguousarray(data[pos:pos + total])))
        id_list.append(q.copy())
        a, pos = a + L, pos + total
    Xp = np.ascontiguousarray(row_tree.points[row_tree.perm])
    Yp = Xp if row_tree is col_tree else np.ascontiguousarray(col_tree.points[col_tree.perm])
    local_evals = evals if r == 0 else 0  # the summed count is kept on rank 0's share
    return (bt, rcuts, ccuts, Packed(segments), id_list, dtype, params | {"tol": tol}, local_evals, Xp, Yp, err)


# ---------------------------------------------------------------------- pylops-mpi adapter

def _pylops_operator(H):
    pm = _require_pylops_mpi()

    class HMatrixOperator(pm.MPILinearOperator):
        """:class:`DistributedHMatrix` as a pylops-mpi operator on DistributedArrays."""

        def __init__(self, H):
            self.hmat = H
            super().__init__(shape=H.shape, dtype=H.dtype, base_comm=H.comm)

        def _wrap(self, local, space):
            return self.hmat.distributed_array(local, space)

        def _matvec(self, x):
            return self._wrap(self.hmat.matvec(x.local_array), "rows")

        def _rmatvec(self, x):
            return self._wrap(self.hmat.rmatvec(x.local_array), "cols")

    return HMatrixOperator(H)


# ---------------------------------------------------------------------- demo

def demo(args):
    """``mpiexec -n P python -m hmat demo --mpi``: the sphere-1/r demo, distributed (collective).

    Prints, on rank 0, the serial demo's lines plus the stored bytes per rank.
    """
    import time

    import hmat

    from .__main__ import sampled_row_error
    from .points import sphere_points

    MPI = require_mpi()
    comm = MPI.COMM_WORLD
    root = comm.Get_rank() == 0

    def say(text):
        if root:
            print(text, flush=True)

    hmat.set_num_threads(args.threads if args.threads else local_threads(comm))
    kernel = hmat.kernels.Laplace(3)
    pts = sphere_points(args.n)
    say(f"sphere-1/r: N={args.n}, tol={args.tol}, eta={args.eta}, leaf_size={args.leaf_size}, "
        f"threads={hmat.get_num_threads()} per rank, ranks={comm.Get_size()}")
    t = time.perf_counter()
    from_kernel(kernel, sphere_points(256), comm=comm, tol=args.tol, leaf_size=32, n_samples=0)  # compile (cached on disk)
    say(f"  compile/warm-up      {time.perf_counter() - t:8.2f} s")
    comm.Barrier()
    t = time.perf_counter()
    H = from_kernel(kernel, pts, comm=comm, tol=args.tol, eta=args.eta, leaf_size=args.leaf_size, progress=not args.quiet)
    comm.Barrier()
    build = time.perf_counter() - t
    x = np.random.default_rng(0).random(args.n)
    xl = H.distribute(x)
    H.matvec(xl)
    reps = []
    for _ in range(3):
        comm.Barrier()
        t = time.perf_counter()
        H.matvec(xl)
        comm.Barrier()
        reps.append(time.perf_counter() - t)
    s = H.stats()
    err = sampled_row_error(H, kernel, pts, x)
    per = s["nbytes_per_rank"]
    say(f"  build                {build:8.2f} s")
    say(f"  stored               {s['nbytes'] / 1e6:8.1f} MB   (dense would be {s['dense_nbytes'] / 1e6:.0f} MB)")
    say(f"  stored per rank      {max(per) / 1e6:8.1f} MB   max ({', '.join(f'{b / 1e6:.1f}' for b in per)}; "
        f"max/mean {s['load_balance']:.2f})")
    say(f"  compression ratio    {s['compression_ratio']:8.1f}")
    say(f"  leaves               {s['n_leaves']:8d}   ({s['n_dense']} dense, {s['n_lowrank']} low-rank, "
        f"rank {s['rank_min']}..{s['rank_max']}, mean {s['rank_mean']:.1f})")
    say(f"  kernel evaluations   {s['kernel_evaluations']:8.3g}   ({s['kernel_evaluations'] / args.n**2:.3f} of N^2)")
    say(f"  matvec (best of 3)   {min(reps):8.4f} s   ({H.last_comm_words * H.dtype.itemsize / 1e6:.2f} MB received per rank)")
    say(f"  sampled error        {err:8.2e}   (50 rows vs direct summation)")
    say(f"  entry error estimate {H.error_estimate:8.2e}   (random entries)")
    if args.plot:
        say("  --plot is not available with --mpi (the block structure lives on several ranks)")
    return 0
