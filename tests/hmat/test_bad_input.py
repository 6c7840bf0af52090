"""Every claim of the README's "bad input" paragraph (API section), one case each at least."""

import numpy as np
import pytest

import hmat

RNG = np.random.default_rng(0)
P = RNG.random((40, 2))
A = hmat.kernels.Exponential(0.3).block(P, P)
NAN_A = np.where(np.eye(40, dtype=bool), np.nan, A)
NAN_P = np.where(np.arange(80).reshape(40, 2) == 5, np.nan, P)
LAP = hmat.kernels.Laplace(2)


def _h():
    return hmat.from_dense(A, tol=1e-3, leaf_size=8)


def _grid_2x3():
    """A symmetric positive definite 4x4 operator whose root grid is 2x3 (no square diagonal children)."""
    M = 5 * np.eye(4) + np.ones((4, 4))
    return hmat.HBlock([[hmat.Dense(M[r:r + 2, c0:c1]) for c0, c1 in ((0, 2), (2, 3), (3, 4))] for r in (0, 2)])


CASES = [
    # NaN/Inf in a matrix, factor or point array
    ("Dense NaN", lambda: hmat.Dense(NAN_A), ValueError, "array"),
    ("LowRank Inf", lambda: hmat.LowRank(np.full((3, 1), np.inf), np.ones((3, 1))), ValueError, "U"),
    ("from_dense NaN", lambda: hmat.from_dense(NAN_A, tol=1e-3), ValueError, "A"),
    ("from_dense NaN points", lambda: hmat.from_dense(A, tol=1e-3, points=NAN_P), ValueError, "points"),
    ("from_kernel NaN points", lambda: hmat.from_kernel(LAP, NAN_P, tol=1e-3), ValueError, "points"),
    ("ClusterTree NaN points", lambda: hmat.ClusterTree(NAN_P), ValueError, "points"),
    # wrong shapes or dtypes
    ("Dense 3-D", lambda: hmat.Dense(np.ones((2, 2, 2))), ValueError, "array"),
    ("Dense str dtype", lambda: hmat.Dense(np.array([["a"]])), TypeError, "array"),
    ("Dense dtype=int8", lambda: hmat.Dense(A, dtype=np.int8), TypeError, "dtype"),
    ("LowRank columns", lambda: hmat.LowRank(np.ones((3, 2)), np.ones((3, 1))), ValueError, "U and V"),
    ("from_dense 1-D", lambda: hmat.from_dense(np.ones(5), tol=1e-3), ValueError, "A"),
    ("from_dense points count", lambda: hmat.from_dense(A, tol=1e-3, points=P[:10]), ValueError, "points"),
    ("matvec shape", lambda: _h() @ np.ones(3), ValueError, "x"),
    ("matvec longdouble", lambda: _h() @ np.ones(40, np.longdouble), TypeError, "x"),
    ("astype int32", lambda: _h().astype(np.int32), TypeError, "dtype"),
    ("to_dense max_bytes", lambda: _h().to_dense(max_bytes="x"), TypeError, "max_bytes"),
    # tol, eta, leaf_size
    ("from_dense tol=0", lambda: hmat.from_dense(A, tol=0), ValueError, "tol"),
    ("from_dense tol=1", lambda: hmat.from_dense(A, tol=1), ValueError, "tol"),
    ("from_dense tol str", lambda: hmat.from_dense(A, tol="1e-3"), TypeError, "tol"),
    ("from_kernel tol=2", lambda: hmat.from_kernel(LAP, P, tol=2), ValueError, "tol"),
    ("truncate tol=0", lambda: hmat.truncate(_h(), 0), ValueError, "tol"),
    ("coarsen tol=5", lambda: hmat.coarsen(_h(), 5), ValueError, "tol"),
    ("from_dense eta=0", lambda: hmat.from_dense(A, tol=1e-3, points=P, eta=0), ValueError, "eta"),
    ("from_kernel eta<0", lambda: hmat.from_kernel(LAP, P, tol=1e-3, eta=-1.0), ValueError, "eta"),
    ("StrongAdmissibility eta NaN", lambda: hmat.StrongAdmissibility(float("nan")), ValueError, "eta"),
    ("from_dense leaf_size=0", lambda: hmat.from_dense(A, tol=1e-3, leaf_size=0), ValueError, "leaf_size"),
    ("from_kernel leaf_size=0", lambda: hmat.from_kernel(LAP, P, tol=1e-3, leaf_size=0), ValueError, "leaf_size"),
    ("ClusterTree leaf_size=0", lambda: hmat.ClusterTree(P, leaf_size=0), ValueError, "leaf_size"),
    # empty points
    ("from_kernel empty points", lambda: hmat.from_kernel(LAP, np.zeros((0, 2)), tol=1e-3), ValueError, "points"),
    ("ClusterTree empty points", lambda: hmat.ClusterTree(np.zeros((0, 2))), ValueError, "points"),
    ("HBlock zero-width child", lambda: hmat.HBlock([[hmat.Dense(np.ones((3, 2))), hmat.Dense(np.ones((3, 0)))]]),
     ValueError, r"blocks\[0\]\[1\]"),
    ("HBlock zero-height child", lambda: hmat.HBlock([[hmat.Dense(np.ones((3, 2)))], [hmat.LowRank(np.ones((0, 1)),
     np.ones((2, 1)))]]), ValueError, r"blocks\[1\]\[0\]"),
    ("lu non-square grid", lambda: hmat.lu(_grid_2x3(), tol=1e-8), ValueError, "2x3 grid.*H-LU"),
    ("cholesky non-square grid", lambda: hmat.cholesky(_grid_2x3(), tol=1e-8), ValueError, "2x3 grid.*H-Cholesky"),
    # unknown option values
    ("from_kernel split", lambda: hmat.from_kernel(LAP, P, tol=1e-3, split="nope"), ValueError, "split"),
    ("ClusterTree split", lambda: hmat.ClusterTree(P, split="x"), ValueError, "split"),
    ("from_kernel dtype", lambda: hmat.from_kernel(LAP, P, tol=1e-3, dtype=np.int32), TypeError, "dtype"),
    ("unknown keyword", lambda: hmat.from_dense(A, tol=1e-3, tolerance=1e-3), TypeError, "tolerance"),
    # non-numeric scalars
    ("scale by str", lambda: _h() * "3", TypeError, "alpha"),
    ("scale by NaN", lambda: _h() * np.nan, ValueError, "alpha"),
    # mismatched operand shapes
    ("A + B shapes", lambda: _h() + hmat.Dense(np.ones((3, 3))), ValueError, "shape"),
    ("A @ B shapes", lambda: _h() @ hmat.Dense(np.ones((3, 3))), ValueError, "inner dimensions"),
    ("add shapes", lambda: hmat.add(_h(), hmat.Dense(np.ones((3, 3))), tol=1e-3), ValueError, "shape"),
    # a cast that would overflow
    ("astype overflow", lambda: hmat.Dense(np.full((2, 2), 1e100)).astype(np.float32), ValueError, "float32"),
    # save refuses what load would refuse
    ("save not an operator", lambda: hmat.save("/nonexistent/x.npz", "H"), TypeError, "H"),
]


@pytest.mark.parametrize("make, exc, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_one_clear_error_naming_the_argument(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_corrupted_file_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "h.npz"
    hmat.save(path, _h())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="h.npz"):
        hmat.load(path)


def test_nan_right_hand_side_propagates_as_documented():
    y = _h() @ np.full(40, np.nan)
    assert np.isnan(y).all()
