"""Command line: ``python -m hmat demo`` and ``python -m hmat compress``."""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .points import sphere_points


def sampled_row_error(H, kernel, points, x, rows=50):
    """Relative 2-norm error of ``(H x)[rows]`` against direct summation on ``rows`` evenly spaced rows."""
    n = points.shape[0]
    idx = (np.arange(rows) * n) // rows
    exact = kernel.block(points[idx], points) @ x
    approx = (H @ x)[idx]
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


class _UsageError(Exception):
    """Bad command-line input found before any work starts (one line, exit code 2)."""


def _check_output(path, option):
    """Fail early (before computing) when ``path`` cannot be written: missing or non-directory parent."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise _UsageError(f"{option} {path}: is a directory")
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise _UsageError(f"{option} {path}: parent directory {parent} {what}")
    if not os.access(parent, os.W_OK):
        raise _UsageError(f"{option} {path}: directory {parent} is not writable")


def _check_input(path, option):
    if path is not None and not os.path.isfile(path):
        raise _UsageError(f"{option} {path}: no such file")


def _load_npy(path, option):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _UsageError(f"cannot read {option} {path}: {exc}") from None


def _demo(args):
    import hmat

    if args.threads < 0:
        raise _UsageError(f"--threads must be >= 0 (0: all available), got {args.threads}")
    if args.n < 1:
        raise _UsageError(f"--n must be >= 1, got {args.n}")
    _check_output(args.plot, "--plot")
    if args.threads:
        hmat.set_num_threads(args.threads)
    kernel = hmat.kernels.Laplace(3)
    pts = sphere_points(args.n)
    print(f"sphere-1/r: N={args.n}, tol={args.tol}, eta={args.eta}, leaf_size={args.leaf_size}, threads={hmat.get_num_threads()}")
    t = time.perf_counter()
    hmat.from_kernel(kernel, sphere_points(256), tol=args.tol, leaf_size=32, n_samples=0)  # compile (cached on disk)
    print(f"  compile/warm-up      {time.perf_counter() - t:8.2f} s")
    t = time.perf_counter()
    H = hmat.from_kernel(kernel, pts, tol=args.tol, eta=args.eta, leaf_size=args.leaf_size, progress=not args.quiet)
    build = time.perf_counter() - t
    x = np.random.default_rng(0).random(args.n)
    H @ x
    reps = []
    for _ in range(3):
        t = time.perf_counter()
        H @ x
        reps.append(time.perf_counter() - t)
    s = H.stats()
    err = sampled_row_error(H, kernel, pts, x)
    print(f"  build                {build:8.2f} s")
    print(f"  stored               {H.nbytes / 1e6:8.1f} MB   (dense would be {s['dense_nbytes'] / 1e6:.0f} MB)")
    print(f"  compression ratio    {s['compression_ratio']:8.1f}")
    print(f"  leaves               {s['n_leaves']:8d}   ({s['n_dense']} dense, {s['n_lowrank']} low-rank, rank {s['rank_min']}..{s['rank_max']}, mean {s['rank_mean']:.1f})")
    print(f"  kernel evaluations   {s['kernel_evaluations']:8.3g}   ({s['kernel_evaluations'] / args.n**2:.3f} of N^2)")
    print(f"  matvec (best of 3)   {min(reps):8.4f} s")
    print(f"  sampled error        {err:8.2e}   (50 rows vs direct summation)")
    print(f"  entry error estimate {H.error_estimate:8.2e}   (random entries)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ax = hmat.plot(H)
        ax.figure.savefig(args.plot, dpi=150, bbox_inches="tight")
        plt.close(ax.figure)
        print(f"  plot written to {args.plot}")
    return 0


def _compress(args):
    import hmat

    _check_input(args.input, "input")
    _check_input(args.points, "--points")
    _check_output(args.output, "output")
    A = _load_npy(args.input, "input")
    points = _load_npy(args.points, "--points") if args.points else None
    t = time.perf_counter()
    H = hmat.from_dense(A, tol=args.tol, points=points, leaf_size=args.leaf_size)
    dt = time.perf_counter() - t
    hmat.save(args.output, H)
    s = H.stats()
    print(f"compressed {args.input} {A.shape} {A.dtype} in {dt:.2f} s -> {args.output}")
    print(f"  stored {H.nbytes / 1e6:.2f} MB of {s['dense_nbytes'] / 1e6:.2f} MB (ratio {s['compression_ratio']:.2f})")
    print(f"  leaves {s['n_leaves']} ({s['n_dense']} dense, {s['n_lowrank']} low-rank, rank max {s['rank_max']})")
    print(f"  certified error ||A - H||_F / ||A||_F = {H.error_estimate:.3e} <= tol = {args.tol:g}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``error: ...`` on stderr, exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv=None):
    p = _Parser(prog="python -m hmat", description="hierarchical matrices")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="sphere-1/r benchmark (docs/sphere_benchmark.md)")
    d.add_argument("--n", type=int, default=20000)
    d.add_argument("--tol", type=float, default=1e-6)
    d.add_argument("--eta", type=float, default=2.0)
    d.add_argument("--leaf-size", type=int, default=64)
    d.add_argument("--threads", type=int, default=0, help="0: all available")
    d.add_argument("--plot", help="write the block structure to this image file")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--mpi", action="store_true", help="distributed over the ranks of mpiexec (needs the mpi extra)")
    c = sub.add_parser("compress", help="compress a .npy matrix with a certified Frobenius bound")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--points", help=".npy file of point coordinates (n, d) for a geometric tree")
    c.add_argument("--leaf-size", type=int, default=64)
    args = p.parse_args(argv)
    try:
        if args.cmd == "demo" and args.mpi:
            from .mpi import demo as mpi_demo, require_mpi

            try:
                require_mpi()
            except ImportError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return mpi_demo(args)
        return _demo(args) if args.cmd == "demo" else _compress(args)
    except (_UsageError, ValueError, TypeError, OSError, MemoryError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
