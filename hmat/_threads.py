"""Thread count used by hmat's parallel build and matvec."""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

_state = {"n": None, "pool": None, "pool_n": 0}


#: Environment variables that limit the default thread count, as numpy/BLAS and numba users
#: set them (the smallest valid one wins).
THREAD_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")


def _env_limit():
    limits = []
    for var in THREAD_ENV_VARS:
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) >= 1:
            limits.append(int(v))
    return min(limits) if limits else None


def get_num_threads() -> int:
    """Threads hmat uses.

    Default: the CPUs available to this process, limited by ``NUMBA_NUM_THREADS`` and
    ``OMP_NUM_THREADS`` when either is set to a positive integer (the smallest wins; other
    values are ignored). :func:`set_num_threads` overrides both.
    """
    if _state["n"] is None:
        try:
            n = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            n = max(1, os.cpu_count() or 1)
        limit = _env_limit()
        return n if limit is None else min(n, limit)
    return _state["n"]


def set_num_threads(n: int) -> None:
    """Set the number of threads for builds and matvecs (``None`` restores the default, which
    honours ``NUMBA_NUM_THREADS`` / ``OMP_NUM_THREADS``)."""
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1 or None, got {n!r}")
    _state["n"] = n


def executor() -> ThreadPoolExecutor:
    """A shared thread pool sized to :func:`get_num_threads` (the compiled kernels release the GIL)."""
    n = get_num_threads()
    if _state["pool"] is None or _state["pool_n"] != n:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=False)
        _state["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hmat")
        _state["pool_n"] = n
    return _state["pool"]


def map_ordered(fn, items, threads):
    """``list(map(fn, items))``, on :func:`executor` when ``threads > 1``."""
    return list(map(fn, items)) if threads <= 1 else list(executor().map(fn, items))


def map_first_here(fn, items, threads, jitted=None):
    """``map(fn, items)`` in order, on :func:`executor` when ``threads > 1`` -- with the
    first item run in the calling thread unless ``jitted`` (the numba dispatcher ``fn``
    calls) has a compiled signature already.

    A compiled function's first call compiles it, and numba's lowering imports the module
    of every function it calls (a user's kernel entry). When the calling thread is itself
    importing that module (a build at module level of a file being imported), a pool thread
    would wait on the import lock while this thread waits on the pool: a deadlock. Running
    the first item here compiles everything before any pool thread needs it.

    Returns
    -------
    iterator over ``fn(item)``
    """
    items = list(items)
    if not items:
        return iter(())
    if threads > 1 and getattr(jitted, "signatures", None):
        return executor().map(fn, items)
    first = fn(items[0])
    if threads <= 1 or len(items) == 1:
        return itertools.chain((first,), map(fn, items[1:]))
    return itertools.chain((first,), executor().map(fn, items[1:]))
