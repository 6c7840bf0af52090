"""Thread count used by hmat's parallel build and matvec."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_state = {"n": None, "pool": None, "pool_n": 0}


def get_num_threads() -> int:
    """Threads hmat uses (default: the CPUs available to this process)."""
    if _state["n"] is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)
    return _state["n"]


def set_num_threads(n: int) -> None:
    """Set the number of threads for builds and matvecs (``None`` restores the default)."""
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
