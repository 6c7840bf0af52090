"""The array-namespace backend: operators on numpy (always) and on cupy (when a GPU exists).

The device operator of an HBlock is three CSR matrices; with ``backend="numpy"`` the very same
code runs on scipy.sparse, so every check below also runs on machines without a GPU.
"""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import hmat
from hmat.points import sphere_points
from hmat import backend as B


sphere = sphere_points


DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _rtol(dtype):
    return 2e-5 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-12


@pytest.fixture(scope="module")
def points():
    return sphere(1200)


@pytest.fixture(scope="module", params=DTYPES, ids=lambda d: np.dtype(d).name)
def hb(request, points):
    return hmat.from_kernel(hmat.kernels.Laplace(3), points, tol=1e-6, leaf_size=32, dtype=request.param)


def _backends():
    out = [pytest.param("numpy", id="numpy")]
    out.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return out


def _xp(backend):
    if backend == "cupy":
        cupy = pytest.importorskip("cupy")
        if not B.has_cupy():
            pytest.skip("no CUDA device")
        return cupy
    return np


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _rand(xp, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return xp.asarray(a.astype(dtype))


@pytest.mark.parametrize("backend", _backends())
def test_hblock_conformance(hb, backend):
    xp = _xp(backend)
    S = B.to_device(hb, backend)
    assert isinstance(S, B.SparseHMatrix) and S.shape == hb.shape and S.dtype == hb.dtype
    assert B.get_array_module(S) is xp
    x = _rand(xp, hb.shape[1], hb.dtype, 0)
    X = _rand(xp, (hb.shape[1], 3), hb.dtype, 1)
    rt = _rtol(hb.dtype)
    for got, want in (
        (S @ x, hb @ _host(x)),
        (S @ X, hb @ _host(X)),
        (S.H @ x, hb.H @ _host(x)),
        (S.rmatvec(x), hb.rmatvec(_host(x))),
        (S.matmat(X), hb.matmat(_host(X))),
        (S.T @ x, hb.T @ _host(x)),
    ):
        assert B.get_array_module(got) is xp
        got = _host(got)
        assert got.dtype == want.dtype
        assert np.linalg.norm(got - want) <= rt * np.linalg.norm(want)
    # dottest: (S u)^H v == u^H (S^H v)
    u = _rand(xp, hb.shape[1], hb.dtype, 2)
    v = _rand(xp, hb.shape[0], hb.dtype, 3)
    lhs = complex(_host(xp.vdot(S @ u, v)))
    rhs = complex(_host(xp.vdot(u, S.H @ v)))
    assert abs(lhs - rhs) <= 10 * rt * max(abs(lhs), 1.0) * 10
    # algebra from the LinearOperator base
    y = _host((2.0 * S + S) @ x)
    assert np.linalg.norm(y - 3 * _host(S @ x)) <= rt * np.linalg.norm(y)


@pytest.mark.parametrize("backend", _backends())
def test_round_trip_and_adjoint_view(hb, backend):
    _xp(backend)
    S = B.to_device(hb, backend)
    assert B.to_numpy(S) is hb
    Sh = B.to_device(hb.H, backend)
    x = np.random.default_rng(4).random(hb.shape[0]).astype(hb.dtype)
    want = hb.H @ x
    assert np.linalg.norm(_host(Sh @ Sh.xp.asarray(x)) - want) <= _rtol(hb.dtype) * np.linalg.norm(want)
    # a device copy without its host: to_numpy converts the arrays back
    bare = B.SparseHMatrix(S.D, S.U, S.W, S.row_perm, S.col_perm, backend)
    back = B.to_numpy(bare)
    assert back.xp is np
    np.testing.assert_allclose(back @ x, hb @ x, rtol=10 * _rtol(hb.dtype), atol=1e-6)


@pytest.mark.parametrize("backend", _backends())
def test_dense_and_lowrank_move(backend):
    xp = _xp(backend)
    rng = np.random.default_rng(5)
    A = rng.standard_normal((30, 20))
    U, V = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
    for op in (hmat.Dense(A), hmat.LowRank(U, V)):
        d = B.to_device(op, backend)
        assert type(d) is type(op)
        x = xp.asarray(rng.standard_normal(20))
        y = d @ x
        assert B.get_array_module(y) is xp
        np.testing.assert_allclose(_host(y), op @ _host(x), rtol=1e-12)
        h = B.to_numpy(d)
        np.testing.assert_allclose(h @ _host(x), op @ _host(x), rtol=1e-12)


@pytest.mark.parametrize("backend", _backends())
def test_solvers_accept_device_operator(points, backend):
    xp = _xp(backend)
    H = hmat.from_kernel(hmat.kernels.Gaussian(0.3), points, tol=1e-8, leaf_size=32)
    S = B.to_device(H, backend)
    b = xp.asarray(np.random.default_rng(6).random(H.shape[0]))
    # a well-conditioned SPD system: (S + 10 I) x = b
    n = H.shape[0]
    if backend == "cupy":
        from cupyx.scipy.sparse.linalg import LinearOperator, cg
    else:
        from scipy.sparse.linalg import LinearOperator, cg
    A = LinearOperator((n, n), matvec=lambda v: S @ v + 10.0 * v, dtype=S.dtype)
    try:
        x, info = cg(A, b, rtol=1e-10)
    except TypeError:  # cupyx before the scipy 1.12 keyword
        x, info = cg(A, b, tol=1e-10)
    assert info == 0
    r = _host(S @ x + 10.0 * x - b)
    assert np.linalg.norm(r) <= 1e-8 * np.linalg.norm(_host(b))
    L = S.as_linear_operator()
    np.testing.assert_allclose(_host(L.matvec(b)), _host(S @ b), rtol=1e-12)


def test_sparse_parts_storage(points):
    H = hmat.from_kernel(hmat.kernels.Laplace(3), points, tol=1e-6, leaf_size=32)
    leaves = [lf.op for lf in H.leaves()]
    D, U, W = B.partition_to_csr(H.partition, leaves, H.dtype)
    # every logical leaf once (mirrored ones of symmetric storage too): each entry of its data
    dense = sum(op.array.size for op in leaves if isinstance(op, hmat.Dense))
    lowrank = [op for op in leaves if isinstance(op, hmat.LowRank)]
    assert D.nnz == dense
    assert U.nnz == sum(op.U.size for op in lowrank) and W.nnz == sum(op.V.size for op in lowrank)
    assert U.shape[1] == W.shape[0] == sum(op.rank for op in lowrank)
    assert D.nnz + U.nnz + W.nnz >= H.stats()["stored_entries"]
    p = H.partition
    Hp = (D + U @ W).toarray()
    A = H.to_dense()[np.ix_(p.row_perm, p.col_perm)]
    assert np.linalg.norm(Hp - A) <= 1e-12 * np.linalg.norm(A)


def test_errors():
    with pytest.raises(ValueError):
        B._modules("torch")
    with pytest.raises(TypeError):
        B.to_device(object(), "numpy")
    assert B.get_array_module(np.zeros(2)) is np
    assert isinstance(B.has_cupy(), bool)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_scaled_operators_multiply_by_a_numpy_scalar(dtype):
    """CuPy arrays reject 0-d NumPy arrays as operands (the cause of a CuPy-only failure of
    ``(2 * S + S) @ x`` on an H200): lazy scaling must use a NumPy scalar of the operator's
    dtype, which also keeps float32 results float32."""
    op = 2.0 * hmat.Dense(np.eye(3, dtype=dtype))
    s = op._scalar()
    assert isinstance(s, np.generic) and not isinstance(s, np.ndarray)
    assert s.dtype == np.dtype(dtype)
    assert (op @ np.ones(3, dtype)).dtype == np.dtype(dtype)
