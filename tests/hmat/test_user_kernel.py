"""A user-written compiled kernel: a jitted entry function gets the compiled build."""

import math

import numba
import numpy as np
import pytest

import hmat
from hmat.kernels import CompiledKernel


INV4PI = 1.0 / (4.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def my_laplace(X, i, Y, j, p):
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    d2 = X[i, 2] - Y[j, 2]
    r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    return INV4PI / r if r > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def yukawa(X, i, Y, j, p):
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    d2 = X[i, 2] - Y[j, 2]
    r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    return math.exp(-p * r) / r if r > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def wave(X, i, Y, j, p):
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    d2 = X[i, 2] - Y[j, 2]
    r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    return complex(math.cos(p * r), math.sin(p * r)) / (1.0 + r)


def yukawa_numpy(x, y, p=2.0):
    r = np.linalg.norm(x - y, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.exp(-p * r) / r, 0.0)


PTS = hmat.sphere_points(1500)


def test_user_laplace_is_the_builtin_build():
    """Same formula as the built-in: the same compiled build (same leaves, ranks and kernel
    evaluations), equal to rounding. Not bit for bit: numba may compile either entry with
    or without FMA contraction depending on which caller compiled it first."""
    K = CompiledKernel(my_laplace, dim=3, symmetric=True)
    H = hmat.from_kernel(K, PTS, tol=1e-6, leaf_size=32)
    R = hmat.from_kernel(hmat.kernels.Laplace(), PTS, tol=1e-6, leaf_size=32)
    x = np.random.default_rng(0).standard_normal(PTS.shape[0])
    eps = np.finfo(np.float64).eps
    assert [(lf.row_start, lf.col_start, lf.op.shape, getattr(lf.op, "rank", None))
            for lf in H.leaves()] == [(lf.row_start, lf.col_start, lf.op.shape,
                                       getattr(lf.op, "rank", None)) for lf in R.leaves()]
    assert H.provenance.kernel_evaluations == R.provenance.kernel_evaluations
    assert np.linalg.norm(H @ x - R @ x) <= 64 * eps * np.linalg.norm(R.to_dense()) * np.linalg.norm(x)
    assert H.error_estimate == pytest.approx(R.error_estimate, rel=1e-9)


def test_user_kernel_equals_python_kernel():
    K = CompiledKernel(yukawa, param=2.0, dim=3, symmetric=True)
    x, y = PTS[:200], PTS[100:400]
    ref = yukawa_numpy(x[:, None, :], y[None, :, :])
    assert np.max(np.abs(K.block(x, y) - ref)) <= 4 * np.finfo(float).eps * np.max(np.abs(ref))
    tol = 1e-6
    Hc = hmat.from_kernel(K, PTS, tol=tol, leaf_size=32)
    Hp = hmat.from_kernel(yukawa_numpy, PTS, tol=tol, leaf_size=32)  # the Python object path
    A = yukawa_numpy(PTS[:, None, :], PTS[None, :, :])
    nA = np.linalg.norm(A)
    assert np.linalg.norm(Hc.to_dense() - A) <= 2 * tol * nA
    assert np.linalg.norm(Hp.to_dense() - A) <= 2 * tol * nA
    assert [lf.op.shape for lf in Hc.leaves()] == [lf.op.shape for lf in Hp.leaves()]


def test_user_complex_kernel():
    K = CompiledKernel(wave, param=3.0, dtype=np.complex128, dim=3)
    A = K.block(PTS, PTS)
    r = np.linalg.norm(PTS[:, None, :] - PTS[None, :, :], axis=-1)
    assert np.max(np.abs(A - np.exp(3j * r) / (1 + r))) <= 1e-14
    H = hmat.from_kernel(K, PTS[:800], tol=1e-5, leaf_size=32)
    B = A[:800, :800]
    assert H.dtype == np.complex128
    assert np.linalg.norm(H.to_dense() - B) <= 2e-5 * np.linalg.norm(B)
    with pytest.raises(TypeError, match="imaginary"):
        hmat.from_kernel(K, PTS[:100], dtype=np.float64)


def test_compiled_kernel_bad_input():
    with pytest.raises(TypeError, match="entry"):
        CompiledKernel(yukawa_numpy)
    with pytest.raises(ValueError, match="dtype"):
        CompiledKernel(yukawa, dtype=np.float32)
    with pytest.raises(ValueError, match="param"):
        CompiledKernel(yukawa, param=float("nan"))
    with pytest.raises(ValueError, match="d = 3"):
        hmat.from_kernel(CompiledKernel(yukawa, dim=3), np.random.default_rng(0).random((50, 2)))


def test_readme_kernel_example_runs(tmp_path, monkeypatch):
    """The README's compiled-kernel snippet, run as written (from a module file, as a user
    would: numba caches only functions that live in a file), builds the Yukawa matrix."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Block structure and strategies\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    assert "CompiledKernel(yukawa" in code
    (tmp_path / "readme_kernel_example.py").write_text(
        "import hmat\nimport numpy as np\npts = hmat.sphere_points(1200)\n" + code)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import sys

    try:
        env = importlib.import_module("readme_kernel_example")
    finally:
        sys.modules.pop("readme_kernel_example", None)
    H, pts = env.H, env.pts
    A = yukawa_numpy(pts[:, None, :], pts[None, :, :])
    assert np.linalg.norm(H.to_dense() - A) <= 2e-6 * np.linalg.norm(A)
    x = np.random.default_rng(7).standard_normal(pts.shape[0])
    assert np.linalg.norm(H @ x - A @ x) <= 2e-6 * np.linalg.norm(A) * np.linalg.norm(x)


def test_first_build_at_import_time_with_threads_does_not_deadlock(tmp_path):
    """A module that builds with a never-compiled user kernel at import time, on 2 threads:
    the first compile must not run in a pool thread (numba imports the kernel's module, whose
    import is in progress in the main thread). Run in a subprocess with a timeout."""
    import subprocess
    import sys
    import uuid

    token = uuid.uuid4().hex  # a new source: nothing cached, the build compiles
    (tmp_path / "kernel_at_import.py").write_text(f'''
import math
import numba
import hmat
from hmat.kernels import CompiledKernel

@numba.njit(cache=True, nogil=True)
def k_{token}(X, i, Y, j, p):
    d0 = X[i, 0] - Y[j, 0]
    d1 = X[i, 1] - Y[j, 1]
    d2 = X[i, 2] - Y[j, 2]
    r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    return math.exp(-p * r) / r if r > 0.0 else 0.0

hmat.set_num_threads(2)
H = hmat.from_kernel(CompiledKernel(k_{token}, param=2.0, dim=3, symmetric=True),
                     hmat.sphere_points(3000), tol=1e-6, leaf_size=32)
''')
    import os
    import pathlib

    root = str(pathlib.Path(hmat.__file__).resolve().parents[1])  # the hmat under test
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), root]))
    code = "import kernel_at_import as m; print(m.H.shape)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(3000, 3000)"


def test_entries_never_specialise_the_shared_cached_functions():
    """A closure entry (not importable by name: compiled in memory) and the built-in kernels
    whose entry is a class attribute (read through an instance it binds as a method) build
    the right matrix without compiling hmat._aca_numba's entry-taking functions, whose disk
    cache would get one record per entry and process. Two instances of a kernel class share
    one compiled build."""
    from hmat import _aca_numba
    from hmat._kernel_jit import compiled_for

    def make(p0):
        @numba.njit(nogil=True)
        def closure_entry(X, i, Y, j, p):  # reads p0 from the closure: not importable
            d0 = X[i, 0] - Y[j, 0]
            d1 = X[i, 1] - Y[j, 1]
            d2 = X[i, 2] - Y[j, 2]
            r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            return math.exp(-p0 * r) / r if r > 0.0 else 0.0
        return closure_entry

    pts = PTS[:600]
    A = yukawa_numpy(pts[:, None, :], pts[None, :, :])
    H = hmat.from_kernel(CompiledKernel(make(2.0), dim=3, symmetric=True), pts, tol=1e-7, leaf_size=32)
    assert np.linalg.norm(H.to_dense() - A) <= 1e-6 * np.linalg.norm(A)
    E = hmat.from_kernel(hmat.kernels.Exponential(0.5), pts, tol=1e-7, leaf_size=32)
    B = np.exp(-np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1) / 0.5)
    assert np.linalg.norm(E.to_dense() - B) <= 1e-6 * np.linalg.norm(B)
    assert compiled_for(hmat.kernels.Exponential(0.5).entry) is compiled_for(hmat.kernels.Exponential(2.0).entry)
    for name in ("build_chunk", "eval_block", "eval_pairs", "aca"):
        assert not getattr(_aca_numba, name).signatures, name
