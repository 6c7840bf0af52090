"""Builders: the certified bound of from_dense, the accuracy of from_kernel, recompression."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import hmat

from .conftest import random_array


def rel_fro(A, H):
    A = np.asarray(A, dtype=np.complex128)
    D = H.to_dense().astype(np.complex128)
    na = np.linalg.norm(A)
    return np.linalg.norm(A - D) / na if na > 0 else np.linalg.norm(D)


# ----------------------------------------------------------------- from_dense


def _matrix(kind, m, n, seed, dtype):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return random_array(rng, (m, n), dtype)
    if kind == "lowrank_noise":
        k = min(m, n, 4)
        A = random_array(rng, (m, k), dtype) @ random_array(rng, (k, n), dtype)
        return (A + 1e-5 * random_array(rng, (m, n), dtype)).astype(dtype)
    if kind == "kernel":
        x, y = rng.random((m, 2)), rng.random((n, 2)) + 0.5
        return hmat.kernels.Gaussian(0.3).block(x, y).astype(dtype)
    if kind == "zero_blocks":
        A = random_array(rng, (m, n), dtype)
        A[: m // 2, n // 3:] = 0
        return A
    if kind == "constant_blocks":
        A = np.ones((m, n), dtype)
        A[m // 2:, : n // 2] = 3.0
        return A
    if kind == "zeros":
        return np.zeros((m, n), dtype)
    raise KeyError(kind)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["random", "lowrank_noise", "kernel", "zero_blocks", "constant_blocks", "zeros"]),
    m=st.integers(1, 90),
    n=st.integers(1, 90),
    tol=st.sampled_from([1e-8, 1e-5, 1e-3, 0.1, 0.5, 0.9]),
    leaf=st.integers(1, 20),
    dtype=st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]),
    seed=st.integers(0, 10_000),
)
def test_from_dense_certified_bound(kind, m, n, tol, leaf, dtype, seed):
    """||A - H||_F <= tol ||A||_F, and error_estimate is the achieved error."""
    A = _matrix(kind, m, n, seed, dtype)
    H = hmat.from_dense(A, tol=tol, leaf_size=leaf)
    assert H.shape == A.shape and H.dtype == np.dtype(dtype)
    err = rel_fro(A, H)
    assert err <= tol, (err, tol)
    eps = np.finfo(dtype).eps
    assert abs(err - H.error_estimate) <= 50 * eps + 1e-3 * tol


@settings(max_examples=20, deadline=None)
@given(st.integers(20, 200), st.sampled_from([1e-6, 1e-3, 1e-1]), st.integers(0, 1000))
def test_from_dense_with_points(n, tol, seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 3))
    A = hmat.kernels.Laplace(3).block(pts, pts)
    H = hmat.from_dense(A, tol=tol, points=pts, leaf_size=8)
    assert rel_fro(A, H) <= tol
    np.testing.assert_allclose(H @ np.ones(n), H.to_dense() @ np.ones(n), rtol=1e-10, atol=1e-10)


def test_from_dense_rectangular_points():
    rng = np.random.default_rng(0)
    x, y = rng.random((120, 2)), rng.random((70, 2)) + 2.0
    A = hmat.kernels.Laplace(2).block(x, y)
    H = hmat.from_dense(A, tol=1e-6, points=(x, y), leaf_size=8)
    assert rel_fro(A, H) <= 1e-6
    assert H.compression_ratio > 1.5


def test_from_dense_compresses_kernel_matrix():
    rng = np.random.default_rng(1)
    pts = rng.random((600, 2))
    A = hmat.kernels.Exponential(0.5).block(pts, pts)
    H = hmat.from_dense(A, tol=1e-4, points=pts, leaf_size=32)
    assert H.compression_ratio > 2.0
    assert H.error_estimate <= 1e-4


def test_from_dense_cheaper_than_dense_only():
    """Full-rank random data stays dense (low rank never pays)."""
    A = np.random.default_rng(2).standard_normal((64, 64))
    H = hmat.from_dense(A, tol=1e-6, leaf_size=8, precision="full")
    assert H.stats()["n_lowrank"] == 0
    assert H.error_estimate == 0.0
    # adaptive precision: the dense blocks in float32, their measured rounding the error
    Ha = hmat.from_dense(A, tol=1e-6, leaf_size=8)
    assert Ha.stats()["n_lowrank"] == 0 and set(Ha.stats()["nbytes_by_dtype"]) == {"float32"}
    assert 0 < Ha.error_estimate <= 1e-6
    assert Ha.error_estimate == pytest.approx(np.linalg.norm(A - Ha.to_dense()) / np.linalg.norm(A), rel=1e-6)


# ----------------------------------------------------------------- from_kernel

KERNELS = [
    hmat.kernels.Laplace(3),
    hmat.kernels.Laplace(2),
    hmat.kernels.Helmholtz(3.0),
    hmat.kernels.Gaussian(0.3),
    hmat.kernels.Exponential(0.5),
    hmat.kernels.Matern(0.4, nu=1.5),
    hmat.kernels.Matern(0.4, nu=2.5),
]


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_from_kernel_error_below_tol(kernel, tol):
    rng = np.random.default_rng(3)
    d = kernel.dim or 3
    pts = rng.random((700, d))
    H = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=24)
    A = kernel.block(pts, pts)
    assert H.dtype == kernel.dtype
    assert rel_fro(A, H) <= tol
    assert H.error_estimate <= tol


def test_aca_saves_kernel_evaluations():
    """On the sphere benchmark, the build evaluates far fewer entries than N^2."""
    from hmat.points import sphere_points

    pts = sphere_points(6000)
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-6)
    assert H.stats()["kernel_evaluations"] < 0.5 * 6000**2


@settings(max_examples=12, deadline=None)
@given(st.integers(50, 400), st.integers(1, 3), st.integers(0, 10_000), st.sampled_from([1e-2, 1e-5]))
def test_from_kernel_random_clouds(n, d, seed, tol):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, d)) * rng.uniform(0.1, 10)
    k = hmat.kernels.Matern(1.0, nu=2.5)
    H = hmat.from_kernel(k, pts, tol=tol, leaf_size=16)
    assert rel_fro(k.block(pts, pts), H) <= tol


def test_from_kernel_targets_rectangular():
    rng = np.random.default_rng(4)
    src, trg = rng.random((400, 3)), rng.random((250, 3)) + [1.5, 0, 0]
    k = hmat.kernels.Laplace(3)
    H = hmat.from_kernel(k, src, targets=trg, tol=1e-6, leaf_size=16)
    assert H.shape == (250, 400)
    assert rel_fro(k.block(trg, src), H) <= 1e-6


def test_user_kernels_function_and_object():
    rng = np.random.default_rng(5)
    pts = rng.random((300, 2))

    def f(x, y):
        return 1.0 / (1.0 + np.sum((x - y) ** 2, axis=-1))

    class Obj:
        dtype = np.float64

        def block(self, x, y):
            return f(x[:, None, :], y[None, :, :])

    A = Obj().block(pts, pts)
    for k in (f, Obj(), hmat.kernels.FunctionKernel(f)):
        H = hmat.from_kernel(k, pts, tol=1e-6, leaf_size=16)
        assert rel_fro(A, H) <= 1e-6
        assert H.stats()["n_lowrank"] > 0


def test_aca_failure_modes_compiled():
    """Far blocks that are numerically zero (Gaussian of tiny length scale)."""
    rng = np.random.default_rng(6)
    pts = np.vstack([rng.random((150, 2)), rng.random((150, 2)) + 3.0])
    k = hmat.kernels.Gaussian(0.05)
    H = hmat.from_kernel(k, pts, tol=1e-6, leaf_size=16)
    assert rel_fro(k.block(pts, pts), H) <= 1e-6


def test_aca_failure_modes_user_kernel():
    """Blocks whose first rows are zero (half the rows vanish), constant blocks, zero blocks."""
    rng = np.random.default_rng(6)
    pts = np.vstack([rng.random((200, 2)), rng.random((200, 2)) + 3.0])

    def half_zero(x, y):
        g = np.exp(-np.sum((x - y) ** 2, axis=-1) / 0.5)
        return g * (x[..., 1] > np.median(pts[:, 1]))

    A = hmat.kernels.FunctionKernel(half_zero).block(pts, pts)
    H = hmat.from_kernel(half_zero, pts, tol=1e-6, leaf_size=16)
    assert rel_fro(A, H) <= 1e-6
    ones = lambda x, y: np.ones(np.broadcast_shapes(x.shape, y.shape)[:2])  # noqa: E731
    const = hmat.from_kernel(ones, pts, tol=1e-8, leaf_size=16)
    assert rel_fro(np.ones((400, 400)), const) <= 1e-8
    assert const.stats()["rank_max"] <= 1
    zero = hmat.from_kernel(lambda x, y: 0 * ones(x, y), pts, tol=1e-8, leaf_size=16)
    assert np.abs(zero.to_dense()).max() == 0 and zero.stats()["rank_max"] == 0


def test_kernel_nan_rejected():
    pts = np.random.default_rng(7).random((100, 2))
    with pytest.raises(ValueError, match="NaN"):
        hmat.from_kernel(lambda x, y: np.full(np.broadcast_shapes(x.shape, y.shape)[:2], np.nan), pts, tol=1e-3)


def test_progress_bar_runs(capsys):
    pts = np.random.default_rng(8).random((200, 3))
    hmat.from_kernel(hmat.kernels.Laplace(3), pts, tol=1e-3, leaf_size=16, progress=True)
    assert "hmat build" in capsys.readouterr().err


# ----------------------------------------------------------------- truncate / coarsen


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_truncate_and_coarsen_bounds(dtype, tol):
    rng = np.random.default_rng(9)
    pts = rng.random((500, 2))
    k = hmat.kernels.Helmholtz(2.0) if np.dtype(dtype).kind == "c" else hmat.kernels.Exponential(0.7)
    if np.dtype(dtype).kind == "c":
        pts = rng.random((500, 3))
    # full storage: truncate and coarsen return full storage (of a symmetric or mixed-precision
    # operator too: they work on its logical leaves), so "never more bytes" compares like with like
    H = hmat.from_kernel(k, pts, tol=1e-8, leaf_size=16, precision="full", symmetric=False)
    Hd = H.to_dense()
    T = H.truncate(tol)
    assert rel_fro(Hd, T) <= tol
    assert T.nbytes <= H.nbytes
    assert T.error_estimate == pytest.approx(rel_fro(Hd, T), rel=1e-6, abs=1e-13)
    C = H.coarsen(tol)
    assert rel_fro(Hd, C) <= tol
    assert C.nbytes <= H.nbytes
    assert rel_fro(Hd, C) <= C.error_estimate * (1 + 1e-9) + 1e-14
    x = rng.random(500)
    np.testing.assert_allclose(C @ x, C.to_dense() @ x, atol=1e-10 * np.abs(Hd).sum())


def test_coarsen_merges_low_rank_siblings():
    """A globally rank-1 matrix coarsens into a single low-rank block."""
    rng = np.random.default_rng(10)
    u, v = rng.standard_normal(128), rng.standard_normal(128)
    H = hmat.from_dense(np.outer(u, v), tol=1e-10, leaf_size=8)
    C = H.coarsen(1e-8)
    assert len(C.leaves()) == 1 and C.stats()["rank_max"] == 1
    assert rel_fro(np.outer(u, v), C) <= 1e-8


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("tol", [0, -1e-3, 1.0, 2.0])
def test_bad_tol(tol):
    with pytest.raises(ValueError, match="tol"):
        hmat.from_dense(np.eye(4), tol=tol)
    with pytest.raises(ValueError, match="tol"):
        hmat.from_kernel(hmat.kernels.Gaussian(1.0), np.random.rand(10, 2), tol=tol)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: hmat.from_dense(np.array([[1.0, np.nan]]), tol=0.1), ValueError, "A contains NaN"),
        (lambda: hmat.from_dense(np.array([[1.0, np.inf]]), tol=0.1), ValueError, "A contains NaN or Inf"),
        (lambda: hmat.from_dense(np.ones(4), tol=0.1), ValueError, "A must be 2-D"),
        (lambda: hmat.from_dense(np.ones((3, 3), np.float16), tol=0.1), TypeError, "A.dtype"),
        (lambda: hmat.from_dense(np.ones((4, 4)), tol=0.1, eta=0), ValueError, "eta"),
        (lambda: hmat.from_dense(np.ones((4, 4)), tol=0.1, leaf_size=0), ValueError, "leaf_size"),
        (lambda: hmat.from_dense(np.ones((4, 4)), tol=0.1, admissibility="loose"), ValueError, "admissibility"),
        (lambda: hmat.from_dense(np.ones((4, 4)), tol=0.1, points=np.random.rand(5, 2)), ValueError, "points"),
        (lambda: hmat.from_kernel(hmat.kernels.Laplace(3), np.zeros((0, 3)), tol=0.1), ValueError, "empty"),
        (lambda: hmat.from_kernel(hmat.kernels.Laplace(3), np.random.rand(9, 2), tol=0.1), ValueError, "d = 3"),
        (lambda: hmat.from_kernel(hmat.kernels.Laplace(3), [[0, 0, np.nan]], tol=0.1), ValueError, "NaN"),
        (lambda: hmat.from_kernel(42, np.random.rand(9, 2), tol=0.1), TypeError, "kernel"),
        (lambda: hmat.kernels.Laplace(dim=4), ValueError, "dim"),
        (lambda: hmat.kernels.Matern(1.0, nu=0.7), ValueError, "nu"),
        (lambda: hmat.kernels.Gaussian(-1.0), ValueError, "length_scale"),
        (lambda: hmat.Dense(np.ones((2, 2, 2))), ValueError, "array must be 2-D"),
        (lambda: hmat.LowRank(np.ones((3, 2)), np.ones((4, 3))), ValueError, "columns"),
        (lambda: hmat.HBlock([[hmat.Dense(np.ones((2, 2))), hmat.Dense(np.ones((3, 2)))]]), ValueError, "blocks"),
        (lambda: hmat.HBlock([[hmat.Dense(np.ones((2, 2)))]], row_perm=[0, 0]), ValueError, "row_perm"),
        (lambda: hmat.HBlock([[hmat.Dense(np.ones((2, 2))), hmat.Dense(np.ones((2, 2), np.float32))]]), TypeError, "dtype"),
        (lambda: hmat.Dense(np.ones((2, 2))) * np.nan, ValueError, "alpha"),
    ],
)
def test_bad_input_messages(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_nothing_half_built_on_error():
    """A failing kernel raises and leaves no partial object behind (no return value)."""
    calls = {"n": 0}

    def flaky(x, y):
        calls["n"] += 1
        if calls["n"] > 20:
            return np.full(np.broadcast_shapes(x.shape, y.shape)[:2], np.inf)
        return np.exp(-np.sum((x - y) ** 2, axis=-1))

    H = None
    with pytest.raises(ValueError, match="NaN or Inf"):
        H = hmat.from_kernel(flaky, np.random.default_rng(0).random((300, 2)), tol=1e-4, leaf_size=16)
    assert H is None
