"""Builders: kernel + points -> HBlock (``from_kernel``), array -> HBlock (``from_dense``)."""

from __future__ import annotations

import math

import numpy as np

from . import _packed, _precision, _threads
from ._kernel_jit import compiled_for
from ._norms import fro, hypot_all, pow2_exponent
from ._packed import Packed, Segment, pack_leaves, pack_parts
from ._progress import progress_bar
from ._validate import check_dtype, check_finite_array, check_positive, check_tol
from .aca import ACA, twin_groups
from .admissibility import StrongAdmissibility, WeakAdmissibility
from .blocktree import BlockTree
from .cluster import ClusterTree
from .compressors import DenseSource, KernelSource, check_compressor, compress_block, compressor_name
from .dense import Dense, trusted_dense
from .hblock import HBlock, packed_root, packed_store
from .kernels import FunctionKernel, Kernel, as_kernel
from .lowrank import LowRank, trusted_lowrank
from .provenance import BuildInfo

__all__ = ["from_kernel", "from_dense"]


def _admissibility(admissibility, eta, default):
    eta = check_positive(eta, "eta")
    if admissibility is None:
        return StrongAdmissibility(eta) if default == "strong" else WeakAdmissibility()
    if isinstance(admissibility, str):
        if admissibility == "strong":
            return StrongAdmissibility(eta)
        if admissibility == "weak":
            return WeakAdmissibility()
        raise ValueError(f"unknown admissibility {admissibility!r}; use 'strong', 'weak' or a callable")
    if not callable(admissibility):
        raise TypeError("admissibility must be 'strong', 'weak' or a callable (row_node, col_node) -> bool")
    return admissibility


def from_kernel(
    kernel,
    points,
    *,
    targets=None,
    tol=1e-6,
    eta=2.0,
    leaf_size=64,
    admissibility=None,
    split="bbox",
    dtype=None,
    progress=False,
    n_samples=4096,
    seed=0,
    backend="numpy",
    compressor=None,
    precision="adaptive",
    symmetric=None,
    budget="block",
):
    """Build an H-matrix of ``K[i, j] = kernel(targets[i], points[j])`` without forming it.

    Parameters
    ----------
    kernel : Kernel, object with ``block(x, y)``, or vectorised callable ``f(x, y)``
        See :mod:`hmat.kernels`. Built-in kernels run the whole build in compiled code.
    points : array_like, shape (n, d)
        Column (source) points.
    targets : array_like, shape (m, d), optional
        Row (target) points; default ``points``.
    tol : float
        Blockwise relative Frobenius tolerance, 0 < tol < 1: each admissible block is
        approximated by ACA (at 0.1 tol, with residual checks on random rows and columns)
        and recompressed by QR + SVD to 0.9 tol; dense blocks are exact. When every block
        meets its tolerance, ``||K - H||_F <= tol ||K||_F`` holds globally. ACA's stopping
        rule is an estimate, so this is not certified: ``H.error_estimate`` measures it
        a posteriori on ``n_samples`` random entries. With adaptive precision the blocks
        are approximated to ``0.8 tol`` and the rounding of their single-precision parts
        is bounded by ``0.2 tol`` of each block (dense blocks: ``0.5 tol``), so the same
        blockwise tolerance holds with the rounding counted.
    eta : float
        Parameter of the default :class:`StrongAdmissibility`.
    leaf_size : int
    admissibility : "strong", "weak" or callable, optional
    split : {"bbox", "pca", "cardinality"}
        Cluster-tree splitting rule.
    dtype : dtype, optional
        Storage dtype (default ``kernel.dtype``).
    progress : bool
        Show a tqdm progress bar over the leaves.
    n_samples : int
        Random entries used for ``error_estimate`` (0 to skip).
    seed : int
        Seed of the error sampling.
    backend : {"numpy", "cupy"}
        ``"cupy"`` moves the result to the GPU (see :func:`hmat.to_cupy`); the build
        itself runs on the CPU.
    compressor : Compressor, optional
        Makes each admissible block low rank (see :mod:`hmat.compressors`): default
        ``ACA()`` (ACA + recompression, as described under ``tol``). With a built-in kernel
        and ``ACA()`` (recompressing, no rank cap) the whole build runs in compiled code;
        otherwise ``compressor.compress(source, rows, cols, tol)`` is called per admissible
        block, and a block it returns None for is stored exactly.
    precision : {"adaptive", "full"}
        ``"adaptive"`` (default, for float64 and complex128 with ``tol >= 1e-10``): the
        rank-1 components of a low-rank block whose rounding fits the block's rounding
        allowance (rigorous bound, the smallest components first), and dense blocks whose
        measured rounding fits, are stored in float32 (complex64); the operator keeps its
        dtype and accumulates in it. ``"full"``: everything in ``dtype``.
    symmetric : bool, optional
        Symmetric storage: only the leaves on or above the diagonal are stored, each
        mirrored leaf applied as its partner's transpose (``K^T = K``, complex kernels
        included, e.g. Helmholtz) in the same pass. ``None`` (default): for a compiled
        kernel declared symmetric (all built-in ones are) when ``targets`` is None;
        ``True``: also for any other kernel, which the caller asserts is symmetric
        (``k(x, y) = k(y, x)``); needs ``targets=None``. ``False``: every leaf stored.
    budget : {"block", "global"}
        ``"block"`` (default): ``tol`` relative to each block, as above. ``"global"``: ``tol``
        relative to ``||K||_F`` of the whole matrix, distributed over the blocks as
        :func:`from_dense` does: the blocks are built to half the blockwise tolerance, then
        the rank-1 components with the least norm per stored entry are dropped over all
        blocks while their energy fits ``(tol/2 ||H||_F)^2`` (far blocks, of small norm,
        become coarser). Not certified either (ACA and the components' orthogonality are
        estimates): ``error_estimate`` measures the result.

    Returns
    -------
    HBlock
        Acting in the original index order of ``targets`` (rows) and ``points`` (columns).
    """
    if dtype is not None and callable(kernel) and not hasattr(kernel, "block"):
        kernel = FunctionKernel(kernel, dtype=dtype)  # a plain function computes in dtype
    kernel = as_kernel(kernel)
    tol = check_tol(tol)
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"unknown backend {backend!r}; use 'numpy' or 'cupy'")
    leaf_size = check_positive(leaf_size, "leaf_size", integer=True)
    n_samples = check_positive(n_samples, "n_samples", integer=True, minimum=0)
    compressor = ACA(tol) if compressor is None else check_compressor(compressor)
    adm = _admissibility(admissibility, eta, "strong")
    if symmetric is not None and not isinstance(symmetric, bool):
        raise ValueError(f"symmetric must be None, True or False, got {symmetric!r}")
    if symmetric and targets is not None:
        raise ValueError("symmetric=True needs targets=None (one point set for rows and columns)")
    kdtype = check_dtype(getattr(kernel, "dtype", np.float64), "kernel.dtype")
    dtype = check_dtype(dtype if dtype is not None else kdtype)
    if kdtype.kind == "c" and dtype.kind != "c":
        raise TypeError(
            f"dtype {dtype} would drop the imaginary part of the complex kernel {kernel!r}; "
            f"use a complex dtype (complex64 or complex128)"
        )
    col_tree = ClusterTree(_point_array(points, "points"), leaf_size=leaf_size, split=split)
    row_tree = col_tree if targets is None else ClusterTree(
        _point_array(targets, "targets"), leaf_size=leaf_size, split=split
    )
    if isinstance(kernel, Kernel) and kernel.dim is not None:
        for name, t in (("points", col_tree), ("targets", row_tree)):
            if t.dim != kernel.dim:
                raise ValueError(f"{name} must have d = {kernel.dim} coordinates for {kernel!r}, got {t.dim}")
    if row_tree.dim != col_tree.dim:
        raise ValueError(f"targets and points differ in dimension ({row_tree.dim} vs {col_tree.dim})")
    if isinstance(kernel, Kernel):
        for name, t in (("points", col_tree), ("targets", row_tree)):
            big = float(np.max(np.abs(t.points)))
            if big > 1e150:
                raise ValueError(
                    f"{name} has coordinates of magnitude {big:.3g} > 1e150: the built-in kernels' "
                    f"squared distances would overflow; rescale the points (and the kernel parameter)"
                )
    bt = BlockTree(row_tree, col_tree, adm)
    Xp = np.ascontiguousarray(row_tree.points[row_tree.perm])
    Yp = np.ascontiguousarray(col_tree.points[col_tree.perm])
    r0, m, c0, n, admissible = bt.leaf_arrays()
    if budget not in _precision.BUDGETS:
        raise ValueError(f"budget must be one of {_precision.BUDGETS}, got {budget!r}")
    compiled = isinstance(kernel, Kernel) and type(compressor) is ACA and compressor.recompress \
        and compressor.rank is None
    adaptive = _precision.adaptive_for(precision, dtype, tol)
    btol = tol * (1 - _precision.ROUNDING_SHARE) if adaptive else tol  # the rest is for rounding
    if budget == "global":
        btol *= 0.5  # blockwise half; the other half dropped globally below
    if compiled:
        packed, evals = _build_compiled(kernel, Xp, Yp, r0, m, c0, n, admissible, btol, dtype, progress, symmetric)
    else:
        if symmetric is None:  # a compiled kernel declared symmetric, on one point set
            symmetric = targets is None and isinstance(kernel, Kernel) and bool(kernel.symmetric)
        partner = _packed.partner_index(r0, m, c0, n) if symmetric else None
        packed, evals = _build_python(kernel, Xp, Yp, r0, m, c0, n, admissible, btol, dtype, progress, compressor,
                                      partner)
    if budget == "global":
        packed = _precision.global_truncate(packed, btol)
    if adaptive:
        packed = _precision.lower_precision(packed, _precision.ROUNDING_SHARE * tol, 0.5 * tol)
    info = BuildInfo(tol=tol, kernel_evaluations=evals, compressor=compressor_name(compressor))
    H = packed_root(bt.partition(), packed, dtype, info)
    if n_samples:
        est = _sampled_error(H, kernel, Xp, Yp, int(n_samples), seed)
        H = packed_root(H.partition, packed_store(H), dtype, info.replace(error_estimate=est))
    if backend == "cupy":
        from .backend import to_cupy

        return to_cupy(H)
    return H


def _point_array(a, name):
    """Points validated under their own argument name (real, finite)."""
    if np.iscomplexobj(a):
        raise TypeError(f"{name} must be real coordinates, got a complex array")
    return check_finite_array(a, name, dtype=np.float64)


def _chunks(r0, m, c0, n, admissible, threads):
    """Contiguous ranges of leaves (depth-first order) of similar build cost."""
    from . import _packed

    cost = np.where(admissible, 24 * (m + n), m * n).astype(np.float64)
    return _packed.cost_chunks(cost, threads)


def _build_compiled(kernel, Xp, Yp, r0, m, c0, n, admissible, tol, dtype, progress, symmetric=None):
    """Parallel compiled build: chunks of leaves -> packed segments (GIL released).

    For a symmetric kernel (``kernel.symmetric``, or ``symmetric=True``: the caller asserts
    it) on one point set, only the leaves on or above the diagonal (``r0 <= c0``) are
    computed (ACA + recompression or dense evaluation); unless ``symmetric`` is False only
    they are stored (symmetric storage), otherwise a second, cheap pass appends the others,
    as transposes of their twins, to the same chunk buffers.
    Returns ``(Packed, kernel evaluations)``.
    """
    threads = _threads.get_num_threads()
    proto = np.zeros(0, dtype)
    gx = twin_groups(Xp)
    gy = twin_groups(Yp)
    build_chunk, param = compiled_for(kernel.entry).build_chunk, float(kernel.param)
    partner = _packed.mirror_partner(Xp, Yp, r0, m, c0, n, bool(kernel.symmetric) or symmetric is True)
    store_symmetric = symmetric is not False
    built = np.ones(r0.size, bool) if partner is None else (r0 <= c0)
    cost = np.where(admissible, 24 * (m + n), m * n).astype(np.float64)
    cost = np.where(built, cost, 0.05 * cost)
    chunks = _packed.cost_chunks(cost, threads)
    room = np.where(admissible, np.minimum(m * n, 32 * (m + n)), m * n)

    def chunk_segment(a, b, *table_and_data):
        """The segment of leaves ``[a, b)``: their positions and the built kind, rank, off, buf."""
        return Segment(r0[a:b].copy(), m[a:b].copy(), c0[a:b].copy(), n[a:b].copy(), *table_and_data)

    def work(ab):
        a, b = ab
        sl = slice(a, b)
        if built[sl].all():
            return build_chunk(param, Xp, Yp, r0[sl], m[sl], c0[sl], n[sl], admissible[sl], tol, proto, 0, gx, gy)
        idx = np.flatnonzero(built[sl]) + a
        extra = int(room[sl][~built[sl]].sum())
        return build_chunk(
            param, Xp, Yp, r0[idx], m[idx], c0[idx], n[idx], admissible[idx], tol, proto, extra, gx, gy
        )

    evals = 0
    with progress_bar(total=int(r0.size), desc="hmat build", unit="leaf", disable=not progress) as bar:
        results = []
        it = _threads.map_first_here(work, chunks, threads, jitted=build_chunk)
        for (a, b), res in zip(chunks, it):
            results.append(res)
            evals += int(res[5])
            bar.update(int(built[a:b].sum()))
        if partner is not None and store_symmetric:
            segs = []
            for (a, b), (kind, rank, off, buf, pos, _) in zip(chunks, results):
                idx = np.flatnonzero(built[a:b]) + a
                mid = np.where(partner[idx] != idx, partner[idx], -1)
                segs.append(Segment(r0[idx], m[idx], c0[idx], n[idx], kind, rank, off, buf[:pos], idx, mid))
            bar.update(int((~built).sum()))
            return _finite_packed(segs, dtype, "symmetric"), evals
        if partner is None:
            segs = [
                chunk_segment(a, b, kind, rank, off, buf[:pos])
                for (a, b), (kind, rank, off, buf, pos, _) in zip(chunks, results)
            ]
            return _finite_packed(segs, dtype), evals
        located = _packed.BuiltLeaves(r0.size)
        for (a, b), (kind, rank, off, buf, pos, _) in zip(chunks, results):
            located.add(np.flatnonzero(built[a:b]) + a, kind, rank, off, buf)
        located.seal()

        def assemble(ci):
            a, b = chunks[ci]
            kind_b, rank_b, off_b, buf, pos, _ = results[ci]
            mine = built[a:b]
            if mine.all():
                return chunk_segment(a, b, kind_b, rank_b, off_b, buf[:pos])
            q = np.flatnonzero(~mine) + a
            p = partner[q]
            buf, off_m, end = located.mirrors(buf, pos, m[q], n[q], p)
            kind = np.empty(b - a, np.int64)
            rank = np.empty(b - a, np.int64)
            off = np.empty(b - a, np.int64)
            kind[mine], rank[mine], off[mine] = kind_b, rank_b, off_b
            kind[~mine], rank[~mine], off[~mine] = located.kind[p], located.rank[p], off_m
            return chunk_segment(a, b, kind, rank, off, buf[:end])

        segs = _threads.map_ordered(assemble, range(len(chunks)), threads)
        bar.update(int((~built).sum()))
    return _finite_packed(segs, dtype), evals


def _finite_packed(segs, dtype, sym=None):
    """``Packed(segs)``, refusing values that overflowed a single-precision dtype (kernel
    values are computed in float64 and are finite there)."""
    if dtype.itemsize * (2 if dtype.kind == "f" else 1) <= 8:  # float32, complex64
        for sg in segs:
            if not np.isfinite(sg.buf).all():
                raise ValueError(
                    f"kernel values overflow dtype {dtype} (beyond {np.finfo(dtype).max:.3g}); "
                    f"use a double-precision dtype or rescale the kernel"
                )
    return Packed(segs, dtype=dtype, sym=sym)


def _build_python(kernel, Xp, Yp, r0, m, c0, n, admissible, tol, dtype, progress, compressor, partner=None):
    """Leaf by leaf: ``compressor`` on admissible leaves, exact evaluation of the others;
    with ``partner`` (see :func:`hmat._packed.partner_index`) only the leaves with
    ``r0 <= c0`` (symmetric storage). Every evaluated block is checked for NaN/Inf and for
    complex values the storage dtype cannot hold, and computed in the wider of the kernel's
    and the storage dtype."""
    work = np.result_type(getattr(kernel, "dtype", np.float64), dtype)
    source = KernelSource(kernel, Xp, Yp, dtype=work, check=lambda b, shape: _checked(b, shape, dtype, work))
    leaves = []
    stored = np.arange(r0.size) if partner is None else np.flatnonzero(r0 <= c0)
    with progress_bar(total=int(stored.size), desc="hmat build", unit="leaf", disable=not progress) as bar:
        for q in stored:
            rows, cols = range(int(r0[q]), int(r0[q] + m[q])), range(int(c0[q]), int(c0[q] + n[q]))
            op = None
            if admissible[q]:
                op = compress_block(compressor, source, rows, cols, tol, dtype)
            if op is None:
                block = _checked(source.block(rows, cols), (m[q], n[q]), dtype)
                op = trusted_dense(np.ascontiguousarray(block, dtype=dtype))
            leaves.append((int(r0[q]), int(c0[q]), op))
            bar.update(1)
    nseg = max(1, 4 * _threads.get_num_threads())
    if partner is None:
        return pack_leaves(leaves, dtype, nseg), source.evaluations
    mids = np.where(partner[stored] != stored, partner[stored], -1)
    packed = pack_leaves(leaves, dtype, nseg, stored, mids)
    return Packed(packed.segments, dtype=dtype, sym="symmetric"), source.evaluations


def _checked(block, shape, dtype, work=None):
    """The block as ``work`` (default ``dtype``) after shape, type and finiteness checks;
    complex values are refused when the storage ``dtype`` is real."""
    block = np.asarray(block)
    if block.shape != tuple(shape):
        raise ValueError(f"kernel.block returned shape {block.shape}, expected {tuple(shape)}")
    if block.dtype.kind == "c" and dtype.kind != "c":
        if np.any(block.imag != 0):
            raise TypeError(
                f"the kernel returned complex values but dtype is {dtype}: the imaginary part "
                f"would be lost; pass dtype=np.complex128 (or give the kernel a complex dtype)"
            )
        block = block.real
    if block.dtype.kind not in "biufc":
        raise TypeError(f"kernel.block returned a {block.dtype} array, expected numbers")
    if not np.isfinite(block).all():
        raise ValueError("kernel returned NaN or Inf values")
    out = block.astype(dtype if work is None else work, copy=False)
    if not np.isfinite(out).all():
        raise ValueError(f"kernel values overflow dtype {out.dtype} (largest magnitude {np.max(np.abs(block)):.3g})")
    return out


def _sampled_error(H, kernel, Xp, Yp, n_samples, seed):
    rng = np.random.default_rng(seed)
    M, N = H.shape
    pi = rng.integers(0, M, n_samples).astype(np.int64)
    pj = rng.integers(0, N, n_samples).astype(np.int64)
    return sampled_error_at(H, kernel, Xp, Yp, pi, pj)


def sampled_error_at(H, kernel, Xp, Yp, pi, pj):
    """Relative error ``||A_S - H_S|| / ||A_S||`` over permuted entry positions ``(pi, pj)``."""
    approx = np.zeros(pi.size, dtype=H.dtype)
    packed_store(H).sample(pi, pj, approx)
    if isinstance(kernel, Kernel):
        true = np.empty(pi.size, dtype=np.result_type(H.dtype, kernel.dtype))
        compiled_for(kernel.entry).eval_pairs(float(kernel.param), Xp, Yp, pi, pj, true)
    else:
        true = np.array([np.asarray(kernel.block(Xp[i:i + 1], Yp[j:j + 1])).reshape(()) for i, j in zip(pi, pj)])
    den = fro(true)  # scale-safe: kernels at 1e+-200 give finite, correct ratios
    num = fro(true - approx)
    return num / den if den > 0 else num


# ---------------------------------------------------------------------- from_dense

def from_dense(A, *, tol=1e-6, points=None, eta=2.0, leaf_size=64, admissibility=None, split="bbox",
               compressor=None, precision="adaptive", symmetric=None):
    """Compress an explicit matrix with a certified bound ``||A - H||_F <= tol ||A||_F``.

    The Frobenius error budget ``(tol ||A||_F)^2`` is distributed over the admissible
    blocks: the singular values of all admissible blocks are dropped greedily, smallest
    error per saved entry first, while the dropped energy fits the budget; a block is then
    stored low-rank only where that is cheaper than dense (otherwise exactly), and the freed
    budget is redistributed (``4 eps`` of the budget is reserved for rounding). The error of
    every low-rank block is then measured with its factors as stored (in extended precision
    when ``tol`` is within 1000 machine epsilons of double precision); if rounding spent
    more than the reserve, the blocks with the largest errors are stored exactly until the
    bound holds. The result's ``error_estimate`` is this measured relative error
    ``||A - H||_F / ||A||_F``. With adaptive precision, 0.2 tol of the budget is set aside
    for single-precision storage: each block may round by at most 0.2 tol of its own norm
    (a rigorous bound for low-rank components, an exact measurement for dense blocks), and
    the measured errors above are those of the blocks as stored, rounding included. All norms are taken after an exact power-of-two scaling, so
    the guarantee holds for entries of any magnitude the dtype represents.

    Parameters
    ----------
    A : array_like, shape (m, n)
        float32, float64, complex64 or complex128; finite.
    tol : float
        0 < tol < 1.
    points : array_like (n, d), or tuple (row_points (m, d), col_points (n, d)), optional
        Geometry of the indices. ``None``: index cluster trees and weak admissibility (HODLR).
    eta : float
        Strong-admissibility parameter (when points are given).
    leaf_size : int
    admissibility : "strong", "weak" or callable, optional
    split : {"bbox", "pca", "cardinality"}
    compressor : Compressor, optional
        Instead of the global budget: ``compressor.compress(source, rows, cols, tol')`` on
        each admissible (stored) block, ``tol' = tol - 4 eps`` blockwise (``0.8 tol - 4 eps``
        with adaptive precision; see :mod:`hmat.compressors`); a block it returns None for
        is stored exactly. The measurement of the stored factors and the final correction
        above are the same, so the bound holds for any compressor.
    precision : {"adaptive", "full"}
        See :func:`from_kernel` (``"adaptive"`` applies to float64 and complex128 data
        with ``tol >= 1e-10``).
    symmetric : bool, optional
        Symmetric storage (see :func:`from_kernel`), for a square ``A`` on one cluster tree
        (``points`` None or one array). ``None`` (default): when ``A`` is symmetric
        (``||A - A^T||_F <= 8 eps ||A||_F``) or, complex, Hermitian (same test with ``A^H``);
        ``True``: also for an ``A`` that is symmetric only approximately (the mirrored
        blocks then approximate ``A``'s own blocks by the transposes, error measured and
        certified like the rest); ``False``: every block stored. The bound holds either
        way: if the mirrored blocks' measured errors break it, every block is stored.

    Returns
    -------
    HBlock
    """
    A = check_finite_array(A, "A", ndim=2)
    tol = check_tol(tol)
    compressor = None if compressor is None else check_compressor(compressor)
    adaptive = _precision.adaptive_for(precision, A.dtype, tol)
    share = _precision.ROUNDING_SHARE if adaptive else 0.0
    if symmetric is not None and not isinstance(symmetric, bool):
        raise ValueError(f"symmetric must be None, True or False, got {symmetric!r}")
    leaf_size = check_positive(leaf_size, "leaf_size", integer=True)
    M, N = A.shape
    if points is None:
        adm = _admissibility(admissibility, eta, "weak")
        row_tree = ClusterTree.from_size(M, leaf_size)
        col_tree = row_tree if N == M else ClusterTree.from_size(N, leaf_size)
    else:
        adm = _admissibility(admissibility, eta, "strong")
        if isinstance(points, tuple) and len(points) == 2:
            rp, cp = points
        else:
            rp = cp = points
        row_tree = ClusterTree(rp, leaf_size=leaf_size, split=split)
        col_tree = row_tree if cp is rp else ClusterTree(cp, leaf_size=leaf_size, split=split)
        if row_tree.n != M or col_tree.n != N:
            raise ValueError(
                f"points give {row_tree.n} row and {col_tree.n} column points, but A has shape {A.shape}"
            )
    bt = BlockTree(row_tree, col_tree, adm)
    Ap = A[np.ix_(row_tree.perm, col_tree.perm)]
    r0, m, c0, n, admissible = bt.leaf_arrays()
    work_dtype = np.result_type(A.dtype, np.float64)
    # scale-safe budget: all norms and singular values are taken of 2^-e A (exact scaling)
    # whose largest entry is of order one, so their squares neither overflow nor underflow
    e = pow2_exponent(float(np.max(np.abs(Ap))))
    f = math.ldexp(1.0, -e)
    norm_a = fro(Ap.astype(work_dtype) * f)
    eps = float(np.finfo(A.dtype).eps)
    budget = max((1 - share) * tol - 4 * eps, 0.0) * norm_a
    # symmetric storage: only blocks with r0 <= c0 are decided; a mirrored pair's error counts twice
    sym = None
    if symmetric is not False and row_tree is col_tree:
        sym = _dense_symmetry(Ap, f, eps, symmetric)
    partner = _packed.partner_index(r0, m, c0, n) if sym is not None else None
    sym = None if partner is None else sym
    stored = np.ones(r0.size, bool) if sym is None else r0 <= c0
    if compressor is None:
        cand = _budget_factors(Ap, r0, m, c0, n, admissible & stored, work_dtype, e, budget,
                               None if sym is None else partner)
    else:
        cand = {}
        if budget > 0:  # else low-rank storage (whose factors round) cannot be certified
            src = DenseSource(Ap)
            for q in np.flatnonzero(admissible & stored):
                rows, cols = range(int(r0[q]), int(r0[q] + m[q])), range(int(c0[q]), int(c0[q] + n[q]))
                op = compress_block(compressor, src, rows, cols, budget / norm_a, A.dtype)
                if op is not None:
                    cand[int(q)] = (np.ascontiguousarray(op.U), np.ascontiguousarray(op.V))
    factors, errs = {}, {}
    # the achieved error of each low-rank block is measured with the factors as stored, in
    # a precision well above the data's where the tolerance is within 1000 eps of it
    meas = work_dtype
    if tol < 1e3 * eps and eps < 1e-10:  # double-precision data, tolerance near its eps
        meas = np.dtype(np.longdouble if A.dtype.kind == "f" else np.clongdouble)
    low = _precision.low_dtype(A.dtype) if adaptive else None
    for q, (U, V) in cand.items():
        k = U.shape[1]
        p = _precision.lowrank_split(U, V, share * tol) if adaptive else k
        factors[q] = (U, V, p)
        if p < k:  # measure the leaf as stored: its last k - p components rounded
            U, V = U.copy(), V.copy()
            U[:, p:] = U[:, p:].astype(low)
            V[:, p:] = V[:, p:].astype(low)
        blk = Ap[r0[q]:r0[q] + m[q], c0[q]:c0[q] + n[q]].astype(meas)
        Us = U.astype(meas) * f
        diff = blk * f - Us @ V.astype(meas).conj().T
        errs[q] = _meas_fro(diff)
    lowered = set()  # dense blocks stored in single precision, their rounding measured exactly
    if adaptive:
        proto = np.zeros(0, low)
        for q in np.flatnonzero(stored).tolist():
            if q not in factors:
                blk = Ap[r0[q]:r0[q] + m[q], c0[q]:c0[q] + n[q]]
                if _precision.dense_rounding_fits(blk, share * tol, proto):
                    lowered.add(q)
                    errs[q] = fro((blk - blk.astype(low)) * f)
    bound = tol * norm_a
    mirror = None
    if sym is not None:  # mirrored blocks: their partners' transposes, measured against A
        mirror = _mirror_blocks(Ap, f, r0, m, c0, n, factors, lowered, errs, sym, low, meas)
        for q, p in mirror.items():  # one error per stored unit (a block and its mirror)
            errs[q] = hypot_all([errs.get(q, 0.0), errs.pop(p, 0.0)])
    err = hypot_all(list(errs.values())) if errs else 0.0
    if err > bound:
        # rounding of the stored factors spent more than the reserve: store the blocks with
        # the largest errors exactly until the rest fits
        order = sorted(errs, key=lambda q: errs[q])
        vals = np.array([errs[q] for q in order])
        tail = np.sqrt(np.cumsum((vals / err) ** 2)) * err  # error of keeping order[:i+1]
        nkeep = int(np.searchsorted(tail, bound, side="right"))
        for q in order[nkeep:]:
            factors.pop(q, None)
            lowered.discard(q)
        err = float(tail[nkeep - 1]) if nkeep else 0.0
        if sym is not None:  # blocks stored exactly: their mirrors' errors measured again
            fallen = set(order[nkeep:])
            again = {}
            _mirror_blocks(Ap, f, r0, m, c0, n, factors, lowered, again, sym, low, meas)
            err = hypot_all([errs[q] for q in order[:nkeep]] + [again[p] for q, p in mirror.items() if q in fallen])
            if err > bound:  # the transposes do not fit: store every block
                return from_dense(A, tol=tol, points=points, eta=eta, leaf_size=leaf_size, admissibility=admissibility,
                                  split=split, compressor=compressor, precision=precision, symmetric=False)
    parts = ([], [])  # (leaf id, r0, c0, op) in full and in single precision
    for q in range(r0.size):
        if mirror is not None and q in mirror.values():
            continue  # stored as its partner's transpose
        fq = factors.get(q)
        at = (q, int(r0[q]), int(c0[q]))
        if fq is None:
            blk = np.ascontiguousarray(Ap[r0[q]:r0[q] + m[q], c0[q]:c0[q] + n[q]])
            parts[q in lowered].append(at + (trusted_dense(blk),))
            continue
        U, V, p = fq
        if p > 0 or U.shape[1] == 0:
            parts[0].append(at + (trusted_lowrank(U[:, :p], V[:, :p]),))
        if p < U.shape[1]:
            parts[1].append(at + (trusted_lowrank(U[:, p:], V[:, p:]),))
    packed = pack_parts(parts, A.dtype, low, max(1, 4 * _threads.get_num_threads()), mirror, sym)
    name = "SVD (global budget)" if compressor is None else compressor_name(compressor)
    info = BuildInfo(tol=tol, error_estimate=err / norm_a if norm_a > 0 else 0.0, compressor=name)
    return packed_root(bt.partition(), packed, A.dtype, info)


def _budget_factors(Ap, r0, m, c0, n, admissible, work_dtype, e, budget, partner=None):
    """``{leaf: (U, V)}`` of the admissible blocks kept low rank under the global budget;
    with ``partner`` (symmetric storage) the error of an off-diagonal block counts twice
    (the block and its mirror)."""
    f = math.ldexp(1.0, -e)
    svds = {}
    for q in np.flatnonzero(admissible):
        blk = Ap[r0[q]:r0[q] + m[q], c0[q]:c0[q] + n[q]].astype(work_dtype) * f
        W, s, Vh = np.linalg.svd(blk, full_matrices=False)
        svds[int(q)] = (W, s, Vh)
    weighted = svds if partner is None else {
        q: (W, s * math.sqrt(2.0) if partner[q] != q else s, Vh) for q, (W, s, Vh) in svds.items()}
    # with no budget beyond the rounding reserve, low-rank storage (whose factors round)
    # cannot be certified: every block is stored exactly
    keep = _distribute_budget(weighted, m, n, budget) if budget > 0 else {}
    out = {}
    for q, k in keep.items():
        W, s, Vh = svds[q]
        U = np.ascontiguousarray((W[:, :k] * s[:k] * math.ldexp(1.0, e - e // 2)).astype(Ap.dtype))
        V = np.ascontiguousarray((Vh[:k].conj().T * math.ldexp(1.0, e // 2)).astype(Ap.dtype))
        out[q] = (U, V)
    return out


def _dense_symmetry(Ap, f, eps, symmetric):
    """``"symmetric"``, ``"hermitian"`` or None for the permuted, scaled-by-``f`` matrix:
    within ``8 eps`` (relative Frobenius) of its transpose / conjugate transpose; with
    ``symmetric=True`` the closer of the two (the caller measures what the transposes cost)."""
    if Ap.shape[0] != Ap.shape[1]:
        return None
    S = Ap * f
    nrm = fro(S)
    if nrm == 0:
        return "symmetric"
    dt = fro(S - S.T) / nrm
    if not np.iscomplexobj(S):
        return "symmetric" if (symmetric or dt <= 8 * eps) else None
    dh = fro(S - S.conj().T) / nrm
    best = min((dt, "symmetric"), (dh, "hermitian"))
    if symmetric or best[0] <= 8 * eps:
        return best[1]
    return None


def _meas_fro(diff):
    """Frobenius norm of a difference computed in double or extended precision (scaled)."""
    if diff.dtype in (np.float64, np.complex128):
        return fro(diff)
    return float(np.sqrt(np.sum(np.abs(diff) ** 2)))


def _mirror_blocks(Ap, f, r0, m, c0, n, factors, lowered, errs, sym, low, meas):
    """Symmetric storage in :func:`from_dense`: each block below the diagonal becomes the
    (conjugate) transpose of its partner's stored form (``factors``, ``lowered`` updated in
    place) and its error against ``A``'s own block is measured into ``errs`` (scaled by
    ``f``, in the precision ``meas``). Returns ``{stored leaf: mirrored leaf}``."""
    partner = _packed.partner_index(r0, m, c0, n)
    mirror = {}
    herm = sym == "hermitian"
    for p in np.flatnonzero(r0 > c0):
        q = int(partner[p])
        p = int(p)
        mirror[q] = p
        blk = Ap[r0[p]:r0[p] + m[p], c0[p]:c0[p] + n[p]]
        factors.pop(p, None)
        lowered.discard(p)
        if q in factors:
            U, V, k = factors[q]
            Ut, Vt = (V, U) if herm else (V.conj(), U.conj())  # the partner's (conjugate) transpose
            if k < U.shape[1]:  # as stored: its last components rounded
                Ut, Vt = Ut.copy(), Vt.copy()
                Ut[:, k:] = Ut[:, k:].astype(low)
                Vt[:, k:] = Vt[:, k:].astype(low)
            errs[p] = _meas_fro(blk.astype(meas) * f - (Ut.astype(meas) * f) @ Vt.astype(meas).conj().T)
        else:
            D = Ap[r0[q]:r0[q] + m[q], c0[q]:c0[q] + n[q]]
            if q in lowered:
                D = D.astype(low).astype(Ap.dtype)
            errs[p] = fro((blk - (D.conj().T if herm else D.T)) * f)
    return mirror


def _distribute_budget(svds, m, n, budget):
    """Ranks to keep per admissible block (absent: store dense) under a Frobenius budget."""
    active = set(svds)
    for _ in range(8):
        keep = {}
        if not active:
            return keep
        vals, owner = [], []
        for q in active:
            s = svds[q][1]
            vals.append(s**2 / float(m[q] + n[q]))
            owner.append(np.full(s.size, q, np.int64))
        vals = np.concatenate(vals)
        owner = np.concatenate(owner)
        err = vals * (m[owner] + n[owner])  # sigma^2 of each candidate drop
        order = np.argsort(vals, kind="stable")
        csum = np.cumsum(err[order])
        ndrop = int(np.searchsorted(csum, budget * budget, side="right"))
        dropped = np.bincount(owner[order[:ndrop]], minlength=max(active) + 1)
        dense_now = set()
        for q in active:
            k = svds[q][1].size - int(dropped[q])
            if k * (m[q] + n[q]) >= m[q] * n[q]:
                dense_now.add(q)
            else:
                keep[q] = k
        if not dense_now:
            return keep
        active -= dense_now
    return keep
