"""Tests of the compiled build and matvec kernels (private modules)."""

import numpy as np
import pytest

import hmat
from hmat.points import sphere_points
from hmat.hblock import packed_store
from hmat import _aca_numba, _threads
from hmat._kernel_jit import compiled_for
from hmat._matvec_numba import apply_segment, apply_segment_sym

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


sphere = sphere_points


def laplace_dense(P):
    D = hmat.kernels.Laplace(3).block(P, P)
    np.fill_diagonal(D, 0)
    return D


@pytest.fixture(scope="module")
def pts():
    return sphere(1500)


@pytest.fixture(scope="module")
def dense(pts):
    return laplace_dense(pts)


def rtol_for(dtype):
    return 1e-3 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_matvec_matmat_adjoint_vs_dense(pts, dense, dtype):
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-7, leaf_size=32, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.random(pts.shape[0]).astype(dtype)
    X = rng.random((pts.shape[0], 3)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.random(x.shape).astype(dtype)
    tol = rtol_for(dtype)
    D = dense.astype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    y = H @ x
    assert y.dtype == np.dtype(dtype)
    assert np.linalg.norm(y - D @ x) <= tol * np.linalg.norm(D @ x)
    assert np.linalg.norm(H @ X - D @ X) <= tol * np.linalg.norm(D @ X)
    assert np.linalg.norm(H.H @ x - D.conj().T @ x) <= tol * np.linalg.norm(D @ x)
    assert np.linalg.norm(H.H @ X - D.conj().T @ X) <= tol * np.linalg.norm(D @ X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_segment_kernels_match_dense_leaves(dtype):
    """apply_segment on a hand-made segment: one dense and one low-rank leaf."""
    rng = np.random.default_rng(2)
    cplx = np.dtype(dtype).kind == "c"

    def rnd(*s):
        a = rng.standard_normal(s)
        return (a + 1j * rng.standard_normal(s) if cplx else a).astype(dtype)

    Dl, U, V = rnd(5, 7), rnd(6, 3), rnd(4, 3)
    buf = np.concatenate([Dl.ravel(), U.T.ravel(), V.T.ravel()])  # factors component-major
    r0, m, c0, n = np.array([0, 5]), np.array([5, 6]), np.array([0, 7]), np.array([7, 4])
    kind = np.array([hmat.LeafKind.DENSE, hmat.LeafKind.LOWRANK], np.int64)
    rank, off = np.array([0, 3]), np.array([0, 35])
    A = np.zeros((11, 11), dtype)
    A[0:5, 0:7] = Dl
    A[5:11, 7:11] = U @ V.conj().T
    x, X = rnd(11), rnd(11, 2)
    wide = np.complex128 if cplx else np.float64
    bound = 16 * np.finfo(dtype).eps * np.linalg.norm(A.astype(wide))  # times ||x||
    for adj, M in ((False, A), (True, A.conj().T)):
        Mw = M.astype(wide)
        y = np.zeros((1, 11), dtype)  # right-hand sides as rows
        apply_segment(r0, m, c0, n, kind, rank, off, buf, x[None, :], y, adj)
        assert np.linalg.norm(y[0] - Mw @ x) <= bound * np.linalg.norm(x)
        Y = np.zeros((2, 11), dtype)
        apply_segment(r0, m, c0, n, kind, rank, off, buf, np.ascontiguousarray(X.T), Y, adj)
        assert np.linalg.norm(Y.T - Mw @ X) <= bound * np.linalg.norm(X)


# (row start, column start, rows, columns, rank or None for dense): rows not a multiple of
# four, odd ranks and rank 0 exercise every remainder loop of the kernels; row and column
# ranges of each leaf are disjoint (as for a mirrored, off-diagonal leaf)
_SYM_LEAVES = [(0, 20, 5, 7, None), (0, 30, 6, 9, 3), (8, 28, 1, 3, None), (10, 0, 4, 8, 2), (12, 40, 9, 5, 1),
               (22, 8, 7, 2, 0), (40, 0, 8, 12, None)]


@pytest.mark.parametrize("nrhs", [1, 3])
@pytest.mark.parametrize("store, acc", [(np.float64, np.float64), (np.float32, np.float64), (np.float32, np.float32),
                                        (np.complex128, np.complex128), (np.complex64, np.complex128)])
def test_fused_symmetric_kernel_matches_dense(store, acc, nrhs):
    """apply_segment_sym adds, for every leaf L at (r, c), L X[c] into rows r and L^H Xm[r]
    into rows c in one pass (the leaf and its mirror), with data stored in ``store`` and
    products accumulated in ``acc`` (adaptive precision: float32 data, float64 result)."""
    rng = np.random.default_rng(11)
    cplx = np.dtype(acc).kind == "c"

    def rnd(*shape):
        a = rng.standard_normal(shape)
        return (a + 1j * rng.standard_normal(shape) if cplx else a).astype(store)

    N = 60
    A = np.zeros((N, N), np.complex128 if cplx else np.float64)  # reference from the stored values
    parts, table = [], []
    pos = 0
    for r, c, mq, nq, k in _SYM_LEAVES:
        if k is None:
            L = rnd(mq, nq)
            parts.append(L.ravel())
            table.append((r, mq, c, nq, hmat.LeafKind.DENSE, 0, pos))
            Lw = L.astype(A.dtype)
        else:
            U, V = rnd(mq, k), rnd(nq, k)
            parts += [U.T.ravel(), V.T.ravel()]  # component-major
            table.append((r, mq, c, nq, hmat.LeafKind.LOWRANK, k, pos))
            Lw = U.astype(A.dtype) @ V.astype(A.dtype).conj().T
        pos += parts[-1].size + (0 if k is None else parts[-2].size)
        A[r:r + mq, c:c + nq] += Lw
        A[c:c + nq, r:r + mq] += Lw.conj().T
    buf = np.concatenate(parts)
    cols = [np.array(col, np.int64) for col in zip(*table)]
    X = rng.standard_normal((nrhs, N)) + (1j * rng.standard_normal((nrhs, N)) if cplx else 0)
    XT = np.ascontiguousarray(X, dtype=acc)
    YT = np.zeros((nrhs, N), acc)
    apply_segment_sym(*cols, buf, XT, XT, YT, YT)
    ref = (A @ XT.astype(A.dtype).T).T
    eps = np.finfo(acc).eps
    assert np.linalg.norm(YT - ref) <= 16 * eps * np.linalg.norm(A) * np.linalg.norm(XT)
    # the same through the two-pass kernels: every leaf, then the mirrors as adjoints
    Y2 = np.zeros((nrhs, N), acc)
    apply_segment(*cols, buf, XT, Y2, False)
    apply_segment(*cols, buf, XT, Y2, True)
    assert np.linalg.norm(Y2 - ref) <= 16 * eps * np.linalg.norm(A) * np.linalg.norm(XT)


def test_threads_agree(pts):
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-6, leaf_size=32)
    x = np.random.default_rng(3).random(pts.shape[0])
    old = _threads._state["n"]
    try:
        _threads.set_num_threads(1)
        y1 = packed_store(H).apply(x, x.size, threads=1)
        H1 = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-6, leaf_size=32)
        _threads.set_num_threads(2)
        y2 = packed_store(H).apply(x, x.size, threads=2)
        H2 = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-6, leaf_size=32)
    finally:
        _threads.set_num_threads(old)
    np.testing.assert_allclose(y2, y1, rtol=1e-12)
    # the build is deterministic: same leaves, same data whatever the thread count
    # (chunking differs, so compare leaf by leaf)
    for l1, l2 in zip(H1.leaves(), H2.leaves()):
        assert (l1.row_start, l1.col_start) == (l2.row_start, l2.col_start)
        np.testing.assert_array_equal(l1.op.to_dense(), l2.op.to_dense())


@pytest.mark.parametrize("kernel", [hmat.kernels.Laplace(3), hmat.kernels.Helmholtz(2.0)])
def test_symmetric_build_mirrors_leaves(pts, kernel):
    H = hmat.from_kernel(kernel, pts, tol=1e-6, leaf_size=32)
    leaves = {(lf.row_start, lf.col_start): lf.op for lf in H.leaves()}
    for (r, c), op in leaves.items():
        if r > c:
            np.testing.assert_allclose(op.to_dense(), leaves[(c, r)].to_dense().T, rtol=1e-12, atol=1e-15)
    old = _aca_numba.SYMMETRIC_BUILD
    try:
        _aca_numba.SYMMETRIC_BUILD = False
        Hf = hmat.from_kernel(kernel, pts, tol=1e-6, leaf_size=32)
    finally:
        _aca_numba.SYMMETRIC_BUILD = old
    assert H.provenance.kernel_evaluations < 0.6 * Hf.provenance.kernel_evaluations
    D = kernel.block(pts, pts)
    if isinstance(kernel, hmat.kernels.Laplace):
        np.fill_diagonal(D, 0)
    for G in (H, Hf):
        assert np.linalg.norm(G.to_dense() - D) <= 1e-6 * np.linalg.norm(D)


def test_no_mirror_with_distinct_targets(pts):
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts[:1000], targets=pts[500:], tol=1e-6, leaf_size=32)
    D = hmat.kernels.Laplace(3).block(pts[500:], pts[:1000])
    D[~np.isfinite(D)] = 0
    assert np.linalg.norm(H.to_dense() - D) <= 1e-6 * np.linalg.norm(D)


@pytest.mark.parametrize("cplx", [False, True])
def test_recompression_paths_agree_with_svd(cplx):
    rng = np.random.default_rng(4)
    k, m, n = 12, 40, 50
    scale = 0.2 ** np.arange(k)
    U = rng.standard_normal((k, m)) * scale[:, None]
    V = rng.standard_normal((k, n))
    if cplx:
        U = U + 1j * rng.standard_normal((k, m)) * scale[:, None]
        V = V + 1j * rng.standard_normal((k, n))
    S = U.T @ V.conj()
    Gu = U.conj() @ U.T
    Gv = V.conj() @ V.T
    s = np.linalg.svd(S, compute_uv=False)
    for rel in (1e-2, 1e-5, 1e-9):
        tail = np.sqrt(np.cumsum(s[::-1] ** 2))[::-1]
        k_opt = int(np.sum(tail > rel * np.linalg.norm(s)))
        for f in ("gram", "house"):
            out = np.empty(k * (m + n), U.dtype)
            if f == "gram":
                k2 = _aca_numba.recompress_gram(U, V, Gu, Gv, k, rel, out, 0)
            else:
                k2 = _aca_numba.recompress_into(U, V, k, rel, out, 0)
            assert k2 == k_opt, (f, rel, k2, k_opt)
            if f == "gram":  # component-major, the packed layout
                Uo = out[:m * k2].reshape(k2, m).T
                Vo = out[m * k2:(m + n) * k2].reshape(k2, n).T
            else:
                Uo = out[:m * k2].reshape(m, k2)
                Vo = out[m * k2:(m + n) * k2].reshape(n, k2)
            err = np.linalg.norm(S - Uo @ Vo.conj().T) / np.linalg.norm(S)
            assert err <= rel * (1 + 1e-6)


def test_gram_falls_back_on_dependent_columns():
    rng = np.random.default_rng(5)
    U = rng.standard_normal((3, 20))
    U[2] = U[0] + 1e-9 * U[1]
    V = rng.standard_normal((3, 25))
    out = np.empty(3 * 45)
    assert _aca_numba.recompress_gram(U, V, U @ U.T, V @ V.T, 3, 1e-6, out, 0) == -1
    assert _aca_numba.recompress_into(U, V, 3, 1e-6, out, 0) >= 1


def test_aca_returns_gram_and_meets_tolerance(pts):
    X = np.ascontiguousarray(pts)
    U, V, Gu, Gv, k, ev, ok, se = compiled_for(hmat.kernels.Laplace().entry).aca(
        0.0, X, 0, 100, X, 1000, 120, 1e-7, 5e-7, 50, np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    )
    assert se == 0
    assert ok and k > 0 and ev > 0
    np.testing.assert_allclose(Gu[:k, :k], U[:k].conj() @ U[:k].T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(Gv[:k, :k], V[:k].conj() @ V[:k].T, rtol=1e-10, atol=1e-14)
    D = laplace_dense(pts)[0:100, 1000:1120]
    assert np.linalg.norm(U[:k].T @ V[:k].conj() - D) <= 1e-6 * np.linalg.norm(D)


@pytest.mark.parametrize("storage", [{"precision": "full", "symmetric": False}, {}])
def test_sample_entries_match_leaves(pts, storage):
    """Full storage: the compiled sampler over the segments; symmetric, mixed-precision
    storage (the default): the packed storage's sampler, mirrored leaves included."""
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-6, leaf_size=32, **storage)
    n = pts.shape[0]
    rng = np.random.default_rng(7)
    pi = rng.integers(0, n, 500).astype(np.int64)
    pj = rng.integers(0, n, 500).astype(np.int64)
    out = np.zeros(500)
    if storage:
        for s in packed_store(H).segments:
            _aca_numba.sample_entries(*s.table(), s.buf, pi, pj, out)
    else:
        assert H.symmetry == "symmetric"
        packed_store(H).sample(pi, pj, out)
    Ap = np.zeros((n, n))
    for lf in H.leaves():
        Ap[lf.row_start:lf.row_start + lf.op.shape[0], lf.col_start:lf.col_start + lf.op.shape[1]] = lf.op.to_dense()
    np.testing.assert_allclose(out, Ap[pi, pj], rtol=1e-12, atol=1e-15)


def test_chunks_and_partner_helpers(pts):
    from hmat import _packed

    cost = np.array([1.0, 5.0, 1.0, 1.0, 8.0, 1.0])
    ch = _packed.cost_chunks(cost, 1)
    assert ch[0][0] == 0 and ch[-1][1] == cost.size
    assert all(a < b and b == c for (a, b), (c, _) in zip(ch, ch[1:]))
    assert _packed.cost_chunks(np.zeros(0), 2) == []
    X = np.ascontiguousarray(pts[:10])
    r0, m, c0, n = (np.array(v, np.int64) for v in ([0, 0], [5, 5], [0, 5], [5, 5]))
    assert _packed.mirror_partner(X, X, r0, m, c0, n, True) is None  # twin (5, 0) of (0, 5) missing
    r0, c0 = np.array([0, 0, 5, 5]), np.array([0, 5, 0, 5])
    m = n = np.full(4, 5)
    np.testing.assert_array_equal(_packed.mirror_partner(X, X, r0, m, c0, n, True), [0, 2, 1, 3])
    assert _packed.mirror_partner(X, X + 1.0, r0, m, c0, n, True) is None
    assert _packed.mirror_partner(X, X, r0, m, c0, n, False) is None
