"""GPU check and throughput of the CuPy backend (runs in well under 5 minutes).

For each N: build the sphere-1/r H-matrix on the CPU (docs/sphere_benchmark.md parameters),
move it to the GPU (``hmat.backend.to_cupy``: three CSR matrices), check H x, H X and H^H x
against the NumPy operator, time the device matvec / matmat with CUDA events, and compare
with the device's measured copy bandwidth (floor = device bytes / bandwidth). A cupyx CG
solve checks that the device operator plugs into ``cupyx.scipy.sparse.linalg``.

    python benchmarks/gpu.py                 # N = 20k, 80k
    python benchmarks/gpu.py --sizes 10000   # quicker
    python benchmarks/gpu.py --numpy         # run the same path on numpy (no GPU needed)

Without a GPU (or without cupy) it says so and exits 0, unless --numpy is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import hmat  # noqa: E402
from hmat import backend as B  # noqa: E402
from hmat.hblock import packed_store  # noqa: E402

from sphere import fibonacci_sphere  # noqa: E402


def device_bandwidth(xp, nbytes=1 << 30, repeat=10):
    """Device-to-device copy bandwidth, bytes moved (read + write) per second."""
    a = xp.ones(nbytes // 8)
    b = xp.empty_like(a)
    return 2 * a.nbytes / _time(xp, lambda: b.__setitem__(Ellipsis, a), repeat)


def _time(xp, f, repeat):
    """Best time of ``repeat`` calls (CUDA events on cupy, perf_counter on numpy)."""
    f()
    best = float("inf")
    if xp is np:
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        return best
    start, stop = xp.cuda.Event(), xp.cuda.Event()
    for _ in range(repeat):
        start.record()
        f()
        stop.record()
        stop.synchronize()
        best = min(best, xp.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20_000, 80_000])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64", "complex64", "complex128"])
    ap.add_argument("--nrhs", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--numpy", action="store_true", help="run on numpy/scipy.sparse (no GPU)")
    args = ap.parse_args()
    backend = "numpy" if args.numpy else "cupy"
    if backend == "cupy" and not B.has_cupy():
        print("no GPU available (cupy missing or no CUDA device): nothing measured. "
              "Use --numpy to exercise the same code path on the CPU.")
        return 0
    xp = np if backend == "numpy" else __import__("cupy")
    if backend == "cupy":
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"device: {name}, {props['totalGlobalMem'] / 2**30:.0f} GiB; cupy {xp.__version__}, "
              f"CUDA runtime {xp.cuda.runtime.runtimeGetVersion()}")
    else:
        print("device: CPU (numpy + scipy.sparse path)")
    bw = device_bandwidth(xp, nbytes=(1 << 30) if backend == "cupy" else (1 << 28))
    print(f"measured copy bandwidth: {bw / 1e9:.0f} GB/s (read + write)\n")
    dtype = np.dtype(args.dtype)
    rt = 1e-4 if dtype in (np.float32, np.complex64) else 1e-10
    print("| N | device MB | host MB | CPU matvec s | device matvec s | matvec / floor | effective GB/s "
          f"| matmat ({args.nrhs}) s per rhs | rel. diff vs numpy | check |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok_all = True
    for n in args.sizes:
        P = fibonacci_sphere(n)
        H = hmat.from_kernel(hmat.kernels.Laplace(3), P, tol=args.tol, eta=2.0, leaf_size=64, dtype=dtype)
        rng = np.random.default_rng(0)
        x = rng.random(n).astype(dtype)
        X = rng.random((n, args.nrhs)).astype(dtype)
        y_cpu = H @ x
        t_cpu = min(_time(np, lambda: H @ x, 3), 1e9)
        S = B.to_device(H, backend)
        xd, Xd = xp.asarray(x), xp.asarray(X)
        diffs = []
        for got, want in ((S @ xd, y_cpu), (S @ Xd, H @ X), (S.H @ xd, H.H @ x)):
            got = got.get() if hasattr(got, "get") and not isinstance(got, np.ndarray) else got
            diffs.append(float(np.linalg.norm(got - want) / np.linalg.norm(want)))
        diff = max(diffs)
        ok = diff <= rt
        ok_all &= ok
        t_mv = _time(xp, lambda: S @ xd, args.repeat)
        t_mm = _time(xp, lambda: S @ Xd, max(3, args.repeat // 4))
        floor = S.nbytes / bw  # reading the operator once at the copy rate (bytes moved per second)
        print(f"| {n:,} | {S.nbytes / 1e6:.0f} | {packed_store(H).nbytes / 1e6:.0f} | {t_cpu:.4f} | {t_mv:.5f} | "
              f"{t_mv / floor:.2f} | {S.nbytes / t_mv / 1e9:.0f} | {t_mm / args.nrhs:.5f} | {diff:.1e} | "
              f"{'ok' if ok else 'FAIL'} |", flush=True)
    # solver check on the last operator: (S + c I) x = b with cupyx / scipy CG
    if backend == "cupy":
        from cupyx.scipy.sparse.linalg import LinearOperator, cg
    else:
        from scipy.sparse.linalg import LinearOperator, cg
    c = 100.0
    A = LinearOperator(S.shape, matvec=lambda v: S @ v + c * v, dtype=S.dtype)
    b = xp.asarray(np.ones(S.shape[0], dtype))
    try:
        sol, info = cg(A, b, rtol=1e-8, maxiter=500)
    except TypeError:
        sol, info = cg(A, b, tol=1e-8, maxiter=500)
    res = S @ sol + c * sol - b
    res = float(xp.linalg.norm(res) / xp.linalg.norm(b))
    print(f"\nCG on (H + {c:g} I) x = 1 with the device operator: info {info}, relative residual {res:.1e}")
    ok_all &= info == 0
    print("all checks passed" if ok_all else "SOME CHECKS FAILED")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
