"""One conformance suite over every operator type x dtype (the LinearOperator laws)."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import hmat

from .conftest import KINDS, law_tol, make_operator, random_array, rtol_for


def fro(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.complex128)))


def close(a, b, rtol, scale):
    """``||a - b||_2 <= rtol * scale``: ``scale`` is the law's own size (``||A||_F ||x||``).

    Never scaled by something that grows with unrelated entries: with ``b != 0`` an all-zero
    ``a`` fails as soon as ``||b|| > rtol * scale`` (see test_close_rejects_a_zero_result).
    """
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = fro(a - b)
    assert err <= rtol * scale, f"||a - b|| = {err:.3e} > {rtol:.1e} * {scale:.3e}"


def close_dense(D, ref, rtol):
    """A dense matrix against its reference: ``||D - ref||_F <= rtol ||ref||_F``."""
    close(D, ref, rtol, fro(ref))


def test_is_scipy_operator(kind, dtype):
    op, ref = make_operator(kind, dtype)
    assert isinstance(op, spla.LinearOperator)
    assert isinstance(op, hmat.LinearOperator)
    assert op.shape == ref.shape
    assert op.dtype in (np.dtype(dtype), np.result_type(dtype, np.float64) if kind == "difference_scaled" else np.dtype(dtype))


def test_to_dense_agrees(kind, dtype):
    op, ref = make_operator(kind, dtype)
    D = op.to_dense()
    assert D.shape == op.shape and D.dtype == op.dtype
    close_dense(D, ref, law_tol(kind, dtype))


def test_adjoint_identity(kind, dtype):
    """<A x, y> == <x, A^H y> for random x, y (the dot test): |difference| <= c eps ||A|| ||x|| ||y||."""
    op, ref = make_operator(kind, dtype)
    rng = np.random.default_rng(1)
    m, n = op.shape
    x = random_array(rng, n, dtype)
    y = random_array(rng, m, dtype)
    lhs = np.vdot(y, op.matvec(x))
    rhs = np.vdot(op.rmatvec(y), x)
    assert abs(lhs - rhs) <= 50 * rtol_for(dtype) * fro(ref) * fro(x) * fro(y)


def test_matmat_is_stacked_matvec(kind, dtype):
    op, ref = make_operator(kind, dtype)
    rng = np.random.default_rng(2)
    X = random_array(rng, (op.shape[1], 3), dtype)
    Y = op.matmat(X)
    assert Y.shape == (op.shape[0], 3)
    for j in range(3):
        close(Y[:, j], op.matvec(X[:, j]), 10 * rtol_for(dtype), fro(ref) * fro(X[:, j]))
    Z = op.rmatmat(random_array(rng, (op.shape[0], 2), dtype))
    assert Z.shape == (op.shape[1], 2)


def matvec_cases(kind, dtype):
    """``(name, computed, reference, scale)`` for every way of applying the operator."""
    op, ref = make_operator(kind, dtype)
    rng = np.random.default_rng(3)
    x = random_array(rng, op.shape[1], dtype)
    y = random_array(rng, op.shape[0], dtype)
    Y2 = random_array(rng, (2, op.shape[0]), dtype)
    a = fro(ref)
    return [
        ("A @ x", lambda: op @ x, ref @ x, a * fro(x)),
        ("A.H @ y", lambda: op.H @ y, ref.conj().T @ y, a * fro(y)),
        ("A.T @ y", lambda: op.T @ y, ref.T @ y, a * fro(y)),
        # ndarray @ op reaches __rmatmul__ (1-D and 2-D)
        ("y @ A", lambda: y @ op, y @ ref, a * fro(y)),
        ("Y @ A", lambda: Y2 @ op, Y2 @ ref, a * fro(Y2)),
    ]


def test_matvec_matches_dense(kind, dtype):
    for name, computed, expected, scale in matvec_cases(kind, dtype):
        close(computed(), expected, law_tol(kind, dtype), scale)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "lowrank0"])  # lowrank0 IS zero
def test_close_rejects_a_zero_result(kind, dtype):
    """The tolerance can fail: an all-zero product (a broken matvec) is rejected for every kind."""
    for name, _, expected, scale in matvec_cases(kind, dtype):
        with pytest.raises(AssertionError):
            close(np.zeros_like(expected), expected, law_tol(kind, dtype), scale)
    op, ref = make_operator(kind, dtype)
    with pytest.raises(AssertionError):
        close_dense(np.zeros_like(ref), ref, law_tol(kind, dtype))


def test_double_adjoint_and_transpose(kind, dtype):
    op, ref = make_operator(kind, dtype)
    t = law_tol(kind, dtype)
    close_dense(op.H.H.to_dense(), ref, t)
    close_dense(op.T.T.to_dense(), ref, t)
    close_dense(op.H.to_dense(), ref.conj().T, t)
    close_dense(op.conj().to_dense(), ref.conj(), t)


def test_algebra_laws(kind, dtype):
    op, ref = make_operator(kind, dtype)
    rng = np.random.default_rng(4)
    x = random_array(rng, op.shape[1], dtype)
    a, b = 1.5, -0.25
    t = 10 * rtol_for(dtype)  # both sides come from the operator: only rounding differs
    s = fro(ref) * fro(x)
    # (a + b) A x == a A x + b A x
    close(((a + b) * op) @ x, (a * op + b * op) @ x, t, s)
    # (A + A) - A == A ; -A == (-1) A
    close(((op + op) - op) @ x, op @ x, t, 3 * s)
    close((-op) @ x, -(op @ x), t, s)
    close((op / 2) @ x, 0.5 * (op @ x), t, s)
    # (A B)^H == B^H A^H, with B = A^H
    P = op @ op.H
    y = random_array(rng, op.shape[0], dtype)
    close(P.H @ y, op @ (op.H @ y), t, fro(ref) ** 2 * fro(y))
    assert isinstance(op + op, hmat.LinearOperator)
    assert isinstance(2 * op, hmat.LinearOperator)
    assert isinstance(op @ op.H, hmat.LinearOperator)


def test_complex_scalar_promotes(kind, dtype):
    op, ref = make_operator(kind, dtype)
    z = (2j * op)
    assert z.dtype.kind == "c"
    close_dense(z.to_dense(), 2j * ref, law_tol(kind, dtype))


def test_nbytes_ratio_astype(kind, dtype):
    op, ref = make_operator(kind, dtype)
    assert op.nbytes >= 0
    if op.nbytes:
        assert op.compression_ratio == pytest.approx(op.shape[0] * op.shape[1] * op.dtype.itemsize / op.nbytes)
    target = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    up = op.astype(target)
    assert up.dtype == np.dtype(target)
    close_dense(up.to_dense(), ref, law_tol(kind, dtype))


def test_to_dense_refuses_above_cap(kind, dtype):
    op, _ = make_operator(kind, dtype)
    if op.shape[0] * op.shape[1] == 0:
        pytest.skip("empty operator needs no memory")
    with pytest.raises(MemoryError, match="max_bytes"):
        op.to_dense(max_bytes=8)


def test_mismatched_shapes_rejected(kind, dtype):
    op, _ = make_operator(kind, dtype)
    other = hmat.Dense(np.ones((op.shape[0] + 1, op.shape[1] + 2), dtype))
    with pytest.raises(ValueError, match="shape"):
        op + other
    with pytest.raises(ValueError, match="inner dimensions"):
        op @ hmat.Dense(np.ones((op.shape[1] + 1, 2), dtype))
    with pytest.raises(ValueError, match="shape"):
        op @ np.ones(op.shape[1] + 1, dtype)


def test_lowrank_adjoint_is_structural():
    rng = np.random.default_rng(0)
    U, V = random_array(rng, (5, 2), np.complex128), random_array(rng, (4, 2), np.complex128)
    L = hmat.LowRank(U, V)
    assert L.H == hmat.LowRank(V, U)
    assert isinstance(L.H, hmat.LowRank) and L.H.U is L.V and L.H.V is L.U  # no copies


def test_hblock_adjoint_is_structural():
    op, _ = make_operator("from_kernel", np.float64)
    assert isinstance(op.H, hmat.HBlock)
    assert op.H.H is op
    assert len(op.H.leaves()) == len(op.leaves())


def test_hblock_entry_access_raises():
    op, _ = make_operator("hblock_nested", np.float64)
    with pytest.raises(TypeError, match="entry access"):
        op[0, 0]


def test_int_input_vector_is_cast(dtype):
    op, ref = make_operator("dense", dtype)
    x = np.arange(op.shape[1])
    y = op @ x
    assert y.dtype == op.dtype
    close(y, ref @ x, 10 * rtol_for(dtype), fro(ref) * fro(x))


def test_real_operator_complex_vector():
    op, ref = make_operator("from_kernel", np.float64)
    x = np.random.default_rng(0).standard_normal(op.shape[1]) * (1 + 2j)
    y = op @ x
    assert y.dtype == np.complex128
    close(y, ref @ x, 1e-4, fro(ref) * fro(x))  # ref: the kernel, H within tol=1e-4 of it


def test_foreign_scipy_operator_joins_our_algebra():
    rng = np.random.default_rng(5)
    B = rng.standard_normal((6, 6))
    foreign = spla.aslinearoperator(B)
    D = hmat.Dense(np.eye(6))
    for op, ref in ((D + foreign, np.eye(6) + B), (D - foreign, np.eye(6) - B), (D @ foreign, B)):
        assert isinstance(op, hmat.LinearOperator)
        np.testing.assert_allclose(op.to_dense(), ref, atol=1e-12)
        np.testing.assert_allclose(op.H.to_dense(), ref.T, atol=1e-12)
        assert op.astype(np.float32).to_dense().dtype == np.float32
