"""Shared helpers of the benchmark scripts: machine description, streaming bandwidth,
peak RSS, timing."""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def _sum_serial(a):
    s0 = 0.0
    for i in range(a.size):
        s0 += a[i]
    return s0


def read_bandwidth(nbytes=512 * 2**20, threads=1, repeat=5):
    """Streaming read bandwidth in bytes/s: best of ``repeat`` sums over a float64 array of
    ``nbytes`` (far larger than the caches), vectorised compiled loop, ``threads`` threads."""
    a = np.ones(nbytes // 8)
    best = float("inf")
    if threads <= 1:
        _sum_serial(a[:16])
        for _ in range(repeat):
            t = time.perf_counter()
            _sum_serial(a)
            best = min(best, time.perf_counter() - t)
    else:
        from concurrent.futures import ThreadPoolExecutor

        parts = [a[i * a.size // threads:(i + 1) * a.size // threads] for i in range(threads)]
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(_sum_serial, [p[:16] for p in parts]))
            for _ in range(repeat):
                t = time.perf_counter()
                list(ex.map(_sum_serial, parts))
                best = min(best, time.perf_counter() - t)
    return a.nbytes / best


def dgemv_bandwidth(nbytes=512 * 2**20, threads=1, repeat=5):
    """Bytes/s a BLAS dgemv streams: best of ``repeat`` products ``A @ x`` with a square
    float64 ``A`` of ``nbytes`` (far larger than the caches), BLAS limited to ``threads``.

    This is the floor a bandwidth-bound matvec is compared with: a matrix read once, the way
    an H-matrix matvec reads its stored factors (a plain summing loop can stream faster than
    any matvec does)."""
    from threadpoolctl import threadpool_limits

    n = int(np.sqrt(nbytes / 8))
    A = np.ones((n, n))
    x = np.ones(n)
    best = float("inf")
    with threadpool_limits(limits=int(threads), user_api="blas"):
        A @ x
        for _ in range(repeat):
            t = time.perf_counter()
            A @ x
            best = min(best, time.perf_counter() - t)
    return A.nbytes / best


def peak_rss_mb():
    """Peak resident set size of this process so far, MB (10^6 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # pragma: no cover - non-Linux
        return float("nan")


def best_of(f, repeat=3):
    """Minimum wall time of ``repeat`` calls of ``f()`` and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def interleaved_median(fns, repeat, sync=lambda: None, inner=1):
    """Median seconds per call of each function of the dict ``fns``, the functions
    interleaved round-robin (so a change of load hits all of them alike): ``repeat`` rounds,
    each timing ``inner`` consecutive calls of one function; ``sync()`` (the device's
    synchronisation) ends every timed stretch. One warm-up call each first."""
    for f in fns.values():
        f()
    sync()
    ts = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            sync()
            ts[k].append((time.perf_counter() - t0) / inner)
    return {k: float(np.median(v)) for k, v in ts.items()}


def machine():
    """One line describing the machine, the libraries and the current load."""
    import numba
    import scipy

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        ncpu = os.cpu_count()
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        load = "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {ncpu} CPUs, {mem:.0f} GiB RAM; Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}; "
        f"load average (1/5/15 min) {load}"
    )


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def fit_exponent(x, y):
    """Least-squares slope of log y against log x."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if x.size >= 2 else float("nan")


class Transcript(list):
    """Lines printed as a benchmark runs and kept, for a ``.txt`` copy of its output."""

    def say(self, text=""):
        print(text, flush=True)
        self.append(text)
