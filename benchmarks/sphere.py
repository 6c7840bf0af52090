"""The sphere-1/r benchmark (docs/sphere_benchmark.md), exactly as the peers were measured.

N Fibonacci points on the unit sphere, G(x, y) = 1 / (4 pi |x - y|), G(x, x) = 0,
tol 1e-6, eta 2 (strong admissibility), leaf size 64. For each N and thread count:
build time, stored MB, peak RSS, matvec time, the relative 2-norm error of H x on 50
evenly spaced rows (i = s N / 50) against direct summation with x uniform in [0, 1), and
two ratios measured in the same run: matvec time / floor, where the floor is the stored
bytes divided by what a BLAS dgemv streams with the same thread count over a 512 MB matrix
(the summing-loop read bandwidth is recorded beside it), and dense-matvec time / H-matvec time where the dense matrix fits in memory.
Every case is measured for each storage variant of ``--variants`` side by side (``full``:
every leaf in float64; ``symmetric``: one leaf of each mirrored pair; ``adaptive``: parts
in float32 where the rounding fits; ``symmetric+adaptive``: both, the default of
``hmat.from_kernel``). Then growth exponents over N, a memory-accuracy curve over tol per
variant (a table, and a plot in benchmarks/figures/ when matplotlib is there), and the
first-call compile latency (measured in fresh processes, kept out of every timing above).

Every (N, threads) case runs in its own process, so peak RSS belongs to that case only.
Timings are the best of ``--repeat`` runs; CPU time is reported next to wall time because a
shared machine's load inflates wall time (the load average is printed).

    python benchmarks/sphere.py                 # N = 10k, 20k, 40k, 80k; 1 and all threads
    python benchmarks/sphere.py --large         # adds N = 160k
    python benchmarks/sphere.py --sizes 2000 4000 --curve-n 4000 --quick   # smoke test

The memory-accuracy curve alone at N = 80,000, raw JSON, table and plot written under
benchmarks/: ``python benchmarks/memory_accuracy.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

# Peers, one thread, 2-vCPU machine (build s, MB, matvec s, sampled error). N = 80,000: the
# side-by-side run of 2026-12-01 in docs/sphere_benchmark.md (hmat-oss at its default
# recompression 1e-4); N = 10,000: figures the project had from an earlier day.
PEERS = {
    10_000: {"H2Lib": (0.61, 153, 0.030, 4e-8), "Htool": (0.55, 168, 0.041, 5e-8), "hmat-oss": (4.1, 76, 0.024, 4e-7)},
    80_000: {"H2Lib": (11.6, 1925, 0.352, 9.8e-8), "Htool": (14.8, 2156, 0.486, 7.1e-8), "hmat-oss": (40.5, 845, 0.169, 1.8e-7)},
}


#: Storage variants (``--variants``): keyword arguments of hmat.from_kernel.
VARIANTS = {
    "full": {"precision": "full", "symmetric": False},
    "symmetric": {"precision": "full"},
    "adaptive": {"symmetric": False},
    "symmetric+adaptive": {},
    "symmetric+adaptive+global": {"budget": "global"},  # tol relative to ||K||_F of the whole matrix
}


def fibonacci_sphere(n):
    from hmat.points import sphere_points

    return sphere_points(n)


def reference_rows(P, x, rows):
    """Direct summation of (G x)[i] for the given rows, G(x, x) = 0."""
    out = np.empty(rows.size)
    for a, i in enumerate(rows):
        d = np.sqrt(((P - P[i]) ** 2).sum(axis=1))
        d[i] = np.inf
        out[a] = (x / (4.0 * np.pi * d)).sum()
    return out


def protocol_error(H, P, seed=0):
    N = P.shape[0]
    x = np.random.default_rng(seed).random(N)
    rows = (np.arange(50) * N) // 50
    y = H @ x
    ref = reference_rows(P, x, rows)
    return float(np.linalg.norm(y[rows] - ref) / np.linalg.norm(ref))


# ----------------------------------------------------------------------------- worker
def worker(args):
    """One case in this process; prints one JSON line."""
    import hmat
    from hmat import _aca_numba, _threads

    import _common as C

    th = args.threads[0]
    threads = th if th > 0 else _threads.get_num_threads()
    _threads.set_num_threads(threads)
    _aca_numba.SYMMETRIC_BUILD = not args.full
    K = hmat.kernels.Laplace(3)
    # warm-up: loads (or compiles) every compiled function outside the timings
    Pw = fibonacci_sphere(3000)
    Hw = hmat.from_kernel(K, Pw, tol=args.tol, eta=2.0, leaf_size=64, **VARIANTS[args.variant])
    Hw @ np.ones(3000)
    Hw.H @ np.ones(3000)
    del Hw
    P = fibonacci_sphere(args.n)
    rss0 = C.current_rss_mb()
    builds, cpus, H = [], [], None
    for _ in range(args.repeat):
        H = None
        t, c = time.perf_counter(), time.process_time()
        H = hmat.from_kernel(K, P, tol=args.tol, eta=2.0, leaf_size=64, **VARIANTS[args.variant])
        builds.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    peak = C.peak_rss_mb()
    stored = H._packed.nbytes
    st = H.stats()
    x = np.random.default_rng(0).random(args.n)
    H @ x
    mv, _ = C.best_of(lambda: H @ x, max(5, args.repeat))
    c = time.process_time()
    H @ x
    mv_cpu = time.process_time() - c
    err = protocol_error(H, P)
    bw = C.dgemv_bandwidth(threads=threads)  # the floor: a dgemv streaming a 512 MB matrix
    read_bw = C.read_bandwidth(threads=threads)  # a plain summing loop, for reference
    floor = stored / bw
    out = {
        "n": args.n, "threads": threads, "tol": args.tol, "symmetric_build": not args.full, "variant": args.variant,
        "symmetry": st["symmetry"], "n_stored_leaves": st["n_stored_leaves"],
        "stored_mb_by_dtype": {k: v / 1e6 for k, v in st["nbytes_by_dtype"].items()},
        "build_s": min(builds), "build_cpu_s": min(cpus), "builds": builds,
        "stored_mb": stored / 1e6, "peak_rss_mb": peak, "rss_before_build_mb": rss0,
        "matvec_s": mv, "matvec_cpu_s": mv_cpu, "error": err, "bandwidth_gbs": bw / 1e9, "read_bandwidth_gbs": read_bw / 1e9,
        "floor_s": floor, "matvec_over_floor": mv / floor,
        "kernel_evals": int(st["kernel_evaluations"]), "n_leaves": st["n_leaves"],
        "rank_mean": st["rank_mean"], "rank_max": st["rank_max"], "error_estimate": H.error_estimate,
        "load": C.loadavg(),
    }
    if args.dense:
        out.update(dense_ratio(P, x, mv, threads, args))
    print("RESULT " + json.dumps(out), flush=True)


def dense_ratio(P, x, h_mv, threads, args):
    """Dense matvec time / H matvec time, when an N x N float64 matrix fits comfortably."""
    N = P.shape[0]
    need = 8.0 * N * N
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):  # pragma: no cover
        avail = 0
    if need > 0.4 * avail:
        return {"dense_over_h": None, "dense_note": f"dense {need / 1e9:.1f} GB does not fit"}
    import hmat

    import _common as C

    K = hmat.kernels.Laplace(3)
    D = np.empty((N, N))
    step = max(1, int(2e7 // N))
    for a in range(0, N, step):
        D[a:a + step] = K.block(P[a:a + step], P)
    D[np.arange(N), np.arange(N)] = 0.0
    D @ x
    t, _ = C.best_of(lambda: D @ x, 3)
    return {"dense_matvec_s": t, "dense_over_h": t / h_mv}


# ----------------------------------------------------------------------------- driver
def run_case(n, threads, tol, repeat, dense, full=False, timeout=3600, variant="symmetric+adaptive"):
    env = dict(os.environ)
    if threads == 1:  # the dense reference matvec (BLAS) runs on one thread too
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--n", str(n), "--threads", str(threads),
           "--tol", repr(tol), "--repeat", str(repeat), "--variant", variant]
    if dense:
        cmd.append("--dense")
    if full:
        cmd.append("--full")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed for n={n} threads={threads}:\n{p.stdout}\n{p.stderr}")


def compile_latency():
    """Seconds of the first from_kernel + matvec in a fresh process: with an empty Numba
    cache (cold: everything compiles) and with the on-disk cache (warm: loads only)."""
    code = (
        "import time; t = time.perf_counter(); import numpy as np, hmat; "
        "i = np.arange(2000); z = 1 - (2 * i + 1) / 2000; r = np.sqrt(1 - z * z); ph = i * np.pi * (3 - 5 ** 0.5); "
        "P = np.c_[r * np.cos(ph), r * np.sin(ph), z]; t1 = time.perf_counter(); "
        "H = hmat.from_kernel(hmat.kernels.Laplace(3), P); H @ np.ones(2000); "
        "print('LAT', t1 - t, time.perf_counter() - t1)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, cache in (("cold", d), ("warm", None)):
            env = dict(os.environ)
            if cache:
                env["NUMBA_CACHE_DIR"] = cache
            import resource

            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            line = [x for x in p.stdout.splitlines() if x.startswith("LAT")]
            out[name] = (tuple(float(v) for v in line[0].split()[1:]) if line else (float("nan"), float("nan"))) + (cpu,)
    return out


def plot_curve(curve, n, path):
    """Stored MB against sampled error, one line per storage variant (matplotlib optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(matplotlib missing: no plot written to {path})")
        return
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for var in dict.fromkeys(r["variant"] for r in curve):
        rs = sorted((r for r in curve if r["variant"] == var), key=lambda r: r["error"])
        ax.loglog([r["error"] for r in rs], [r["stored_mb"] for r in rs], "o-", label=f"{var} storage")
        for r in rs:
            ax.annotate(f"{r['tol']:g}", (r["error"], r["stored_mb"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("sampled relative error (50 rows)")
    ax.set_ylabel("stored MB")
    ax.set_title(f"sphere 1/r, N = {n:,}: memory against accuracy (labels: tol)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 20_000, 40_000, 80_000])
    ap.add_argument("--large", action="store_true", help="add N = 160,000")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 0], help="0 = all CPUs")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--curve-n", type=int, default=40_000, help="N of the memory-accuracy curve (0: skip)")
    ap.add_argument("--curve-tols", type=float, nargs="*",
                    default=[1e-8, 1e-7, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
    ap.add_argument("--full-too", action="store_true",
                    help="also time the build without the symmetric (mirrored-leaf) shortcut, 1 thread")
    ap.add_argument("--variants", nargs="*", default=["full", "symmetric", "symmetric+adaptive"],
                    choices=list(VARIANTS), help="storage variants measured side by side (see VARIANTS)")
    ap.add_argument("--variant", default="symmetric+adaptive", help=argparse.SUPPRESS)
    ap.add_argument("--curve-plot", default=os.path.join(HERE, "figures", "sphere_memory_accuracy.png"),
                    help="the memory-accuracy curve as a plot (matplotlib; '' to skip)")
    ap.add_argument("--quick", action="store_true", help="repeat 1, no compile-latency probe")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import _common as C

    sizes = sorted(set(args.sizes + ([160_000] if args.large else [])))
    repeat = 1 if args.quick else args.repeat
    print("# sphere-1/r benchmark (docs/sphere_benchmark.md)")
    print(f"machine: {C.machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; command: python benchmarks/{' '.join([os.path.basename(__file__)] + sys.argv[1:])}")
    print(f"tol {args.tol:g}, eta 2, leaf 64; timings best of {repeat}; x uniform [0,1) seed 0; error on rows i = s*N/50\n")
    results = {"machine": C.machine(), "cases": [], "curve": [], "full": []}
    if not args.quick:
        lat = compile_latency()
        results["latency"] = lat
        print(f"compile latency (first from_kernel + matvec, N = 2000, fresh process): "
              f"cold cache {lat['cold'][1]:.1f} s (+ import {lat['cold'][0]:.1f} s; whole process CPU {lat['cold'][2]:.1f} s), "
              f"warm cache {lat['warm'][1]:.1f} s (+ import {lat['warm'][0]:.1f} s; whole process CPU {lat['warm'][2]:.1f} s)\n")
    hdr = ("| N | threads | storage | build s | build CPU s | stored MB (of it single) | peak RSS MB | matvec s "
           "| sampled error | matvec / floor | dense / H matvec | kernel evals / N^2 | load |")
    print(hdr)
    print("|---" * (hdr.count("|") - 1) + "|")
    for n in sizes:
        for th in args.threads:
          for var in args.variants:
            r = run_case(n, th, args.tol, repeat, dense=var == args.variants[0], variant=var)
            results["cases"].append(r)
            single = sum(v for k, v in r["stored_mb_by_dtype"].items() if k in ("float32", "complex64"))
            print(f"| {n:,} | {r['threads']} | {var} | {r['build_s']:.2f} | {r['build_cpu_s']:.2f} | {r['stored_mb']:.0f} ({single:.0f}) "
                  f"| {r['peak_rss_mb']:.0f} | {r['matvec_s']:.4f} | {r['error']:.1e} | {r['matvec_over_floor']:.2f} "
                  f"(dgemv {r['bandwidth_gbs']:.1f} GB/s) | {fmt(r.get('dense_over_h'), '.1f')} "
                  f"| {r['kernel_evals'] / n / n:.4f} | {r['load']:.1f} |", flush=True)
    main_var = args.variants[-1]  # growth and speed-up of the last variant (the default storage)
    one = [r for r in results["cases"] if r["threads"] == 1 and r["variant"] == main_var]
    if len(one) >= 2:
        ns = [r["n"] for r in one]
        print(f"\ngrowth exponents (1 thread, N = {ns[0]:,}..{ns[-1]:,}): build wall {C.fit_exponent(ns, [r['build_s'] for r in one]):.2f}, "
              f"build CPU {C.fit_exponent(ns, [r['build_cpu_s'] for r in one]):.2f}, "
              f"stored MB {C.fit_exponent(ns, [r['stored_mb'] for r in one]):.2f} "
              f"(N log N over this range: {C.fit_exponent(ns, [n * np.log(n) for n in ns]):.2f}), "
              f"matvec {C.fit_exponent(ns, [r['matvec_s'] for r in one]):.2f}")
    multi = {(r["n"], r["threads"]): r for r in results["cases"] if r["variant"] == main_var}
    sp = [(n, multi[(n, 1)], r) for (n, t), r in multi.items() if t > 1 and (n, 1) in multi]
    if sp:
        print("\nspeed-up with all threads (wall, same run): " + "; ".join(
            f"N={n:,}: build {a['build_s'] / b['build_s']:.2f}x, matvec {a['matvec_s'] / b['matvec_s']:.2f}x ({b['threads']} threads)"
            for n, a, b in sp) + f" [{main_var}]")
    if args.full_too:
        print("\nbuild without the symmetric shortcut (every leaf computed), 1 thread:")
        for n in sizes:
            r = run_case(n, 1, args.tol, repeat, dense=False, full=True, variant="full")
            results["full"].append(r)
            print(f"  N={n:,}: build {r['build_s']:.2f} s (CPU {r['build_cpu_s']:.2f} s), stored {r['stored_mb']:.0f} MB, "
                  f"error {r['error']:.1e}, kernel evals / N^2 {r['kernel_evals'] / n / n:.4f}", flush=True)
    if args.curve_n:
        n = args.curve_n
        print(f"\nmemory-accuracy curve, N = {n:,}, 1 thread:\n")
        print("| storage | tol | stored MB (of it single) | sampled error | build s | build CPU s | matvec s | rank mean | load |")
        print("|---|---|---|---|---|---|---|---|---|")
        for var in args.variants:
            for tol in args.curve_tols:
                r = run_case(n, 1, tol, 1, dense=False, variant=var)
                results["curve"].append(r)
                single = sum(v for k, v in r["stored_mb_by_dtype"].items() if k in ("float32", "complex64"))
                print(f"| {var} | {tol:g} | {r['stored_mb']:.0f} ({single:.0f}) | {r['error']:.1e} | {r['build_s']:.2f} "
                      f"| {r['build_cpu_s']:.2f} | {r['matvec_s']:.4f} | {r['rank_mean']:.1f} | {r['load']:.1f} |", flush=True)
        print()
        for var in args.variants:
            ok = [r for r in results["curve"] if r["error"] <= 1e-6 and r["variant"] == var]
            if ok:
                best = max(ok, key=lambda r: r["tol"])
                print(f"{var}: largest tol on this grid with sampled error <= 1e-6: {best['tol']:g} "
                      f"({best['stored_mb']:.0f} MB, error {best['error']:.1e})")
        if args.curve_plot:
            plot_curve(results["curve"], n, args.curve_plot)
    print("\nPeers (1 thread; 80k: docs/sphere_benchmark.md, 10k: an earlier day): build s / MB / matvec s / error")
    for n, libs in PEERS.items():
        print(f"  N={n:,}: " + "; ".join(f"{k} {v[0]} / {v[1]} / {v[2]} / {v[3]:.0e}" for k, v in libs.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
