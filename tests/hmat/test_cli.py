"""The command line: demo and compress."""

import subprocess
import sys

import numpy as np
import pytest

import hmat
from hmat.__main__ import main, sphere_points


def test_sphere_points_on_sphere():
    p = sphere_points(1000)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-12)
    assert p[0, 2] == 1 - 1 / 1000


def test_demo_small(capsys, tmp_path):
    out = tmp_path / "s.png"
    assert main(["demo", "--n", "3000", "--tol", "1e-6", "--quiet", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    err = float(text.split("sampled error")[1].split()[0])
    assert err <= 1e-6
    assert "compression ratio" in text and "matvec" in text
    assert out.exists() and out.stat().st_size > 1000


def test_compress_roundtrip(capsys, tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.random((300, 2))
    A = hmat.kernels.Exponential(0.3).block(pts, pts)
    np.save(tmp_path / "a.npy", A)
    assert main(["compress", str(tmp_path / "a.npy"), str(tmp_path / "a.npz"), "--tol", "1e-3"]) == 0
    H = hmat.load(tmp_path / "a.npz")
    assert np.linalg.norm(H.to_dense() - A) <= 1e-3 * np.linalg.norm(A)
    assert "certified error" in capsys.readouterr().out


def test_compress_bad_input(capsys, tmp_path):
    np.save(tmp_path / "bad.npy", np.array([[1.0, np.nan]]))
    assert main(["compress", str(tmp_path / "bad.npy"), str(tmp_path / "o.npz")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "missing.npy"), str(tmp_path / "o.npz")]) == 2
    assert main(["compress", str(tmp_path / "bad.npy"), str(tmp_path / "o.npz"), "--tol", "0"]) == 2
    assert not (tmp_path / "o.npz").exists()


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "hmat", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout


# ------------------------------------------------------------- bad input (issue 11)
def _one_line_error(capsys):
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert "Traceback" not in cap.err
    return lines[0], cap.out


def _small_npy(tmp_path):
    rng = np.random.default_rng(0)
    A = hmat.kernels.Exponential(0.3).block(*(2 * [rng.random((40, 2))]))
    np.save(tmp_path / "a.npy", A)
    return str(tmp_path / "a.npy")


def test_compress_missing_points_file(capsys, tmp_path):
    a = _small_npy(tmp_path)
    assert main(["compress", a, str(tmp_path / "o.npz"), "--points", str(tmp_path / "missing.npy")]) == 2
    line, _ = _one_line_error(capsys)
    assert "--points" in line and "missing.npy" in line
    assert not (tmp_path / "o.npz").exists()


def test_compress_output_in_missing_directory_or_under_a_file(capsys, tmp_path):
    a = _small_npy(tmp_path)
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "no" / "dir" / "o.npz", tmp_path / "f" / "o.npz", tmp_path):
        assert main(["compress", a, str(out)]) == 2
        line, stdout = _one_line_error(capsys)
        assert "output" in line and str(out) in line
        assert "compressed" not in stdout  # refused before computing


def test_demo_plot_in_missing_directory_fails_before_computing(capsys, tmp_path):
    bad = tmp_path / "no" / "dir" / "p.png"
    assert main(["demo", "--n", "500", "--quiet", "--plot", str(bad)]) == 2
    line, stdout = _one_line_error(capsys)
    assert "--plot" in line and str(bad) in line
    assert stdout == ""  # nothing computed, not even the warm-up


def test_demo_negative_threads(capsys):
    assert main(["demo", "--n", "500", "--threads", "-2"]) == 2
    line, stdout = _one_line_error(capsys)
    assert "--threads" in line and "-2" in line
    assert stdout == ""


def test_cli_bad_input_never_prints_a_traceback(tmp_path):
    """Through the real entry point: one stderr line, exit code 2."""
    np.save(tmp_path / "a.npy", np.eye(4))
    r = subprocess.run([sys.executable, "-m", "hmat", "compress", str(tmp_path / "a.npy"), str(tmp_path / "o.npz"),
                        "--points", str(tmp_path / "missing.npy")], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [["demo", "--threads", "abc"], ["compress"], ["nope"], ["demo", "--n", "1e3"]])
def test_argparse_errors_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    _one_line_error(capsys)
