"""Memory-accuracy curve of the sphere-1/r operator (issue 15), one command.

Stored MB against the sampled error (50 rows against direct summation, as in
``benchmarks/sphere.py``) for tol 1e-8 ... 1e-3 and the storage variants ``full`` (every
leaf, float64), ``symmetric`` (one leaf of each mirrored pair) and ``symmetric+adaptive``
(also single precision where the rounding fits; the default of ``hmat.from_kernel``).
Every case runs in its own process on one thread (``sphere.run_case``), so the stored and
peak-RSS figures belong to that case only; the matvec time is the best of 5.

    python benchmarks/memory_accuracy.py              # N = 80,000 (run on a quiet machine)
    python benchmarks/memory_accuracy.py --n 4000 --tols 1e-6 1e-4   # smoke test

Writes, under ``benchmarks/`` (``--out`` changes the folder):

* ``memory_accuracy_n<N>.json``: every case as measured (raw), with machine and date;
* ``memory_accuracy_n<N>.txt``: the table printed while running;
* ``figures/sphere_memory_accuracy_n<N>.png``: the plot (when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C  # noqa: E402
import sphere  # noqa: E402

TOLS = [1e-8, 1e-7, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
VARIANTS = ["full", "symmetric", "symmetric+adaptive"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=80_000, help="number of points (default 80,000)")
    ap.add_argument("--tols", type=float, nargs="+", default=TOLS)
    ap.add_argument("--variants", nargs="+", default=VARIANTS, choices=list(sphere.VARIANTS))
    ap.add_argument("--out", default=HERE, help="folder of the raw .json, the .txt table and figures/")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"memory_accuracy_n{args.n}")
    lines = C.Transcript()
    say = lines.say
    say(f"# sphere-1/r memory-accuracy curve, N = {args.n:,}, 1 thread")
    say(f"machine: {C.machine()}")
    say(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; command: python benchmarks/memory_accuracy.py "
        + " ".join(sys.argv[1:] if argv is None else argv))
    say()
    say("| storage | tol | stored MB (of it single) | sampled error | build s | build CPU s | matvec s "
        "| matvec / floor | rank mean | peak RSS MB | load |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    curve = []
    t0 = time.time()
    for var in args.variants:
        for tol in args.tols:
            r = sphere.run_case(args.n, 1, tol, 1, dense=False, variant=var)
            curve.append(r)
            single = sum(v for k, v in r["stored_mb_by_dtype"].items() if k in ("float32", "complex64"))
            say(f"| {var} | {tol:g} | {r['stored_mb']:.0f} ({single:.0f}) | {r['error']:.1e} | {r['build_s']:.2f} "
                f"| {r['build_cpu_s']:.2f} | {r['matvec_s']:.4f} | {r['matvec_over_floor']:.2f} | {r['rank_mean']:.1f} "
                f"| {r['peak_rss_mb']:.0f} | {r['load']:.1f} |")
    say()
    say(f"wall time of the whole curve: {time.time() - t0:.0f} s")
    with open(stem + ".json", "w") as f:
        json.dump({"n": args.n, "machine": C.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "curve": curve}, f, indent=1)
    with open(stem + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    sphere.plot_curve(curve, args.n, os.path.join(args.out, "figures", f"sphere_memory_accuracy_n{args.n}.png"))
    print(f"raw results: {stem}.json; table: {stem}.txt")


if __name__ == "__main__":
    main()
