"""The Burgers program of docs/deepxde.md runs as written (with fewer steps)."""
import pathlib
import re

import numpy as np
import pytest

import pinn

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "deepxde.md"


def test_deepxde_burgers_translation_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    code = re.search(r"As one program:\n\n```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    fast = code.replace("adam_steps=15000", "adam_steps=20").replace("lbfgs_steps=15000",
                                                                     "lbfgs_steps=5")
    assert fast.count("steps=") == 2 and fast != code
    # a Burgers.npz in DeepXDE's layout: x (256, 1), t (100, 1), usol (256, 100)
    x = np.linspace(-1, 1, 256)[:, None]
    t = np.linspace(0, 0.99, 100)[:, None]
    np.savez(tmp_path / "Burgers.npz", x=x, t=t, usol=pinn.problems.cole_hopf(x, t.T))
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(fast, str(DOC), "exec"), env)
    out = capsys.readouterr().out
    assert "L2 relative error" in out
    assert (tmp_path / "loss.png").exists() and (tmp_path / "solution.png").exists()
    prob, model, hist = env["prob"], env["model"], env["hist"]
    assert model.sizes == [2, 20, 20, 20, 1]
    b = prob.make_batch(2540, 80, "sobol", 0)
    assert (len(b["pde"]), len(b["bc"][0]), len(b["ic"][0])) == (2540, 80, 160)
    assert hist["final_l2"] == pinn.metrics.relative_l2(env["y_pred"], env["y_true"])
