"""Adaptive-precision storage: rounding counted in the error budget, at every scale and dtype."""

import numpy as np
import pytest

import hmat
from hmat import _precision

from .conftest import DTYPES, make_operator


def exact_fro(a):
    """Frobenius norm in extended precision, of values given in any dtype (scale-safe at the
    scales used here: squares of 2^+-80 stay inside long double's range)."""
    a = np.asarray(a).astype(np.clongdouble)
    return float(np.sqrt(np.sum(np.abs(a) ** 2)))


def orthonormal(rng, n, k, dtype):
    a = rng.standard_normal((n, k))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal((n, k))
    q, _ = np.linalg.qr(a)
    return q.astype(dtype)


def factors(rng, m, n, k, dtype, scale, decay=0.3):
    """``U = Q S`` (orthogonal columns, norms ``scale decay^c``), ``V`` orthonormal."""
    s = scale * decay ** np.arange(k)
    return orthonormal(rng, m, k, dtype) * s, orthonormal(rng, n, k, dtype)


def rounded(U, V, p):
    low = _precision.low_dtype(U.dtype)
    U2, V2 = U.copy(), V.copy()
    U2[:, p:] = U[:, p:].astype(low)
    V2[:, p:] = V[:, p:].astype(low)
    return U2, V2


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("scale", [2.0**-100, 1.0, 2.0**100, 1e-40, 1e-200, 1e200])
@pytest.mark.parametrize("rel", [1e-9, 1e-8, 1e-7, 1e-6, 1e-3])
def test_lowrank_split_bound_holds(dtype, scale, rel):
    """Rounding columns p: of U and V changes U V^H by at most rel ||U V^H||_F."""
    rng = np.random.default_rng(0)
    U, V = factors(rng, 60, 45, 12, dtype, scale)
    p = _precision.lowrank_split(U, V, rel)
    assert 0 <= p <= 12
    U2, V2 = rounded(U, V, p)
    L = U.astype(np.clongdouble) @ V.astype(np.clongdouble).conj().T
    L2 = U2.astype(np.clongdouble) @ V2.astype(np.clongdouble).conj().T
    assert exact_fro(L - L2) <= rel * exact_fro(L)


def test_lowrank_split_uses_the_allowance():
    """Not vacuous: a generous allowance lowers every component, one below float32 rounding none;
    with scale 1e-44 (deep in float32's subnormals) the absolute rounding keeps the factors."""
    rng = np.random.default_rng(1)
    U, V = factors(rng, 60, 45, 12, np.float64, 1.0)
    assert _precision.lowrank_split(U, V, 1e-3) == 0
    assert _precision.lowrank_split(U, V, 1e-16) == 12  # below any float32 rounding
    p = _precision.lowrank_split(U, V, 1e-7)  # only the smaller components fit
    assert 0 < p < 12
    Ut, Vt = factors(rng, 60, 45, 12, np.float64, 1e-44)
    assert _precision.lowrank_split(Ut, Vt, 1e-3) == 12
    Ub, Vb = factors(rng, 60, 45, 12, np.float64, 1e39)  # beyond float32's range
    assert _precision.lowrank_split(Ub, Vb, 1e-3) == 12


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("scale", [2.0**-80, 1.0, 2.0**80, 1e-41, 1e-200])
def test_dense_rounding_fits_is_exact(dtype, scale):
    rng = np.random.default_rng(2)
    D = (rng.standard_normal((20, 30)) * scale).astype(dtype)
    if np.dtype(dtype).kind == "c":
        D = D + 1j * scale * rng.standard_normal((20, 30))
    low = _precision.low_dtype(dtype)
    err = exact_fro(D - D.astype(low).astype(dtype)) / exact_fro(D)
    proto = np.zeros(0, low)
    assert _precision.dense_rounding_fits(D, 1.0001 * err, proto) == bool(np.isfinite(err))
    assert not _precision.dense_rounding_fits(D, 0.999 * err, proto)


def kernel_problem(n, dtype, scale):
    rng = np.random.default_rng(3)
    pts = rng.random((n, 3))
    K = hmat.kernels.Exponential(0.5).block(pts, pts)
    if np.dtype(dtype).kind == "c":
        K = K + 0.3j * hmat.kernels.Gaussian(0.4).block(pts, pts)
    return (K * scale).astype(dtype), pts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [2.0**-60, 1.0, 2.0**60])
@pytest.mark.parametrize("tol", [1e-3, 5e-7])
def test_from_dense_bound_counts_rounding(dtype, scale, tol):
    """The certified bound holds for the operator as stored, and its error_estimate is the
    error of the rounded blocks (it would fall short of the true error if the rounding of
    the single-precision parts were left out)."""
    A, pts = kernel_problem(600, dtype, scale)
    if tol < 32 * np.finfo(dtype).eps:
        pytest.skip("tol below what the dtype can meet")
    H = hmat.from_dense(A, tol=tol, points=pts, leaf_size=32)
    low = _precision.low_dtype(dtype)
    by = H.stats()["nbytes_by_dtype"]
    assert sum(by.values()) == H.nbytes
    if low is not None:
        assert by.get(low.name, 0) > 0  # something is stored in single precision
    true = exact_fro(A.astype(np.clongdouble) - H.to_dense().astype(np.clongdouble)) / exact_fro(A)
    assert true <= tol
    assert abs(H.error_estimate - true) <= 1e-6 * true + 64 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_from_dense_rounding_is_a_real_part_of_the_error(dtype):
    """At tol near float32's rounding the single-precision parts change the operator by a
    measurable amount, which the estimate includes: the same truncation (precision="full"
    at the 0.8 tol left for it) without rounding has a different, smaller error, and the
    estimate of the rounded operator is its true error (test above)."""
    A, pts = kernel_problem(600, dtype, 1.0)
    tol = 5e-7
    H = hmat.from_dense(A, tol=tol, points=pts, leaf_size=32)
    Hf = hmat.from_dense(A, tol=tol * (1 - _precision.ROUNDING_SHARE), points=pts, leaf_size=32, precision="full")
    assert H.stats()["rank_histogram"] == Hf.stats()["rank_histogram"]  # the same truncation
    rounding = exact_fro(H.to_dense() - Hf.to_dense()) / exact_fro(A)
    assert 1e-9 < rounding <= _precision.ROUNDING_SHARE * tol
    assert H.error_estimate > (1 + 1e-4) * Hf.error_estimate
    true = exact_fro(A - H.to_dense()) / exact_fro(A)
    assert abs(H.error_estimate - true) <= 1e-6 * true and true <= tol


def test_precision_full_stores_the_dtype_only():
    A, pts = kernel_problem(400, np.float64, 1.0)
    H = hmat.from_dense(A, tol=1e-4, points=pts, leaf_size=32, precision="full")
    assert set(H.stats()["nbytes_by_dtype"]) == {"float64"}
    G = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-4, leaf_size=32, precision="full")
    assert set(G.stats()["nbytes_by_dtype"]) == {"float64"}


@pytest.mark.parametrize("bad", ["single", None, 32])
def test_bad_precision_names_the_argument(bad):
    A, pts = kernel_problem(100, np.float64, 1.0)
    with pytest.raises(ValueError, match="precision"):
        hmat.from_dense(A, tol=1e-4, precision=bad)
    with pytest.raises(ValueError, match="precision"):
        hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-4, precision=bad)


@pytest.mark.parametrize("kernel", [hmat.kernels.Laplace(), hmat.kernels.Helmholtz(3.0)])
@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
def test_from_kernel_blockwise_tolerance_with_rounding(kernel, tol):
    """Every block as stored (single-precision parts included) is within tol of the kernel
    block, and so is the whole matrix; single precision is used."""
    pts = hmat.sphere_points(1500)
    H = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=32)
    low = _precision.low_dtype(H.dtype)
    assert H.stats()["nbytes_by_dtype"].get(low.name, 0) > 0
    Xp = pts[H.row_perm]
    worst = 0.0
    for r0, c0, op in H.leaves():
        K = kernel.block(Xp[r0:r0 + op.shape[0]], Xp[c0:c0 + op.shape[1]])
        worst = max(worst, exact_fro(K - op.to_dense()) / exact_fro(K))
    assert worst <= tol
    K = kernel.block(pts, pts)
    assert exact_fro(K - H.to_dense()) <= tol * exact_fro(K)


def test_matvec_reads_single_precision_and_accumulates_in_double():
    """The mixed operator's product equals that of its logical (double-precision) leaves to
    double-precision rounding, far below float32's."""
    pts = hmat.sphere_points(2000)
    H = hmat.from_kernel(hmat.kernels.Laplace(), pts, tol=1e-5, leaf_size=32)
    assert H.stats()["nbytes_by_dtype"].get("float32", 0) > 0
    full = hmat.HBlock(H.blocks, H.row_perm, H.col_perm)  # hand-built: repacked in float64
    x = np.random.default_rng(4).standard_normal(H.shape[1])
    y, yf = H @ x, full @ x
    assert y.dtype == np.float64
    assert np.linalg.norm(y - yf) <= 1e-13 * np.linalg.norm(H.to_dense()) * np.linalg.norm(x)
    X = np.random.default_rng(5).standard_normal((H.shape[1], 3))
    assert np.linalg.norm(H @ X - full @ X) <= 1e-13 * np.linalg.norm(H.to_dense()) * np.linalg.norm(X)


def test_save_load_of_a_mixed_operator(tmp_path):
    """Saved as its logical leaves (in the operator's dtype): the same operator."""
    pts = hmat.sphere_points(800)
    H = hmat.from_kernel(hmat.kernels.Helmholtz(2.0), pts, tol=1e-5, leaf_size=32)
    hmat.save(tmp_path / "h.npz", H)
    G = hmat.load(tmp_path / "h.npz")
    assert np.array_equal(G.to_dense(), H.to_dense())


@pytest.mark.parametrize("kind", ["from_dense", "from_kernel", "adjoint_view"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_conformance_kinds_are_mixed_precision(kind, dtype):
    """The conformance suite's compressed kinds exercise mixed-precision storage."""
    op, _ = make_operator(kind, dtype)
    by = op.stats()["nbytes_by_dtype"]
    assert by.get(_precision.low_dtype(dtype).name, 0) > 0
