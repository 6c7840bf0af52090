"""Compressors as strategy objects: built-in ACA / SVD and a user-written one, injected into
both builders; the compiled build is chosen internally."""

import numpy as np
import pytest

import hmat
from hmat.compressors import DenseSource, KernelSource


class MyTruncatedSVD:
    """A user-written compressor: truncated SVD of the explicit block (own code, own rule)."""

    def compress(self, source, rows, cols, tol):
        A = source.block(rows, cols)
        U, s, Vh = np.linalg.svd(A, full_matrices=False)
        tail = np.sqrt(np.cumsum((s ** 2)[::-1]))[::-1]  # tail[k] = ||s[k:]||
        k = int(np.flatnonzero(np.append(tail, 0.0) <= tol * tail[0])[0]) if s.size else 0
        if k * (len(rows) + len(cols)) >= len(rows) * len(cols):
            return None
        return hmat.LowRank(U[:, :k] * s[:k], Vh[:k].conj().T)


@pytest.fixture(scope="module")
def laplace():
    pts = np.random.default_rng(0).random((900, 3))
    K = hmat.kernels.Laplace().block(pts, pts)
    return pts, K


@pytest.mark.parametrize("compressor", [hmat.SVD(), MyTruncatedSVD(), hmat.ACA(), hmat.ACA(recompress=False),
                                        hmat.ACA(seed=3)])
def test_from_kernel_with_compressor_meets_tol(laplace, compressor):
    pts, K = laplace
    tol = 1e-6
    H = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=tol, leaf_size=32, compressor=compressor)
    assert np.linalg.norm(H.to_dense() - K) <= 2 * tol * np.linalg.norm(K)
    assert H.stats()["n_lowrank"] > 0
    assert H.provenance.tol == tol and H.provenance.kernel_evaluations > 0


def test_user_compressor_equals_builtin_svd(laplace):
    pts, K = laplace
    kw = dict(tol=1e-5, leaf_size=32)
    H1 = hmat.from_kernel(hmat.kernels.Laplace(), pts, compressor=MyTruncatedSVD(), **kw)
    H2 = hmat.from_kernel(hmat.kernels.Laplace(), pts, compressor=hmat.SVD(), **kw)
    assert [lf.op.shape for lf in H1.leaves()] == [lf.op.shape for lf in H2.leaves()]
    assert H1.stats()["rank_histogram"] == H2.stats()["rank_histogram"]
    assert np.linalg.norm(H1.to_dense() - H2.to_dense()) <= 1e-12 * np.linalg.norm(K)
    assert H1.provenance.compressor == "MyTruncatedSVD" and H2.provenance.compressor == "SVD"


def test_compiled_build_chosen_for_default_aca(laplace):
    pts, K = laplace
    Hc = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-6, leaf_size=32)
    Hd = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-6, leaf_size=32, compressor=hmat.ACA())
    # both compiled: the same operator, bit for bit
    x = np.random.default_rng(1).standard_normal(K.shape[1])
    assert np.array_equal(Hc @ x, Hd @ x)
    # a Python kernel goes through ACA.compress; same tolerance met
    Hp = hmat.from_kernel(lambda a, b: hmat.kernels.Laplace().block(a.reshape(-1, 3), b.reshape(-1, 3)).reshape(
        a.shape[0], b.shape[1]), pts, tol=1e-6, leaf_size=32)
    assert np.linalg.norm(Hp.to_dense() - K) <= 2e-6 * np.linalg.norm(K)


@pytest.mark.parametrize("compressor", [hmat.SVD(), MyTruncatedSVD(), hmat.ACA()])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_from_dense_with_compressor_is_certified(laplace, compressor, dtype):
    pts, K = laplace
    A = K.astype(dtype)
    if np.dtype(dtype).kind == "c":
        A = hmat.kernels.Helmholtz(2.0).block(pts, pts).astype(dtype)
    tol = {np.float32: 1e-3, np.complex128: 1e-5, np.float64: 1e-7}[dtype]
    # default storage (symmetric, adaptive precision) and full storage: both certified
    for storage in ({}, {"precision": "full", "symmetric": False}):
        H = hmat.from_dense(A, tol=tol, points=pts, leaf_size=32, compressor=compressor, **storage)
        err = np.linalg.norm(H.to_dense().astype(np.complex128) - A) / np.linalg.norm(A.astype(np.complex128))
        assert err <= tol, storage
        assert abs(err - H.error_estimate) <= 1e-3 * tol + 1e-6 * err, storage
    # the compressor's blocks are used (in full storage: at float64 tol 1e-7 ACA makes few
    # blocks pay, and under the default storage none of them is on or above the diagonal)
    assert H.stats()["n_lowrank"] > 0


def test_sources():
    rng = np.random.default_rng(2)
    X, Y = rng.random((30, 2)), rng.random((20, 2))
    k = hmat.kernels.Gaussian(0.5)
    src = KernelSource(k, X, Y)
    blk = src.block(range(3, 9), range(5, 7))
    assert np.array_equal(blk, k.block(X[3:9], Y[5:7])) and src.evaluations == 12
    A = rng.standard_normal((6, 5))
    d = DenseSource(A)
    assert np.array_equal(d.block(range(1, 4), range(2, 5)), A[1:4, 2:5])
    assert np.array_equal(d.block(np.array([0, 2]), np.array([4, 1])), A[np.ix_([0, 2], [4, 1])])
    assert isinstance(hmat.ACA(), hmat.Compressor) and isinstance(MyTruncatedSVD(), hmat.Compressor)


class _Bad:
    def __init__(self, out):
        self.out = out

    def compress(self, source, rows, cols, tol):
        return self.out(len(rows), len(cols))


@pytest.mark.parametrize("compressor,exc,match", [
    ("aca", TypeError, "compressor"),
    (object(), TypeError, "compressor"),
    (_Bad(lambda m, n: np.zeros((m, n))), TypeError, "LowRank"),
    (_Bad(lambda m, n: hmat.LowRank(np.ones((m + 1, 1)), np.ones((n, 1)))), ValueError, "shape"),
    (_Bad(lambda m, n: hmat.LowRank(np.ones((m, 1)) * 1j, np.ones((n, 1)))), TypeError, "complex"),
])
def test_bad_compressor(laplace, compressor, exc, match):
    pts, K = laplace
    with pytest.raises(exc, match=match):
        hmat.from_kernel(hmat.kernels.Laplace(), pts[:300], tol=1e-4, leaf_size=32, compressor=compressor)
    with pytest.raises(exc, match=match):
        hmat.from_dense(K[:300, :300], tol=1e-4, points=pts[:300], leaf_size=32, compressor=compressor)


def test_readme_strategies_example_runs():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = re.search(r"## Block structure and strategies\n.*?```python\n(.*?)```", text, re.S).group(1)
    pts = np.random.default_rng(5).random((700, 3))
    env = {"np": np, "hmat": hmat, "pts": pts}
    exec(compile(code, "README.md", "exec"), env)
    H, H2 = env["H"], env["H2"]
    K = hmat.kernels.Laplace().block(pts, pts)
    assert np.linalg.norm(H.to_dense() - K) <= 1e-6 * np.linalg.norm(K)
    assert H.provenance.compressor == "MyTruncatedSVD" and H2.partition == H.partition
    x = np.random.default_rng(6).standard_normal(700)
    assert np.allclose(H2 @ x, H @ x, rtol=0, atol=1e-13 * np.linalg.norm(K) * np.linalg.norm(x))


@pytest.mark.parametrize("compressor", [hmat.SVD(), MyTruncatedSVD(), hmat.ACA(recompress=False)])
def test_compressor_with_symmetric_adaptive_storage(laplace, compressor, tmp_path):
    """A compressor object (Python build) and the storage options together: a built-in
    symmetric kernel on one point set is stored symmetric with float32 parts by default,
    meets the tolerance with the rounding counted, and saves/loads bitwise."""
    pts, K = laplace
    tol = 1e-6
    kernel = hmat.kernels.Laplace()
    H = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=32, compressor=compressor)
    s = H.stats()
    assert H.symmetry == "symmetric" and s["n_stored_leaves"] < s["n_leaves"]
    assert "float32" in s["nbytes_by_dtype"] and H.dtype == np.float64
    nK = np.linalg.norm(K)
    assert np.linalg.norm(H.to_dense() - K) <= 2 * tol * nK
    assert H.provenance.compressor == hmat.compressors.compressor_name(compressor) and H.provenance.kernel_evaluations > 0
    F = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=32, compressor=compressor, precision="full", symmetric=False)
    assert F.symmetry is None and set(F.stats()["nbytes_by_dtype"]) == {"float64"}
    assert np.linalg.norm(F.to_dense() - K) <= 2 * tol * nK
    assert H.nbytes < 0.75 * F.nbytes
    x = np.random.default_rng(4).standard_normal(K.shape[0])
    assert np.linalg.norm(H @ x - K @ x) <= 2 * tol * nK * np.linalg.norm(x)
    assert np.linalg.norm(H.H @ x - K @ x) <= 2 * tol * nK * np.linalg.norm(x)  # K symmetric
    hmat.save(tmp_path / "h.npz", H)
    back = hmat.load(tmp_path / "h.npz")
    assert back.symmetry == "symmetric"
    assert back.provenance == H.provenance  # the file keeps every field, the compressor name too
    assert (back @ x).tobytes() == (H @ x).tobytes()
    for f in ("r0", "m", "c0", "n"):  # the same leaf table (kinds: of the loaded operators)
        assert np.array_equal(getattr(back.partition, f), getattr(H.partition, f))
