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
    """A hand-built nested HBlock (2x2 with a nested 1x2 child) with permutations.

    Returns the operator and its dense matrix assembled independently (``np.block`` of
    the leaf arrays, then the permutations applied by fancy indexing), in complex128.
    """
    dense = []  # the leaves' dense blocks, built from the raw arrays

    def D(m, n):
        a = random_array(rng, (m, n), dtype)
        dense.append(a.astype(np.complex128))
        return hmat.Dense(a), dense[-1]

    def L(m, n, k):
        u, v = random_array(rng, (m, k), dtype), random_array(rng, (n, k), dtype)
        return hmat.LowRank(u, v), u.astype(np.complex128) @ v.astype(np.complex128).conj().T

    d54, l532 = D(5, 4), L(5, 3, 2)
    d77, l793 = D(7, 7), L(7, 9, 3)
    l572, d67 = L(5, 7, 2), D(6, 7)
    l521, l672, d62 = L(5, 2, 1), L(6, 7, 2), D(6, 2)
    rp, cp = rng.permutation(18), rng.permutation(16)
    inner = hmat.HBlock([[d54[0], l532[0]]])
    H = hmat.HBlock(
        [[d77[0], l793[0]], [hmat.HBlock([[l572[0]], [d67[0]]]), hmat.HBlock([[inner, l521[0]], [l672[0], d62[0]]])]],
        row_perm=rp,
        col_perm=cp,
    )
    B = np.block([
        [d77[1], l793[1]],
        [np.vstack([l572[1], d67[1]]), np.block([[np.hstack([d54[1], l532[1]]), l521[1]], [l672[1], d62[1]]])],
    ])
    A = np.empty_like(B)
    A[np.ix_(rp, cp)] = B  # (H x)[row_perm] = B x[col_perm]
    return H, A


def _smooth(m, n, rng, dtype):
    """A rectangular kernel matrix on sorted 1-D points (low-rank off-diagonal blocks)."""
    x, y = np.sort(rng.random(m)), np.sort(rng.random(n))
    d = np.abs(x[:, None] - y[None, :])
    A = np.exp(-d / 0.3)
    if np.dtype(dtype).kind == "c":
        A = A + 0.3j * np.exp(-(d / 0.4) ** 2)
    return A.astype(dtype)


#: Relative Frobenius error a kind may have against its reference: the compressed kinds
#: are compared with the matrix they compress, ``||H - A||_F <= tol ||A||_F``.
APPROX = {"from_dense": 1e-3, "from_dense_rect": 1e-3, "from_kernel": 1e-4, "adjoint_view": 1e-4}


def law_tol(kind, dtype):
    """Relative tolerance of a law ``|lhs - rhs| <= law_tol * ||A||_F * ||x||`` for ``kind``."""
    return 10 * max(rtol_for(dtype), APPROX.get(kind, 0.0))


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
        return _nested(rng, dtype)
    if kind == "from_dense":
        K, pts = kernel_matrix(150, rng, dtype)
        H = hmat.from_dense(K, tol=APPROX[kind], points=pts, leaf_size=16)
        return H, K.astype(np.complex128)
    if kind == "from_dense_rect":
        A = _smooth(70, 45, rng, dtype)
        H = hmat.from_dense(A, tol=APPROX[kind], leaf_size=8)
        return H, A.astype(np.complex128)
    if kind == "from_kernel":
        pts = cloud(rng, 300)
        kernel = hmat.kernels.Matern(0.5, nu=1.5)
        H = hmat.from_kernel(kernel, pts, tol=APPROX[kind], leaf_size=16, dtype=dtype)
        return H, kernel.block(pts, pts).astype(np.complex128)  # the kernel evaluated densely
    if kind == "adjoint_view":
        H, a = make_operator("from_kernel", dtype, seed)
        return H.H, a.conj().T
    if kind == "transpose":
        H, a = make_operator("hblock_nested", dtype, seed)
        return H.T, a.T
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
