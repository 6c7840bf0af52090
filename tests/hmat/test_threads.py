"""The default thread count of hmat's parallel build and matvec."""

import os

import pytest

from hmat import _threads


@pytest.mark.parametrize("env, expected", [
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"NUMBA_NUM_THREADS": "1"}, 1),
    ({"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "4"}, 1),
    ({"OMP_NUM_THREADS": "abc"}, None),   # not a positive int: ignored
    ({"OMP_NUM_THREADS": "0"}, None),
    ({}, None),
])
def test_default_threads_honour_environment(monkeypatch, env, expected):
    """The default thread count is limited by NUMBA_NUM_THREADS / OMP_NUM_THREADS; an explicit
    set_num_threads wins over both."""
    for var in _threads.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    old = _threads._state["n"]
    try:
        _threads.set_num_threads(None)
        cpus = len(os.sched_getaffinity(0))
        assert _threads.get_num_threads() == (cpus if expected is None else min(cpus, expected))
        _threads.set_num_threads(2)
        assert _threads.get_num_threads() == 2
    finally:
        _threads._state["n"] = old
