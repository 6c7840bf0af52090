"""Symmetric storage: one leaf of each mirrored pair stored, the other applied as its transpose."""

import numpy as np
import pytest

import hmat
from hmat import kernels

from .conftest import DTYPES, random_array


def fro(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.complex128)))


@pytest.fixture(scope="module")
def pts():
    return hmat.sphere_points(1200)


def build(kernel, pts, dtype, **kw):
    return hmat.from_kernel(kernel, pts, tol=1e-6, leaf_size=32, dtype=dtype, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precision", ["full", "adaptive"])
def test_symmetric_storage_is_the_same_operator(pts, dtype, precision):
    """Stored leaves with r0 <= c0 only (about half the bytes); every product equals that of
    the full storage (same leaves, built the same way) to rounding of the dtype."""
    kernel = kernels.Helmholtz(2.0) if np.dtype(dtype).kind == "c" else kernels.Laplace(3)
    H = build(kernel, pts, dtype, precision=precision)
    F = build(kernel, pts, dtype, precision=precision, symmetric=False)
    assert H.symmetry == "symmetric" and F.symmetry is None
    s, sf = H.stats(), F.stats()
    assert s["n_leaves"] == sf["n_leaves"] and s["n_stored_leaves"] < 0.6 * s["n_leaves"]
    assert sf["n_stored_leaves"] == sf["n_leaves"]
    assert s["rank_histogram"] == sf["rank_histogram"]
    assert H.nbytes < 0.6 * F.nbytes
    A = F.to_dense()
    np.testing.assert_array_equal(H.to_dense(), A)  # logical leaves: the same numbers
    rng = np.random.default_rng(0)
    n = H.shape[0]
    x = random_array(rng, n, dtype)
    X = random_array(rng, (n, 3), dtype)
    rt = 50 * (1e-6 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-14)
    a = fro(A)
    for got, ref, scale in [
        (H @ x, F @ x, a * fro(x)),
        (H.rmatvec(x), F.rmatvec(x), a * fro(x)),
        (H.H @ x, F.H @ x, a * fro(x)),
        (H @ X, F @ X, a * fro(X)),
        (H.H @ X, F.H @ X, a * fro(X)),
        (H.T @ x, A.T @ x, a * fro(x)),
    ]:
        assert fro(got - ref) <= rt * scale


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_adjoint_identity_and_sampled_error(pts, dtype):
    kernel = kernels.Helmholtz(3.0) if np.dtype(dtype).kind == "c" else kernels.Gaussian(0.3)
    H = build(kernel, pts, dtype)
    assert H.symmetry == "symmetric"
    rng = np.random.default_rng(1)
    x, y = random_array(rng, H.shape[1], dtype), random_array(rng, H.shape[0], dtype)
    A = H.to_dense()
    assert abs(np.vdot(y, H @ x) - np.vdot(H.rmatvec(y), x)) <= 1e-13 * fro(A) * fro(x) * fro(y)
    # the sampled error reads mirrored leaves too: it matches the dense comparison's order
    K = kernel.block(pts, pts)
    true = fro(K - A) / fro(K)
    assert H.error_estimate <= 1e-6 and true <= 1e-6
    assert 0.3 * true <= H.error_estimate <= 3 * true


def test_user_kernel_symmetric_override(pts):
    f = lambda x, y: np.exp(-np.linalg.norm(x - y, axis=-1) / 0.4)  # noqa: E731
    H = hmat.from_kernel(f, pts[:600], tol=1e-6, leaf_size=32, symmetric=True)
    G = hmat.from_kernel(f, pts[:600], tol=1e-6, leaf_size=32)
    assert H.symmetry == "symmetric" and G.symmetry is None
    assert H.stats()["kernel_evaluations"] < 0.6 * G.stats()["kernel_evaluations"]
    K = kernels.Exponential(0.4).block(pts[:600], pts[:600])
    assert fro(K - H.to_dense()) <= 1e-6 * fro(K)


def test_symmetric_argument_checked(pts):
    with pytest.raises(ValueError, match="symmetric"):
        hmat.from_kernel(kernels.Laplace(3), pts, targets=pts[:10], symmetric=True)
    with pytest.raises(ValueError, match="symmetric"):
        hmat.from_kernel(kernels.Laplace(3), pts, symmetric="yes")
    H = hmat.from_kernel(kernels.Laplace(3), pts[:300], targets=pts[100:400], tol=1e-6)
    assert H.symmetry is None


def test_leaves_replace_truncate_arithmetic_and_device(pts):
    """Operations on logical leaves work and return full storage."""
    H = build(kernels.Laplace(3), pts, np.float64)
    A = H.to_dense()
    leaves = H.leaves()
    assert len(leaves) == H.stats()["n_leaves"]
    R = H.replace_leaves([lf.op for lf in leaves])
    assert R.symmetry is None
    np.testing.assert_array_equal(R.to_dense(), A)
    T = H.truncate(1e-4)
    assert fro(T.to_dense() - A) <= 1e-4 * fro(A)
    S = hmat.add(H, H, tol=1e-8)
    assert fro(S.to_dense() - 2 * A) <= 1e-8 * 2 * fro(A)
    D = hmat.to_device(H, "numpy")  # the CSR form: every leaf, mirrored ones expanded
    x = np.random.default_rng(2).standard_normal(H.shape[1])
    assert fro(D @ x - A @ x) <= 1e-13 * fro(A) * fro(x)


def test_save_load_keeps_symmetric_mixed_storage(tmp_path, pts):
    H = build(kernels.Helmholtz(2.0), pts, np.complex128)
    path = tmp_path / "h.npz"
    assert H._blocks is None
    hmat.save(path, H)
    assert H._blocks is None  # saving keeps no leaf objects either
    G = hmat.load(path)
    assert G._blocks is None  # no leaf objects (float64 copies of the float32 parts) kept
    assert G.symmetry == "symmetric" and G.nbytes == H.nbytes and G.depth == H.depth
    assert G.stats()["nbytes_by_dtype"] == H.stats()["nbytes_by_dtype"]
    x = np.random.default_rng(3).standard_normal(H.shape[1]) + 0j
    assert (G @ x).tobytes() == (H @ x).tobytes()
    assert (G.H @ x).tobytes() == (H.H @ x).tobytes()
    np.testing.assert_array_equal(G.to_dense(), H.to_dense())  # leaves made again from the storage


def exact_rel(A, B):
    a = np.asarray(A).astype(np.clongdouble)
    d = a - np.asarray(B).astype(np.clongdouble)
    return float(np.sqrt(np.sum(np.abs(d) ** 2)) / np.sqrt(np.sum(np.abs(a) ** 2)))


def dense_problem(kind, dtype, n=500):
    rng = np.random.default_rng(5)
    p = rng.random((n, 3))
    A = kernels.Exponential(0.5).block(p, p)
    if np.dtype(dtype).kind == "c":
        G = 0.3 * kernels.Gaussian(0.4).block(p, p)
        A = A + 1j * G if kind == "symmetric" else A + 1j * np.sin(3 * (p[:, None, 0] - p[None, :, 0])) * G
    if kind is None:
        A = A + 1e-4 * rng.standard_normal(A.shape)
    return A.astype(dtype), p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["symmetric", "hermitian", None])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_from_dense_detects_symmetry_and_keeps_the_certified_bound(dtype, kind, tol):
    if kind == "hermitian" and np.dtype(dtype).kind != "c":
        pytest.skip("real: hermitian is symmetric")
    A, p = dense_problem(kind, dtype)
    if tol < 32 * np.finfo(dtype).eps:
        pytest.skip("tol below the dtype")
    H = hmat.from_dense(A, tol=tol, points=p, leaf_size=32)
    assert H.symmetry == kind
    s = H.stats()
    if kind is not None:
        assert s["n_stored_leaves"] < 0.6 * s["n_leaves"]
    true = exact_rel(A, H.to_dense())
    assert true <= tol
    assert abs(H.error_estimate - true) <= 1e-6 * true + 64 * np.finfo(dtype).eps
    x = random_array(np.random.default_rng(6), A.shape[1], dtype)
    D = H.to_dense()
    rt = 1e-5 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-13
    assert fro(H @ x - D @ x) <= rt * fro(D) * fro(x)
    assert fro(H.H @ x - D.conj().T @ x) <= rt * fro(D) * fro(x)


def test_from_dense_symmetric_override_on_a_nearly_symmetric_matrix():
    """symmetric=True on an A that is symmetric only to 1e-9: the transposes cost that much,
    measured and certified; symmetric=False stores every block."""
    A, p = dense_problem("symmetric", np.float64)
    A = A + 1e-9 * np.random.default_rng(7).standard_normal(A.shape)
    assert hmat.from_dense(A, tol=1e-6, points=p, leaf_size=32).symmetry is None  # not detected
    H = hmat.from_dense(A, tol=1e-6, points=p, leaf_size=32, symmetric=True)
    assert H.symmetry == "symmetric"
    true = exact_rel(A, H.to_dense())
    assert true <= 1e-6 and abs(H.error_estimate - true) <= 1e-6 * true
    # tighter than the asymmetry: the transposes would break the bound, every block is stored
    G = hmat.from_dense(A, tol=1e-11, points=p, leaf_size=32, symmetric=True)
    assert G.symmetry is None and exact_rel(A, G.to_dense()) <= 1e-11
    with pytest.raises(ValueError, match="symmetric"):
        hmat.from_dense(A, tol=1e-6, symmetric=1)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_fused_and_two_pass_mirrored_products_agree(pts, dtype, monkeypatch):
    """The fused kernel (a leaf and its mirror in one pass) against the two general passes."""
    from hmat import _packed

    kernel = kernels.Helmholtz(2.0) if np.dtype(dtype).kind == "c" else kernels.Laplace(3)
    H = build(kernel, pts, dtype)
    x = random_array(np.random.default_rng(8), H.shape[1], dtype)
    y = H @ x
    yh = H.H @ x
    monkeypatch.setattr(_packed, "FUSED", False)
    rt = 1e-5 if np.dtype(dtype) == np.float32 else 1e-13
    scale = fro(H.to_dense()) * fro(x)
    assert fro(H @ x - y) <= rt * scale and fro(H.H @ x - yh) <= rt * scale


def test_format2_file_from_row_major_storage_loads():
    """A format-2 file written by hmat at commit 626e490 (symmetric storage, float32 parts;
    in memory its factors were stored row-major, today component-major): it loads into the
    same operator. Both products accumulate the same stored numbers in float64, so they
    differ by rounding only: at most 16 eps ||A||_F ||x||."""
    import os

    here = os.path.join(os.path.dirname(__file__), "data")
    H = hmat.load(os.path.join(here, "format2_sphere400_sym_adaptive.npz"))
    ref = np.load(os.path.join(here, "format2_sphere400_sym_adaptive_Hx.npy"))
    assert H.symmetry == "symmetric" and H.stats()["n_lowrank"] > 0
    assert set(H.stats()["nbytes_by_dtype"]) == {"float32"}
    x = np.random.default_rng(0).random(400)
    A = H.to_dense()
    assert fro(H @ x - ref) <= 16 * np.finfo(np.float64).eps * fro(A) * fro(x)
    P = hmat.sphere_points(400)  # and it is the operator it was built as (tol 1e-4)
    D = kernels.Laplace(3).block(P, P)
    np.fill_diagonal(D, 0.0)
    assert fro(A - D) <= 1e-4 * fro(D)
