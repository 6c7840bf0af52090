"""H-matrix factorizations: H-LU on sphere-1/r (+ shift) vs dense LAPACK, GMRES with an
H-LU preconditioner, and H-Cholesky for a Gaussian-process (Matérn-3/2 + sigma^2 I) matrix.

Everything runs on one thread (BLAS included) and prints markdown tables::

    python benchmarks/factor.py                       # N = 10k, 20k, 40k; GP at 50k
    python benchmarks/factor.py --sizes 5000 --gp-n 5000 --dense-max 5000   # quick

The sphere matrix is ``G + s I`` with ``G(x, y) = 1 / (4 pi |x - y|)``, ``G(x, x) = 0`` on N
Fibonacci points (docs/sphere_benchmark.md) and ``s = sqrt(N) / (4 pi)``, the value of the
integral of ``G`` over a disc of area ``4 pi / N`` divided by that area times ``N/(4pi)``
(a Nystrom self-patch correction; it makes the matrix a discretised single-layer
operator, condition number ~ sqrt(N)).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg as sla  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hmat  # noqa: E402
from hmat.arithmetic import Identity, add, cholesky, lu  # noqa: E402
from hmat.points import sphere_points  # noqa: E402


sphere = sphere_points


def shift_for(n):
    return np.sqrt(n) / (4 * np.pi)


def machine():
    cpu = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # pragma: no cover
        pass
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; nproc={os.cpu_count()}; "
            f"CPU: {cpu}; Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; "
            f"one thread (BLAS and hmat)")


def timed(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    return out, time.perf_counter() - t


def sphere_matrix(n, build_tol):
    X = sphere(n)
    H0, tb = timed(hmat.from_kernel, hmat.kernels.Laplace(3), X, tol=build_tol, eta=2.0, leaf_size=64)
    A, ts = timed(add, H0, shift_for(n) * Identity(n), 1e-12)
    return X, A, tb + ts


def dense_lu_time(X, n):
    D = hmat.kernels.Laplace(3).block(X, X)
    D[np.diag_indices(n)] = shift_for(n)
    _, t = timed(sla.lu_factor, D, overwrite_a=True, check_finite=False)
    del D
    return t


def bench_lu(sizes, tols, dense_max, build_tol):
    print("\n## H-LU of sphere-1/r + shift (tol 1e-6 build, eta 2, leaf 64)\n")
    print("| N | tol | build s | H MB | H-LU s | LU MB | solve s | rel. residual | dense LU s | dense / H-LU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in sizes:
        X, A, tb = sphere_matrix(n, build_tol)
        td = dense_lu_time(X, n) if n <= dense_max else None
        rng = np.random.default_rng(0)
        b = rng.random(n)
        for tol in tols:
            F, tf = timed(lu, A, tol)
            x, tsol = timed(F.solve, b)
            res = np.linalg.norm(A @ x - b) / np.linalg.norm(b)
            ratio = f"{td / tf:.1f}x" if td else "-"
            tds = f"{td:.1f}" if td else "(not run)"
            print(f"| {n} | {tol:g} | {tb:.1f} | {A.nbytes / 1e6:.0f} | {tf:.1f} | {F.nbytes / 1e6:.0f} | "
                  f"{tsol:.3f} | {res:.1e} | {tds} | {ratio} |", flush=True)
            rows.append((n, tol, tf, td))
            del F
    return rows


def bench_gmres(sizes, build_tol):
    print("\n## GMRES (rtol 1e-8) on sphere-1/r + shift, M = hmat.lu(A, tol=1e-2)\n")
    print("| N | LU(1e-2) s | iterations (M) | GMRES s (M) | total s (M) | iterations (none) | GMRES s (none) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        X, A, _ = sphere_matrix(n, build_tol)
        b = np.ones(n)
        M, tf = timed(lu, A, 1e-2)
        its = [0]

        def cb(_):
            its[0] += 1

        (x, info), tg = timed(spla.gmres, A, b, M=M, rtol=1e-8, restart=100, maxiter=10, callback=cb,
                              callback_type="pr_norm")
        it_m = its[0] if info == 0 else f">{its[0]}"
        its[0] = 0
        (x0, info0), t0 = timed(spla.gmres, A, b, rtol=1e-8, restart=300, maxiter=1, callback=cb,
                                callback_type="pr_norm")
        it0 = its[0] if info0 == 0 else f">{its[0]} (not converged)"
        print(f"| {n} | {tf:.1f} | {it_m} | {tg:.2f} | {tf + tg:.1f} | {it0} | {t0:.1f} |", flush=True)


def bench_gp(n, n_check, tol, build_tol, sigma, ell):
    print(f"\n## Gaussian process: Matérn-3/2 (l = {ell}) on random points in the unit cube + {sigma}^2 I, "
          f"build tol {build_tol:g}, Cholesky tol {tol:g}\n")
    print("| N | build s | H MB | Cholesky s | L MB | solve s | logdet s | logdet | dense logdet | rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in sorted({n_check, n}):
        rng = np.random.default_rng(1)
        X = rng.random((m, 3))
        kern = hmat.kernels.Matern(ell, nu=1.5)
        K, tb = timed(hmat.from_kernel, kern, X, tol=build_tol, leaf_size=64)
        A = add(K, sigma**2 * Identity(m), 1e-12)
        F, tc = timed(cholesky, A, tol)
        y = rng.standard_normal(m)
        _, ts = timed(F.solve, y)
        (sg, ld), tl = timed(F.logdet)
        ref, diff = "-", "-"
        if m <= n_check:
            D = kern.block(X, X) + sigma**2 * np.eye(m)
            ref_ld = np.linalg.slogdet(D)[1]
            ref, diff = f"{ref_ld:.6f}", f"{abs(ld - ref_ld) / abs(ref_ld):.1e}"
            del D
        print(f"| {m} | {tb:.1f} | {A.nbytes / 1e6:.0f} | {tc:.1f} | {F.nbytes / 1e6:.0f} | {ts:.3f} | "
              f"{tl:.4f} | {ld:.6f} | {ref} | {diff} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000, 40000])
    p.add_argument("--tols", type=float, nargs="+", default=[1e-6, 1e-2])
    p.add_argument("--dense-max", type=int, default=20000, help="largest N for the dense LU reference")
    p.add_argument("--gmres-sizes", type=int, nargs="*", default=None, help="default: --sizes")
    p.add_argument("--gp-n", type=int, default=50000)
    p.add_argument("--gp-check", type=int, default=5000, help="N of the dense logdet comparison")
    p.add_argument("--gp-tol", type=float, default=1e-4, help="Cholesky tol")
    p.add_argument("--gp-build-tol", type=float, default=1e-5)
    p.add_argument("--gp-l", type=float, default=0.2, help="Matern length scale")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--skip", nargs="*", default=[], choices=["lu", "gmres", "gp"])
    a = p.parse_args(argv)
    hmat.set_num_threads(1)
    print(f"# benchmarks/factor.py\n\n{machine()}\n\ncommand: python benchmarks/factor.py {' '.join(sys.argv[1:])}")
    if "lu" not in a.skip:
        bench_lu(a.sizes, a.tols, a.dense_max, 1e-6)
    if "gmres" not in a.skip:
        bench_gmres(a.gmres_sizes if a.gmres_sizes is not None else a.sizes, 1e-6)
    if "gp" not in a.skip:
        bench_gp(a.gp_n, a.gp_check, a.gp_tol, a.gp_build_tol, a.sigma, a.gp_l)


if __name__ == "__main__":
    main()
