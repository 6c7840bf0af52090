"""hmat.mpi on sphere-1/r: 1 rank against P ranks, measured in one run, plus a cost model.

For each N and each rank count P (one thread per rank, so P ranks use P cores), one
``mpiexec -n P`` job builds the distributed H-matrix (tol 1e-6, eta 2, leaf 64) and
measures: build wall time (barrier to barrier, best of ``--build-repeat``), stored MB per rank and total, peak RSS per
rank, matvec wall time (best of ``--repeat``, barrier to barrier, including the allgather of
x), the time of that allgather alone, the entries each rank receives per matvec and during
the build, and load balance (max / mean stored bytes per rank). The driver then compares
the P-rank result ``H x`` with the 1-rank one (relative 2-norm difference) and prints
the ratios of the targets (issue 13) measured in this one run.

Then a cost model (a plan, not a measurement): from the 1-rank build rate and matvec
bandwidth measured here and the growth of storage and build time from the smallest to the
largest N, it extrapolates per-rank memory, build time and matvec time (compute plus an
allgather of x over a network of stated latency and bandwidth) to N = 1e6..1e7 on 8..256 ranks.

    python benchmarks/mpi.py                                   # N = 80k, 160k; P = 1, 2
    python benchmarks/mpi.py --sizes 20000 --ranks 1 2 3       # quick
    python benchmarks/mpi.py --out benchmarks/mpi_runs/run.txt # also write the output there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

# network assumed by the cost model (a commodity HPC cluster: InfiniBand HDR100)
LATENCY_S = 2e-6
BANDWIDTH_BPS = 12.5e9


def worker(args):
    from mpi4py import MPI

    import hmat
    import hmat.mpi as hm
    from _common import peak_rss_mb

    comm = MPI.COMM_WORLD
    rank, P = comm.Get_rank(), comm.Get_size()
    hmat.set_num_threads(1)
    kernel = hmat.kernels.Laplace(3)
    hm.from_kernel(kernel, hmat.sphere_points(2000), comm=comm, n_samples=0)  # compile and warm up
    pts = hmat.sphere_points(args.n)
    build = float("inf")
    for i in range(args.build_repeat):  # best of build_repeat builds: one build is noisy
        H = None  # free the previous build before the next one
        comm.Barrier()
        t = time.perf_counter()
        H = hm.from_kernel(kernel, pts, comm=comm, tol=1e-6, eta=2.0, leaf_size=64)
        comm.Barrier()
        build = min(build, time.perf_counter() - t)
    x = np.random.default_rng(0).random(args.n)
    xl = H.distribute(x)
    H.matvec(xl)
    best = float("inf")
    for _ in range(args.repeat):
        comm.Barrier()
        t = time.perf_counter()
        H.matvec(xl)
        comm.Barrier()
        best = min(best, time.perf_counter() - t)
    full = np.empty(args.n)
    counts = np.diff(H.col_cuts)
    gather = float("inf")
    for _ in range(args.repeat):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allgatherv(xl, [full, (counts, H.col_cuts[:-1])])
        comm.Barrier()
        gather = min(gather, time.perf_counter() - t)
    words = H.last_comm_words
    y = H @ x
    s = H.stats()
    from hmat.__main__ import sampled_row_error

    err = sampled_row_error(H, kernel, pts, x)
    per_rank = comm.gather({"rss_mb": peak_rss_mb(), "words": words, "build_comm_bytes": H.build_comm_bytes,
                            "rows": H.row_slice.stop - H.row_slice.start}, root=0)
    estimate = H.error_estimate
    serial = None
    if P == 1:  # the plain single-process hmat for reference: same thread count, same process
        del H
        sb = float("inf")
        for i in range(args.build_repeat):
            S = None
            t = time.perf_counter()
            S = hmat.from_kernel(kernel, pts, tol=1e-6, eta=2.0, leaf_size=64)
            sb = min(sb, time.perf_counter() - t)
        S @ x
        smv = min(_timed(lambda: S @ x) for _ in range(args.repeat))
        serial = {"build_s": sb, "matvec_s": smv, "nbytes": S.nbytes,
                  "diff": float(np.linalg.norm(S @ x - y) / np.linalg.norm(y))}
    if rank == 0:
        np.save(args.y, y)
        out = {
            "serial": serial, "n": args.n, "ranks": P, "build_s": build, "matvec_s": best, "allgather_s": gather,
            "nbytes": s["nbytes"], "nbytes_per_rank": s["nbytes_per_rank"], "load_balance": s["load_balance"],
            "n_leaves": s["n_leaves"], "kernel_evaluations": s["kernel_evaluations"],
            "sampled_error": err, "error_estimate": estimate, "per_rank": per_rank,
        }
        with open(args.json, "w") as f:
            json.dump(out, f)


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def run_case(n, P, repeat, build_repeat, tmp):
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = exe if os.path.exists(exe) else shutil.which("mpiexec")
    js, y = os.path.join(tmp, f"{n}_{P}.json"), os.path.join(tmp, f"{n}_{P}.npy")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [exe, "-n", str(P), sys.executable, os.path.abspath(__file__), "--worker", "--n", str(n),
           "--repeat", str(repeat), "--build-repeat", str(build_repeat), "--json", js, "--y", y]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    with open(js) as f:
        res = json.load(f)
    res["y"] = np.load(y)
    return res


def model(results, sizes, say):
    """Extrapolate per-rank memory, build and matvec time; print the plan table."""
    one = {r["n"]: r for r in results if r["ranks"] == 1}
    ns = sorted(one)
    if len(ns) < 2:
        say("cost model: needs two sizes with a 1-rank run")
        return
    a, b = ns[0], ns[-1]
    grow = lambda key: np.log(one[b][key] / one[a][key]) / np.log(b / a)  # noqa: E731
    g_mem, g_build = grow("nbytes"), grow("build_s")
    bw = one[b]["nbytes"] / one[b]["matvec_s"]  # bytes/s one rank streams through its leaves
    multi = [r for r in results if r["ranks"] > 1 and r["n"] == b]
    imb = max((r["load_balance"] for r in multi), default=1.0)
    say("")
    say("COST MODEL (a plan extrapolated from the measurements above; nothing below was measured)")
    say(f"  measured at N = {a:,} -> {b:,} (1 rank): stored bytes ~ N^{g_mem:.2f}, build time ~ N^{g_build:.2f};")
    say(f"  matvec streams {bw / 1e9:.2f} GB/s per rank; load balance max/mean {imb:.2f} (worst measured, kept)")
    say(f"  network assumed: latency {LATENCY_S * 1e6:.0f} us, bandwidth {BANDWIDTH_BPS / 1e9:.1f} GB/s per rank;")
    say("  matvec = stored bytes per rank / per-rank bandwidth + allgather of x (latency log2 P + 8 N (P-1)/P / bandwidth);")
    say("  build = 1-rank build time / P x imbalance + exchange of at most the rank's own bytes over the network")
    say(f"  {'N':>10} {'P':>5} {'MB/rank':>9} {'build s':>9} {'matvec s':>9} {'of which comm s':>15} {'comm share':>10}")
    for N in (1_000_000, 3_000_000, 10_000_000):
        mem = one[b]["nbytes"] * (N / b) ** g_mem
        bld = one[b]["build_s"] * (N / b) ** g_build
        for P in (8, 32, 128, 256):
            per = mem / P * imb
            comm = LATENCY_S * np.log2(P) + 8 * N * (P - 1) / P / BANDWIDTH_BPS
            mv = per / bw + comm
            bt = bld / P * imb + per / BANDWIDTH_BPS
            say(f"  {N:>10,} {P:>5} {per / 1e6:>9.0f} {bt:>9.1f} {mv:>9.4f} {comm:>15.4f} {comm / mv:>10.0%}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[80_000, 160_000])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=5, help="matvec repetitions (best is reported)")
    p.add_argument("--build-repeat", type=int, default=3, help="builds per job (best is reported)")
    p.add_argument("--out", help="also write the output to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    p.add_argument("--y", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    from _common import machine

    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    say(f"benchmarks/mpi.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    say(f"date {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    say(f"machine: {machine()}")
    say(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    say("sphere-1/r, tol 1e-6, eta 2, leaf 64, one thread per rank; times are wall seconds (max over ranks), "
        f"best of {args.build_repeat} builds and {args.repeat} matvecs")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for P in args.ranks:
                t = time.perf_counter()
                results.append(run_case(n, P, args.repeat, args.build_repeat, tmp))
                say(f"  ran N={n} P={P} in {time.perf_counter() - t:.0f} s (job incl. start-up)")
    say("")
    say(f"{'N':>8} {'P':>2} {'build s':>8} {'MB total':>9} {'MB/rank max':>11} {'max/mean':>8} {'RSS MB/rank':>12} "
        f"{'matvec s':>9} {'allgather s':>11} {'words/matvec/rank':>17} {'build recv MB/rank':>18} {'sampled err':>11}")
    for r in results:
        pr = r["per_rank"]
        say(f"{r['n']:>8} {r['ranks']:>2} {r['build_s']:>8.2f} {r['nbytes'] / 1e6:>9.0f} "
            f"{max(r['nbytes_per_rank']) / 1e6:>11.0f} {r['load_balance']:>8.2f} "
            f"{max(q['rss_mb'] for q in pr):>12.0f} {r['matvec_s']:>9.4f} {r['allgather_s']:>11.5f} "
            f"{max(q['words'] for q in pr):>17,} {max(q['build_comm_bytes'] for q in pr) / 1e6:>18.1f} "
            f"{r['sampled_error']:>11.2e}")
    for r in results:
        if r.get("serial"):
            q = r["serial"]
            say(f"{r['n']:>8}  serial hmat.from_kernel (1 thread, same job): build {q['build_s']:.2f} s, "
                f"{q['nbytes'] / 1e6:.0f} MB, matvec {q['matvec_s']:.4f} s, |y_serial - y_1| / |y_1| = {q['diff']:.1e}")
    say("")
    say("ratios measured in this run (1 rank / P ranks; memory: max per rank / 1-rank total):")
    for n in args.sizes:
        base = next((r for r in results if r["n"] == n and r["ranks"] == 1), None)
        for r in results:
            if base is None or r["n"] != n or r["ranks"] == 1:
                continue
            diff = np.linalg.norm(r["y"] - base["y"]) / np.linalg.norm(base["y"])
            say(f"  N={n:,} P={r['ranks']}: build {base['build_s'] / r['build_s']:.2f}x faster, "
                f"memory per rank {max(r['nbytes_per_rank']) / base['nbytes']:.3f} of the 1-rank total, "
                f"matvec {base['matvec_s'] / r['matvec_s']:.2f}x faster, "
                f"|y_P - y_1| / |y_1| = {diff:.1e}, words received per matvec per rank "
                f"{max(q['words'] for q in r['per_rank']) / n:.2f} N")
    model(results, args.sizes, say)
    say("")
    say(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
