"""Shared fixtures: one factory of every operator type in every dtype."""

import numpy as np
import pytest

import hmat

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def rtol_for(dtype):
    """Comparison tolerance for results computed in ``dtype``."""
    return 2e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-11


def random_array(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def cloud(rng, n, d=3):
    return rng.random((n, d))


def kernel_matrix(n, rng, dtype=np.float64):
    pts = cloud(rng, n)
    K = hmat.kernels.Exponential(0.5).block(pts, pts)
    if np.dtype(dtype).kind == "c":
        K = K + 0.3j * hmat.kernels.Gaussian(0.4).block(pts, pts)
    return K.astype(dtype), pts


def _nested(rng, dtype):
    """A hand-built nested HBlock (2x2 with a nested 1x2 child) with permutations."""
    D = lambda m, n: hmat.Dense(random_array(rng, (m, n), dtype))  # noqa: E731
    L = lambda m, n, k: hmat.LowRank(random_array(rng, (m, k), dtype), random_array(rng, (n, k), dtype))  # noqa: E731
    inner = hmat.HBlock([[D(5, 4), L(5, 3, 2)]])
    H = hmat.HBlock(
        [[D(7, 7), L(7, 9, 3)], [hmat.HBlock([[L(5, 7, 2)], [D(6, 7)]]), hmat.HBlock([[inner, L(5, 2, 1)], [L(6, 7, 2), D(6, 2)]])]],
        row_perm=rng.permutation(18),
        col_perm=rng.permutation(16),
    )
    return H


def make_operator(kind, dtype, seed=0):
    """Return ``(operator, dense reference as complex128/float64)`` for a named kind."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        A = random_array(rng, (13, 9), dtype)
        return hmat.Dense(A), A
    if kind == "lowrank":
        U, V = random_array(rng, (12, 3), dtype), random_array(rng, (10, 3), dtype)
        op = hmat.LowRank(U, V)
        return op, U.astype(np.complex128) @ V.astype(np.complex128).conj().T
    if kind == "lowrank0":
        op = hmat.LowRank(np.zeros((6, 0), dtype), np.zeros((4, 0), dtype))
        return op, np.zeros((6, 4))
    if kind == "hblock_nested":
        H = _nested(rng, dtype)
        return H, H.to_dense()
    if kind == "from_dense":
        K, pts = kernel_matrix(150, rng, dtype)
        H = hmat.from_dense(K, tol=1e-3, points=pts, leaf_size=16)
        return H, H.to_dense()
    if kind == "from_dense_rect":
        A = random_array(rng, (70, 45), dtype)
        H = hmat.from_dense(A, tol=0.5, leaf_size=8)
        return H, H.to_dense()
    if kind == "from_kernel":
        pts = cloud(rng, 300)
        H = hmat.from_kernel(hmat.kernels.Matern(0.5, nu=1.5), pts, tol=1e-4, leaf_size=16, dtype=dtype)
        return H, H.to_dense()
    if kind == "adjoint_view":
        H, _ = make_operator("from_kernel", dtype, seed)
        return H.H, H.to_dense().conj().T
    if kind == "transpose":
        H, _ = make_operator("hblock_nested", dtype, seed)
        return H.T, H.to_dense().T
    if kind == "sum":
        A, a = make_operator("dense", dtype, seed)
        B = hmat.Dense(random_array(rng, A.shape, dtype))
        return A + B, a.astype(np.complex128) + B.array
    if kind == "difference_scaled":
        A, a = make_operator("lowrank", dtype, seed)
        B = hmat.Dense(random_array(rng, A.shape, dtype))
        return 2.5 * A - B / 2, 2.5 * a - B.array / 2
    if kind == "product":
        A, a = make_operator("dense", dtype, seed)
        B, b = make_operator("lowrank", dtype, seed + 1)
        B = hmat.LowRank(B.U[:9], B.V)
        return A @ B, a.astype(np.complex128) @ B.to_dense()
    if kind == "neg_adjoint_sum":
        A, a = make_operator("hblock_nested", dtype, seed)
        return -(A.H), -a.conj().T
    raise KeyError(kind)


KINDS = [
    "dense",
    "lowrank",
    "lowrank0",
    "hblock_nested",
    "from_dense",
    "from_dense_rect",
    "from_kernel",
    "adjoint_view",
    "transpose",
    "sum",
    "difference_scaled",
    "product",
    "neg_adjoint_sum",
]


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return request.param


@pytest.fixture(scope="module")
def one_blas_thread():
    """Dense references are many small LAPACK calls: one BLAS thread is much faster."""
    from hmat.arithmetic._common import blas_single_thread

    with blas_single_thread():
        yield
