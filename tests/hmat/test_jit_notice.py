"""The one-line notice when hmat's Numba kernels compile (cold cache), and silence when warm."""

import os
import subprocess
import sys

import numba
import pytest

from hmat import _jit_notice


def _fresh_jit(module):
    """A new (uncompiled, uncached) Numba function whose Python function lives in ``module``."""
    ns = {"__name__": module}
    exec("def f(x):\n    return x + 1\n", ns)
    return numba.njit(ns["f"])


def test_first_hmat_compile_prints_one_line(capfd, monkeypatch):
    monkeypatch.setitem(_jit_notice._state, "printed", False)
    assert _fresh_jit("hmat._probe_a")(1) == 2  # compiles: a cache miss fires the event
    assert _fresh_jit("hmat._probe_b")(1) == 2  # a second compile in the same process: silent
    err = capfd.readouterr().err
    assert err.splitlines() == [_jit_notice.MESSAGE]


def test_other_packages_compiles_are_ignored(capfd, monkeypatch):
    monkeypatch.setitem(_jit_notice._state, "printed", False)
    assert _fresh_jit("somebody_else")(1) == 2
    assert _fresh_jit("hmatx.lookalike")(1) == 2
    assert capfd.readouterr().err == ""
    assert _jit_notice._state["printed"] is False


def test_already_compiled_kernel_is_silent(capfd, monkeypatch):
    f = _fresh_jit("hmat._probe_c")
    f(1)
    capfd.readouterr()
    monkeypatch.setitem(_jit_notice._state, "printed", False)
    f(2)  # same signature: no compile, no event
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_cold_cache_prints_warm_cache_does_not(tmp_path):
    """End to end, a fresh on-disk cache (NUMBA_CACHE_DIR): the first run says so, the second is silent."""
    code = "import hmat, numpy as np; H = hmat.HBlock([[hmat.Dense(np.ones((2, 2)))]]); print(H @ np.ones(2))"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stderr.splitlines() == [_jit_notice.MESSAGE]
    assert runs[1].stderr == ""
