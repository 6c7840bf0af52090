"""The README's user-defined-PDE example runs as written (with fewer steps)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_user_defined_pde_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    text = README.read_text()
    code = re.search(r"### Your own PDE, domain and point counts\n\n```python\n(.*?)```", text,
                     re.S).group(1)
    fast = code.replace("adam_steps=2000", "adam_steps=30").replace("lbfgs_steps=500",
                                                                    "lbfgs_steps=5")
    assert fast != code
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(fast, str(README), "exec"), env)
    assert {"l2", "linf", "max_abs", "mse"} <= set(capsys.readouterr().out.replace("'", " ")
                                                  .replace(":", " ").split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "disk.png", "disk.pt"]
    prob, info = env["prob2"], env["info"]
    b = prob.make_batch(1000, 64, "sobol", 0)
    assert (len(b["pde"]), len(b["bc"][0]), len(b["neumann"][0])) == (1000, 64, 32)
    assert info["history"]["loss"] == env["hist"]["loss"]
    assert env["u"].shape == (2,)
