"""hmat never returns a silently wrong answer (issue 11, numerical half).

Every bound ``||A - H||_F <= tol ||A||_F`` is checked against a reference computed with an
exact power-of-two scaling and in extended precision (``ref_rel``), at scales from 1e-300
to 1e300; the reference never uses the code under test.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hmat
from hmat import svd
from hmat.arithmetic import add, cholesky, multiply, solve_triangular
from hmat.kernels import Exponential, Gaussian, Helmholtz, Laplace

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_rel(A, B):
    """``||A - B||_F / ||A||_F`` in extended precision after an exact 2^-e scaling."""
    A = np.asarray(A)
    B = np.asarray(B)
    e = math.frexp(float(np.max(np.abs(A))))[1]
    wide = np.clongdouble if (A.dtype.kind == "c" or B.dtype.kind == "c") else np.longdouble
    a = A.astype(wide) * np.longdouble(2.0) ** -e
    b = B.astype(wide) * np.longdouble(2.0) ** -e
    return float(np.sqrt(np.sum(np.abs(a - b) ** 2)) / np.sqrt(np.sum(np.abs(a) ** 2)))


def smooth_matrix(n, seed, dtype=np.float64, kind="cauchy"):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.random(n))
    d = np.abs(x[:, None] - x[None, :])
    A = 1.0 / (1e-2 + d) if kind == "cauchy" else np.log(d + 1e-3)
    if np.dtype(dtype).kind == "c":
        A = A * np.exp(1j * 3.0 * np.abs(x[:, None] - x[None, :]))
    return A.astype(dtype)


# ------------------------------------------------------------------ 1. overflow / underflow

@FAST
@given(e10=st.integers(-300, 300), tol=st.sampled_from([1e-3, 1e-6, 1e-9]), seed=st.integers(0, 3))
@example(e10=300, tol=1e-6, seed=0)
@example(e10=-300, tol=1e-6, seed=0)
@example(e10=160, tol=1e-6, seed=0)
def test_from_dense_bound_holds_at_every_scale(e10, tol, seed):
    A1 = smooth_matrix(160, seed)
    s = 10.0 ** e10
    A = A1 * s
    H = hmat.from_dense(A, tol=tol, leaf_size=16)
    assert np.isfinite(H.error_estimate)
    err = ref_rel(A, H.to_dense())
    assert err <= tol
    assert H.error_estimate == pytest.approx(err, rel=1e-6, abs=1e-14)
    # the compression does not depend on the scale: same storage as the unscaled matrix
    # (in full precision; adaptive precision depends on the scale: float32's range)
    Hf = hmat.from_dense(A, tol=tol, leaf_size=16, precision="full")
    H1 = hmat.from_dense(A1, tol=tol, leaf_size=16, precision="full")
    assert Hf.nbytes == H1.nbytes
    assert ref_rel(A, Hf.to_dense()) <= tol


def test_cli_numbers_finite_for_huge_entries():
    """The CLI prints ``H.error_estimate``: it was NaN (and the error 0.9) at 1e160."""
    A = smooth_matrix(128, 1) * 1e160
    H = hmat.from_dense(A, tol=1e-6, leaf_size=16)
    assert np.isfinite(H.error_estimate) and H.error_estimate <= 1e-6
    assert ref_rel(A, H.to_dense()) <= 1e-6


def scaled_hblock(H, k):
    """``2^k H`` leaf by leaf (exact: powers of two), built without the code under test."""
    ops = []
    for lf in H.leaves():
        op = lf.op
        if isinstance(op, hmat.LowRank):
            ops.append(hmat.LowRank(op.U * 2.0 ** (k - k // 2), op.V * 2.0 ** (k // 2)))
        else:
            ops.append(hmat.Dense(op.to_dense() * 2.0**k))
    return H.replace_leaves(ops)


@FAST
@given(e2=st.integers(-990, 1015), seed=st.integers(0, 3))
@example(e2=-700, seed=0)
@example(e2=700, seed=0)
@example(e2=1015, seed=0)  # entries 3.5e307: the Frobenius norm itself exceeds the float range
def test_truncate_and_add_bounds_at_every_scale(e2, seed):
    H1 = hmat.from_dense(smooth_matrix(160, seed), tol=1e-10, leaf_size=16)
    H = scaled_hblock(H1, e2)
    Hd = H.to_dense()
    T = hmat.truncate(H, 1e-4)
    assert np.isfinite(T.error_estimate)
    err = ref_rel(Hd, T.to_dense())
    assert err <= 1e-4
    assert T.error_estimate == pytest.approx(err, rel=1e-3, abs=1e-15)
    assert T.nbytes == hmat.truncate(H1, 1e-4).nbytes  # same ranks at every scale
    S = add(H, H, 1e-4, beta=0.5)
    assert ref_rel(1.5 * Hd, S.to_dense()) <= 1e-4


@pytest.mark.parametrize("e2", [-480, 0, 259])  # 2^259 ~ 1e78: the product's norm^2 overflows
def test_multiply_scale_equivariant(e2):
    A = smooth_matrix(160, 2)
    H1 = hmat.from_dense(A, tol=1e-9, leaf_size=16)
    H = hmat.from_dense(A * 2.0**e2, tol=1e-9, leaf_size=16)
    P = multiply(H, H, 1e-6).to_dense()
    exact = H1.to_dense() @ H1.to_dense() * 2.0 ** (2 * e2)  # exact scaling
    assert np.all(np.isfinite(P))
    # the documented accuracy of the product (blockwise tol, accumulated over the levels)
    assert ref_rel(exact, P) <= H1.depth * 1e-6


@pytest.mark.parametrize("scale", [1e160, 1e-200])
def test_user_kernel_scaled(scale):
    rng = np.random.default_rng(3)
    X = rng.random((600, 2))

    def f(x, y):
        return scale * np.exp(-np.linalg.norm(x - y, axis=-1) / 0.5)

    # scale invariance in full precision (adaptive precision depends on float32's range)
    H = hmat.from_kernel(f, X, tol=1e-6, leaf_size=32, precision="full")
    ref = hmat.from_kernel(lambda x, y: np.exp(-np.linalg.norm(x - y, axis=-1) / 0.5), X, tol=1e-6, leaf_size=32,
                           precision="full")
    K = np.exp(-np.linalg.norm(X[:, None] - X[None], axis=-1) / 0.5) * scale
    assert ref_rel(K, hmat.from_kernel(f, X, tol=1e-6, leaf_size=32).to_dense()) <= 1e-6
    assert H.stats()["n_lowrank"] > 0
    assert np.isfinite(H.error_estimate) and H.error_estimate == pytest.approx(ref.error_estimate, rel=1e-6)
    assert ref_rel(K, H.to_dense()) <= 1e-6
    assert H.nbytes == ref.nbytes


def test_exponential_tiny_values_no_zero_division():
    """Kernel values 1e-300 ... 1e-156 used to raise a bare ZeroDivisionError."""
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random((150, 1)) * 5, 108 + rng.random((150, 1)) * 99])
    H = hmat.from_kernel(Exponential(0.3), p, tol=1e-6, leaf_size=16)
    K = Exponential(0.3).block(p, p)
    assert ref_rel(K, H.to_dense()) <= 1e-6
    # and every block, however small, is within its own tolerance
    for lf in H.leaves():
        r, c = lf.row_start, lf.col_start
        m, n = lf.op.shape
        P = H.row_perm
        blk = K[np.ix_(P[r:r + m], H.col_perm[c:c + n])]
        if np.any(blk):
            assert ref_rel(blk, lf.op.to_dense()) <= 1e-6


def test_builtin_kernel_refuses_overflowing_coordinates():
    X = np.random.default_rng(0).random((50, 3)) * 1e200
    with pytest.raises(ValueError, match="points"):
        hmat.from_kernel(Laplace(3), X)


@pytest.mark.parametrize("split", ["bbox", "pca", "cardinality"])
@pytest.mark.parametrize("e2", [-990, -500, 500, 990])
def test_cluster_tree_scale_invariant(split, e2):
    X = np.random.default_rng(1).random((400, 3))
    t1 = hmat.ClusterTree(X, leaf_size=16, split=split)
    t = hmat.ClusterTree(X * 2.0**e2, leaf_size=16, split=split)
    np.testing.assert_array_equal(t.perm, t1.perm)
    np.testing.assert_array_equal(t.start, t1.start)
    node = t.root.children[0]
    assert np.isfinite(node.diameter) and node.diameter > 0


# ------------------------------------------------------------------ 2. repeated points

def _gauss(x, y):
    return np.exp(-0.5 * np.sum((x - y) ** 2, axis=-1) / 0.09)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 50), reps=st.integers(4, 6), d=st.sampled_from([2, 3]))
@example(seed=1, reps=4, d=3)
@example(seed=3, reps=4, d=3)
def test_repeated_points_compiled(seed, reps, d):
    p = np.random.default_rng(seed).random((250, d))
    P = np.repeat(p, reps, axis=0)
    H = hmat.from_kernel(Gaussian(0.3), P, tol=1e-4)
    K = Gaussian(0.3).block(P, P)
    assert ref_rel(K, H.to_dense()) <= 1e-4


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 50), reps=st.integers(4, 5))
@example(seed=1, reps=4)
def test_repeated_points_python(seed, reps):
    p = np.random.default_rng(seed).random((250, 3))
    P = np.repeat(p, reps, axis=0)
    H = hmat.from_kernel(_gauss, P, tol=1e-4)
    K = Gaussian(0.3).block(P, P)
    assert ref_rel(K, H.to_dense()) <= 1e-4


# ------------------------------------------------------------------ 3. complex data

def test_complex_kernel_real_dtype_refused():
    X = np.random.default_rng(0).random((100, 3))
    with pytest.raises(TypeError, match="imaginary"):
        hmat.from_kernel(Helmholtz(3.0), X, dtype=np.float32)
    with pytest.raises(TypeError, match="imaginary"):
        Helmholtz(3.0).block(X, X, dtype=np.float64)


def test_complex_user_kernel_refused_or_kept():
    X = np.random.default_rng(0).random((300, 3))

    def f(x, y):
        return np.exp(1j * np.linalg.norm(x - y, axis=-1))

    with pytest.raises(TypeError, match="imaginary"):
        hmat.from_kernel(f, X)
    H = hmat.from_kernel(f, X, dtype=np.complex128, tol=1e-6)
    K = np.exp(1j * np.linalg.norm(X[:, None] - X[None], axis=-1))
    assert H.dtype == np.complex128
    assert ref_rel(K, H.to_dense()) <= 1e-6


def test_complex_points_refused():
    X = np.random.default_rng(0).random((50, 2)) + 1j
    with pytest.raises(TypeError, match="points"):
        hmat.ClusterTree(X)
    with pytest.raises(TypeError, match="targets"):
        hmat.from_kernel(Gaussian(1.0), X.real, targets=X)


# ------------------------------------------------------------------ 4. arithmetic bounds

def test_add_nearly_cancelling_lowrank_terms():
    """``add(A, L1 + L2)`` with ``L1 ~ -L2`` large: a partial sum used to be truncated
    relative to its own (huge) norm, 1e4 x over the bound. Wide leaves (128 x 4096) make
    the pending pieces many but not yet as large as the block."""
    rng = np.random.default_rng(4)
    m, n = 256, 8192
    x, y = np.sort(rng.random(m)), np.sort(rng.random(n))
    A = 1.0 / (1e-2 + np.abs(x[:, None] - y[None, :]))
    H = hmat.from_dense(A, tol=1e-10, leaf_size=128)
    U = rng.standard_normal((m, 40))
    V = rng.standard_normal((n, 40))
    big = 1e5 * np.linalg.norm(A) / np.linalg.norm(U @ V.T)
    L1 = hmat.LowRank(big * U, V)
    L2 = hmat.LowRank(-big * (1 - 1e-7) * U, V)
    S = add(H, L1 + L2, 1e-6)
    exact = H.to_dense() + (big * U) @ V.T - (big * (1 - 1e-7) * U) @ V.T
    assert ref_rel(exact, S.to_dense()) <= 1e-6


@pytest.mark.parametrize("scale", [1e9, 1e10])
def test_coarsen_nearly_cancelling_factor_columns(scale):
    """Leaves ``U V^H`` with two nearly cancelling large columns: the Gram-matrix norm
    lost all digits and coarsen spent a budget it did not have (up to 6x the bound)."""
    rng = np.random.default_rng(5)
    x = np.sort(rng.random(256))
    H = hmat.from_dense(np.exp(-(x[:, None] - x[None, :]) ** 2 / 0.5), tol=1e-8, leaf_size=32)
    ops = []
    for lf in H.leaves():
        op = lf.op
        if isinstance(op, hmat.LowRank) and op.rank > 0:
            m, n = op.shape
            u = rng.standard_normal((m, 1)) * scale
            v = rng.standard_normal((n, 1))
            ops.append(hmat.LowRank(np.hstack([op.U, u, u]), np.hstack([op.V, v, -(1 + 1e-9) * v])))
        else:
            ops.append(op)
    H2 = H.replace_leaves(ops)
    D = H2.to_dense()
    for tol in (1e-3, 1e-5):
        C = hmat.coarsen(H2, tol)
        assert C.nbytes < H2.nbytes  # it did coarsen
        err = ref_rel(D, C.to_dense())
        assert err <= tol
        assert C.error_estimate >= 0.5 * err


@settings(max_examples=10, deadline=None)
@given(c=st.integers(2, 40), seed=st.integers(0, 5), dtype=st.sampled_from([np.float32, np.float64]),
       kind=st.sampled_from(["cauchy", "log"]))
@example(c=8, seed=0, dtype=np.float64, kind="log")  # 1.17 x the bound before the fix
@example(c=5, seed=0, dtype=np.float64, kind="cauchy")
@example(c=9, seed=1, dtype=np.float32, kind="log")
def test_from_dense_tol_near_machine_epsilon(c, seed, dtype, kind):
    A = smooth_matrix(300, seed, dtype, kind)
    tol = c * float(np.finfo(dtype).eps)
    H = hmat.from_dense(A, tol=tol, leaf_size=16)
    err = ref_rel(A, H.to_dense())
    assert err <= tol
    assert H.error_estimate <= tol


def test_tolerance_below_dtype_epsilon_refused():
    A = smooth_matrix(128, 0)
    H = hmat.from_dense(A, tol=1e-8, leaf_size=16)
    for f in (lambda: hmat.truncate(H, 1e-18), lambda: add(H, H, 1e-18), lambda: multiply(H, H, 1e-18),
              lambda: hmat.coarsen(H, 1e-18)):
        with pytest.raises(ValueError, match="tol"):
            f()
    H32 = hmat.from_dense(A.astype(np.float32), tol=1e-4, leaf_size=16)
    with pytest.raises(ValueError, match="float32"):
        hmat.truncate(H32, 1e-7)


@settings(max_examples=8, deadline=None)
@given(c=st.sampled_from([32, 64, 100, 300, 1000]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 3))
def test_truncate_at_smallest_accepted_tol_meets_bound(c, dtype, seed):
    A = smooth_matrix(200, seed, dtype)
    H = hmat.from_dense(A, tol=max(1e-6, 8 * float(np.finfo(dtype).eps)), leaf_size=16)
    tol = c * float(np.finfo(dtype).eps)
    T = hmat.truncate(H, tol)
    assert ref_rel(H.to_dense(), T.to_dense()) <= tol


# ------------------------------------------------------------------ 5. factorizations

def test_cholesky_refuses_non_hermitian():
    rng = np.random.default_rng(0)
    X = rng.random((300, 2))
    K = Gaussian(0.3).block(X, X) + 0.5 * np.eye(300)
    B = K.copy()
    B[np.triu_indices(300, 1)] *= 1.03
    H = hmat.from_dense(B, tol=1e-8, points=X, leaf_size=32)
    with pytest.raises(ValueError, match="Hermitian"):
        cholesky(H, 1e-8)
    F = cholesky(hmat.from_dense(K, tol=1e-8, points=X, leaf_size=32), 1e-8)
    b = rng.standard_normal(300)
    assert np.linalg.norm(K @ F.solve(b) - b) <= 1e-5 * np.linalg.norm(b)


# ------------------------------------------------------------------ crashes -> clear errors

def test_clear_errors_naming_the_argument():
    rng = np.random.default_rng(0)
    X = rng.random((200, 2))
    H = hmat.from_dense(Gaussian(0.3).block(X, X), tol=1e-6, points=X, leaf_size=32)
    with pytest.raises((TypeError, ValueError), match="alpha"):
        multiply(H, H, 1e-6, alpha=np.nan)
    with pytest.raises(TypeError, match="alpha"):
        multiply(H, H, 1e-6, alpha="3")
    with pytest.raises(ValueError, match="U"):
        svd.recompress(np.full((5, 2), np.nan), np.ones((5, 2)), tol=0.1)
    with pytest.raises(ValueError, match="tol"):
        svd.recompress(np.ones((5, 2)), np.ones((5, 2)), tol=5)
    with pytest.raises(TypeError, match="rank"):
        svd.recompress(np.ones((5, 2)), np.ones((5, 2)), tol=0.1, rank=2.5)
    with pytest.raises(ValueError, match="abs_err"):
        svd.recompress(np.ones((5, 2)), np.ones((5, 2)), abs_err=-1.0)
    with pytest.raises(TypeError, match="n_samples"):
        hmat.from_kernel(Gaussian(0.3), X, n_samples=2.5)
    with pytest.raises(TypeError, match="lower"):
        solve_triangular(H, np.ones(200), lower="no")
    T = X.copy()
    T[3, 0] = np.nan
    with pytest.raises(ValueError, match="targets"):
        hmat.from_kernel(Gaussian(0.3), X, targets=T)


def test_pca_split_huge_coordinates():
    X = np.random.default_rng(2).random((300, 2))
    t = hmat.ClusterTree(1e300 * X, split="pca", leaf_size=16)
    np.testing.assert_array_equal(t.perm, hmat.ClusterTree(X, split="pca", leaf_size=16).perm)


def test_single_precision_overflow_refused():
    """Laplace on points 1e-40 apart: values 1e39 overflow float32 (silent inf before)."""
    X = np.random.default_rng(0).random((300, 3)) * 1e-40
    with pytest.raises(ValueError, match="float32"):
        hmat.from_kernel(Laplace(3), X, dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        hmat.from_kernel(lambda x, y: 1e39 / (1 + np.sum((x - y) ** 2, axis=-1)), X * 1e40, dtype=np.float32)


def test_cli_compress_prints_finite_certified_error(tmp_path):
    """``python -m hmat compress`` printed ``nan <= tol`` and exited 0 for entries ~1e300."""
    import os
    import subprocess
    import sys

    src = tmp_path / "big.npy"
    np.save(src, smooth_matrix(200, 0) * 1e298)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "hmat", "compress", str(src), str(tmp_path / "out.npz"),
                        "--tol", "1e-4"], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "certified error" in ln)
    assert "nan" not in line
    err = float(line.split("||A||_F =")[1].split("<=")[0])
    assert 0 < err <= 1e-4
