"""Checks of hmat.mpi run under ``mpiexec -n P python tests/hmat/mpi_cases.py DIR [CASE ...]``
(see test_mpi.py; no CASE: all).

Rank 0 prints ``OK <name>`` after each passing check. Any failure prints a traceback and
aborts the whole job (``MPI.Abort``), so a broken check can never leave ranks waiting.
``DIR`` is a scratch directory shared by the ranks (save/load).
"""

import os
import sys
import traceback

import numpy as np
from mpi4py import MPI

import hmat
import hmat.mpi as hm

comm = MPI.COMM_WORLD
P, RANK = comm.Get_size(), comm.Get_rank()
DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


_T0 = [MPI.Wtime()]


def ok(name):
    comm.Barrier()
    if RANK == 0:
        print(f"OK {name} ({MPI.Wtime() - _T0[0]:.1f} s)", flush=True)
    _T0[0] = MPI.Wtime()


def raises(exc_type, fn, *args, **kwargs):
    """``fn`` must raise ``exc_type`` on this rank; returns the message."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return str(exc)
    raise AssertionError(f"rank {RANK}: {getattr(fn, '__name__', fn)} did not raise {exc_type.__name__}")


def rows_per_leaf(H):
    """Largest number of leaves covering one row of a serial HBlock."""
    cover = np.zeros(H.shape[0] + 1, np.int64)
    for r0, _, op in H.leaves():
        cover[r0] += 1
        cover[r0 + op.shape[0]] -= 1
    return int(np.cumsum(cover).max())


def check_close(got, ref, A, x, L, name):
    """Equal to rounding: both sum the same leaf products, in a different order, so
    ``|got - ref| <= 2 L u |A| |x|`` row-wise (``L`` leaves per row, unit roundoff ``u``)."""
    u = np.finfo(got.dtype).eps
    bound = 2 * L * u * np.linalg.norm(A) * np.linalg.norm(x)
    err = np.linalg.norm(got - ref)
    assert err <= bound, f"{name}: |got - ref| = {err:.3e} > {bound:.3e}"


def case_equal_to_serial():
    # the serial builds below use precision="full", symmetric=False: the distributed build
    # stores every leaf in the operator's dtype (adaptive precision and symmetric storage are
    # serial features)
    n = 500
    pts = hmat.sphere_points(n)
    kernel = hmat.kernels.Laplace(3)
    rng = np.random.default_rng(1)
    for dt in DTYPES:
        D = hm.from_kernel(kernel, pts, comm=comm, tol=1e-6, leaf_size=32, dtype=dt)
        H = hmat.from_kernel(kernel, pts, tol=1e-6, leaf_size=32, dtype=dt, precision="full", symmetric=False)
        A = H.to_dense()
        L = rows_per_leaf(H)
        # the leaves themselves are the serial build's, bit for bit
        G = D.gather()
        assert isinstance(G, hmat.HBlock) and G.dtype == np.dtype(dt)
        assert np.array_equal(G.row_perm, H.row_perm) and np.array_equal(G.col_perm, H.col_perm)
        assert np.array_equal(G.to_dense(), A), f"{dt.__name__}: gathered leaves differ from the serial build"
        x = rng.standard_normal(n).astype(dt)
        X = rng.standard_normal((n, 3)).astype(dt)
        if np.dtype(dt).kind == "c":
            x = x + 1j * rng.standard_normal(n).astype(dt)
        check_close(D @ x, H @ x, A, x, L, f"{dt.__name__} matvec")
        check_close(D @ X, H @ X, A, X, L, f"{dt.__name__} matmat")
        check_close(D.H @ x, H.H @ x, A, x, L, f"{dt.__name__} adjoint")
        # distributed slices: the same products through local slices
        yl = D.matvec(D.distribute(x))
        assert yl.shape == (D.row_slice.stop - D.row_slice.start,)
        check_close(D.collect(yl), H @ x, A, x, L, f"{dt.__name__} local matvec")
        check_close(D.collect(D.rmatvec(D.distribute(x, "rows")), "cols"), H.H @ x, A, x, L, f"{dt.__name__} rmatvec")
        # statistics reduced over ranks
        s, t = D.stats(), H.stats()
        for key in ("n_leaves", "n_dense", "n_lowrank", "rank_max", "nbytes", "stored_entries", "kernel_evaluations"):
            assert s[key] == t[key], f"{dt.__name__} stats[{key!r}]: {s[key]} vs {t[key]}"
        assert sum(s["nbytes_per_rank"]) == H.nbytes and len(s["nbytes_per_rank"]) == P
        assert abs(D.error_estimate - H.error_estimate) <= 1e-6 * H.error_estimate
        # no rank holds the whole matrix (P > 1)
        if P > 1:
            assert D.local_nbytes < H.nbytes
        assert D.gather(root=0) is None or RANK == 0
    ok("equal_to_serial")


def case_rectangular():
    rng = np.random.default_rng(2)
    src = rng.standard_normal((500, 3))
    tgt = rng.standard_normal((350, 3)) * 0.5
    kernel = hmat.kernels.Exponential(0.5)
    D = hm.from_kernel(kernel, src, targets=tgt, comm=comm, tol=1e-7, leaf_size=24)
    H = hmat.from_kernel(kernel, src, targets=tgt, tol=1e-7, leaf_size=24, precision="full", symmetric=False)
    assert D.shape == (350, 500)
    A = H.to_dense()
    assert np.array_equal(D.gather().to_dense(), A)
    x = rng.standard_normal(500)
    y = rng.standard_normal(350)
    L = rows_per_leaf(H)
    check_close(D @ x, H @ x, A, x, L, "rectangular matvec")
    check_close(D.H @ y, H.H @ y, A, y, L, "rectangular adjoint")
    # repeated points (the serial build groups them for ACA): still the serial leaves
    rep = np.concatenate([src[:250], src[:250]])
    D = hm.from_kernel(kernel, rep, comm=comm, tol=1e-7, leaf_size=24)
    H = hmat.from_kernel(kernel, rep, tol=1e-7, leaf_size=24, precision="full", symmetric=False)
    assert np.array_equal(D.gather().to_dense(), H.to_dense()), "repeated points: leaves differ"
    ok("rectangular")


def case_krylov():
    import pylops_mpi

    n = 500
    pts = hmat.sphere_points(n)
    kernel = hmat.kernels.Exponential(0.05)  # SPD, well conditioned
    D = hm.from_kernel(kernel, pts, comm=comm, tol=1e-8, leaf_size=32)
    H = hmat.from_kernel(kernel, pts, tol=1e-8, leaf_size=32, precision="full", symmetric=False)
    b = np.cos(3 * pts[:, 0]) + pts[:, 2]
    Op = D.to_pylops()
    y = D.distributed_array(D.distribute(b, "rows"), "rows")
    tol2 = (1e-10 * np.linalg.norm(b)) ** 2  # pylops-mpi's tol bounds the squared residual norm
    x, iters, _ = pylops_mpi.cg(Op, y, D.distributed_array(None, "cols"), niter=60, tol=tol2)
    xs = D.collect(x.local_array, "cols")
    res = np.linalg.norm(H @ xs - b) / np.linalg.norm(b)
    assert res <= 1e-8, f"CG residual {res:.2e} after {iters} iterations"
    x2 = pylops_mpi.cgls(Op, y, D.distributed_array(None, "cols"), niter=30, tol=tol2)[0]
    res2 = np.linalg.norm(H @ D.collect(x2.local_array, "cols") - b) / np.linalg.norm(b)
    assert res2 <= 1e-6, f"CGLS residual {res2:.2e}"
    ok("krylov")


def case_save_load(tmp):
    n = 600
    pts = hmat.sphere_points(n)
    D = hm.from_kernel(hmat.kernels.Laplace(3), pts, comm=comm, tol=1e-6, leaf_size=32, dtype=np.complex64)
    path = os.path.join(tmp, "op")
    D.save(path)
    E = hm.load(path, comm=comm)
    assert E.dtype == D.dtype and E.shape == D.shape
    assert np.array_equal(E.gather().to_dense(), D.gather().to_dense())
    assert E.error_estimate == D.error_estimate and E.kernel_evaluations == D.kernel_evaluations
    x = np.random.default_rng(3).standard_normal(n)
    assert np.array_equal(E @ x, D @ x)
    # overwriting in place works and stays loadable
    D.save(path)
    hm.load(path, comm=comm)
    # a different number of ranks: every loading rank raises
    sub = comm.Split(0 if RANK == 0 else MPI.UNDEFINED, RANK)
    if sub != MPI.COMM_NULL:
        msg = raises(ValueError, hm.load, path, comm=sub)
        assert "ranks" in msg, msg
        sub.Free()
    comm.Barrier()
    # one corrupted rank file: every rank raises
    victim = os.path.join(path, f"rank{P - 1:05d}.npz")
    if RANK == 0:
        with open(victim, "r+b") as f:
            f.seek(100)
            f.write(b"\x00garbage\x00")
    comm.Barrier()
    msg = raises(ValueError, hm.load, path, comm=comm)
    assert "rank" in msg or "checksum" in msg, msg
    # a missing manifest
    if RANK == 0:
        os.unlink(os.path.join(path, "manifest.json"))
    comm.Barrier()
    raises(ValueError, hm.load, path, comm=comm)
    ok("save_load")


def case_failures():
    n = 400
    pts = hmat.sphere_points(n)
    kernel = hmat.kernels.Laplace(3)
    last = P - 1
    # bad input on the last rank only: every rank raises, none hangs
    msg = raises(ValueError, hm.from_kernel, kernel, pts, comm=comm, tol=(-1.0 if RANK == last else 1e-6))
    assert ("tol" in msg) or (f"rank {last}" in msg), msg
    other = pts.copy()
    if RANK == last:
        other[0, 0] += 1e-3
    msg = raises(ValueError, hm.from_kernel, kernel, other, comm=comm)
    assert "different points" in msg, msg
    raises(TypeError, hm.from_kernel, lambda x, y: x, pts, comm=comm)
    D = hm.from_kernel(kernel, pts, comm=comm, leaf_size=32)
    xl = D.distribute(np.ones(n))
    bad = xl[:-1] if RANK == last else xl
    raises(ValueError, D.matvec, bad)
    bad = xl.copy()
    if RANK == last:
        bad[-1] = np.nan  # the last rank owns rows (the cuts end there)
    raises(ValueError, D.matvec, bad)
    dt = np.float32 if RANK == last else np.float64
    raises(ValueError, D.matvec, xl.astype(dt))
    # and the operator still works afterwards
    assert np.allclose(D @ np.ones(n), D.gather() @ np.ones(n), rtol=1e-12, atol=0)
    ok("failures")


def case_tiny():
    """Fewer leaves than ranks: some ranks own no rows."""
    pts = hmat.sphere_points(30)
    D = hm.from_kernel(hmat.kernels.Laplace(3), pts, comm=comm, leaf_size=64)
    H = hmat.from_kernel(hmat.kernels.Laplace(3), pts, leaf_size=64, precision="full", symmetric=False)
    x = np.arange(30.0)
    assert np.array_equal(D.gather().to_dense(), H.to_dense())
    assert np.allclose(D @ x, H @ x, rtol=1e-14, atol=0)
    assert sum(np.diff(D.row_cuts) > 0) == 1
    ok("tiny")


def main():
    tmp, names = sys.argv[1], sys.argv[2:]
    hmat.set_num_threads(1)
    cases = {"equal_to_serial": case_equal_to_serial, "rectangular": case_rectangular, "krylov": case_krylov,
             "save_load": lambda: case_save_load(tmp), "failures": case_failures, "tiny": case_tiny}
    for name in names or cases:
        cases[name]()
    if RANK == 0:
        print("ALL DONE", flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        comm.Abort(1)
