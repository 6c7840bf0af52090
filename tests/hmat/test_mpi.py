"""hmat.mpi: the distributed checks run under ``mpiexec -n 2`` and ``-n 3`` (uneven splits)
as subprocesses with a timeout; the rest runs in this process without MPI."""

import importlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hmat
import hmat.mpi as hm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_cases.py")
TIMEOUT = 300  # generous: the machine may be shared; the checks take ~10-20 s unloaded


def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else shutil.which("mpiexec")


def _need_mpi():
    pytest.importorskip("mpi4py")
    pytest.importorskip("pylops_mpi")
    exe = _mpiexec()
    if exe is None:
        pytest.skip("mpiexec not found (install the mpi extra)")
    return exe


def _run(args, nprocs):
    exe = _need_mpi()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([exe, "-n", str(nprocs), sys.executable, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {nprocs} did not finish in {TIMEOUT} s (a hang?): {exc.stdout!r} {exc.stderr!r}")
    return proc


ALL_CASES = ("equal_to_serial", "rectangular", "krylov", "save_load", "failures", "tiny")


# the Krylov case (which imports pylops-mpi, slow to import) runs with the uneven split only
@pytest.mark.parametrize("nprocs, cases", [(2, [c for c in ALL_CASES if c != "krylov"]), (3, list(ALL_CASES))])
def test_distributed_cases(tmp_path, nprocs, cases):
    proc = _run([SCRIPT, str(tmp_path), *cases], nprocs)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for name in cases:
        assert f"OK {name}" in proc.stdout, out
    assert "ALL DONE" in proc.stdout, out


def test_demo_mpi_prints_the_serial_lines():
    proc = _run(["-m", "hmat", "demo", "--mpi", "--n", "3000", "--quiet"], 2)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for label in ("compile/warm-up", "build", "stored ", "stored per rank", "compression ratio", "leaves",
                  "kernel evaluations", "matvec (best of 3)", "sampled error", "entry error estimate"):
        assert f"  {label}" in out, out
    assert "ranks=2" in out
    err = float(out.split("sampled error")[1].split()[0])
    assert err < 1e-5, out


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    mod = importlib.reload(hm)  # importing hmat.mpi itself needs no mpi4py
    with pytest.raises(ImportError, match=r"hmat-pinn\[mpi\]"):
        mod.require_mpi()
    with pytest.raises(ImportError, match=r"hmat-pinn\[mpi\]"):
        mod.from_kernel(hmat.kernels.Laplace(3), hmat.sphere_points(10))
    monkeypatch.undo()
    importlib.reload(hm)


def test_cli_mpi_without_mpi4py_is_one_line(monkeypatch, capsys):
    from hmat.__main__ import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["demo", "--mpi", "--n", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hmat-pinn[mpi]" in err, err


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), leaf=st.integers(4, 64), parts=st.integers(1, 7), seed=st.integers(0, 3))
def test_row_cuts_never_split_a_leaf_and_pick_the_nearest_valid_cut(n, leaf, parts, seed):
    pts = np.random.default_rng(seed).standard_normal((n, 3))
    tree = hmat.ClusterTree(pts, leaf_size=leaf)
    bt = hmat.BlockTree(tree, tree, hmat.StrongAdmissibility(2.0))
    r0, m, c0, ncols, adm = bt.leaf_arrays()
    cost = np.where(adm, 24 * (m + ncols), m * ncols).astype(np.float64)
    cuts = hm.row_cuts(r0, m, cost, n, parts)
    assert cuts.shape == (parts + 1,) and cuts[0] == 0 and cuts[-1] == n
    assert (np.diff(cuts) >= 0).all()
    # reference, leaf by leaf: a cut is valid where no leaf has r0 < cut < r0 + m
    valid = [p for p in range(n + 1) if not any(a < p < a + b for a, b in zip(r0, m))]
    for c in cuts:
        assert c in valid
    total = cost.sum()
    below = {p: cost[r0 < p].sum() for p in valid}
    for k in range(1, parts):
        target = total * k / parts
        best = min(abs(below[p] - target) for p in valid)
        # the nearest valid cut, unless pushed up by the previous cut (monotone)
        assert abs(below[int(cuts[k])] - target) <= best + 1e-9 * total or cuts[k] == cuts[k - 1]
