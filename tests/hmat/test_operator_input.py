"""Right-hand sides of unsupported dtypes get one clear TypeError (issue 11)."""

import numpy as np
import pytest

import hmat

from .conftest import make_operator


@pytest.mark.parametrize("kind", ["dense", "lowrank", "hblock_nested"])
@pytest.mark.parametrize("xdtype", [np.longdouble, np.clongdouble])
def test_longdouble_rhs_is_a_clear_type_error(kind, xdtype):
    if np.dtype(np.longdouble) == np.dtype(np.float64):
        pytest.skip("long double is float64 on this platform")
    op, _ = make_operator(kind, np.float64)
    x = np.ones(op.shape[1], xdtype)
    for f in (lambda: op @ x, lambda: op.matvec(x), lambda: op.matmat(x[:, None]), lambda: op.H @ np.ones(op.shape[0], xdtype)):
        with pytest.raises(TypeError, match="cast it first"):
            f()


@pytest.mark.parametrize("xdtype, expect", [(np.float16, np.float32), (np.int8, np.float32), (np.bool_, np.float32),
                                            (np.float64, np.float64), (np.complex64, np.complex64)])
def test_supported_rhs_dtypes_promote(xdtype, expect):
    op, ref = make_operator("hblock_nested", np.float32)
    x = np.ones(op.shape[1], xdtype)
    y = op @ x
    assert y.dtype == np.dtype(expect)
    np.testing.assert_allclose(y, ref @ x.astype(np.complex128), rtol=1e-5, atol=1e-5 * np.abs(ref).sum())


def test_non_numeric_rhs_is_a_type_error():
    op, _ = make_operator("dense", np.float64)
    with pytest.raises(TypeError, match="numeric"):
        op @ np.array(["a"] * op.shape[1])
