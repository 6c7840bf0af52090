"""from_kernel's global error budget: tol relative to ||K||_F of the whole matrix."""

import numpy as np
import pytest

import hmat
from hmat import kernels


def fro(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.complex128)))


@pytest.mark.parametrize("kernel", [kernels.Laplace(3), kernels.Helmholtz(2.0), kernels.Gaussian(0.3)])
@pytest.mark.parametrize("precision", ["full", "adaptive"])
def test_global_budget_bound_and_savings(kernel, precision):
    """||K - H||_F <= tol ||K||_F for the whole matrix, with fewer stored components than the
    blockwise budget at the same tol (far blocks of small norm become coarser)."""
    pts = hmat.sphere_points(1500)
    tol = 1e-4
    G = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=32, budget="global", precision=precision)
    B = hmat.from_kernel(kernel, pts, tol=tol, leaf_size=32, precision=precision)
    K = kernel.block(pts, pts)
    assert fro(K - G.to_dense()) <= tol * fro(K)
    assert G.error_estimate <= tol
    assert G.stats()["n_leaves"] == B.stats()["n_leaves"]
    assert G.stats()["rank_mean"] < B.stats()["rank_mean"]
    x = np.random.default_rng(0).standard_normal(1500)
    assert fro(G @ x - G.to_dense() @ x) <= 1e-12 * fro(K) * fro(x)


def test_budget_argument_checked():
    with pytest.raises(ValueError, match="budget"):
        hmat.from_kernel(kernels.Laplace(3), hmat.sphere_points(100), budget="total")
