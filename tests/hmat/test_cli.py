"""The command line: demo and compress."""

import subprocess
import sys

import numpy as np

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
