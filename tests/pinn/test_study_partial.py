"""A report from a partial results.json: which PDEs are complete, which seeds and sweep
parts are missing (``python -m pinn compare --report-only`` on a study still running)."""
import copy
import json
import os
import subprocess
import sys

from pinn.report import study_status, write_pinn_report
from pinn.studies.pinn_compare import FULL_CONFIG, SWEEP_PARTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rec(pde, method, seed, l2, budget=None):
    return {"pde": pde, "method": method, "budget": budget, "seed": seed, "feasible": True,
            "l2": l2, "bytes": 100, "fraction": 0.5}


def _partial():
    """Poisson1D: every sweep part and all 5 seeds; Burgers1D: the fine-tuning sweep and
    seeds 0, 1; Poisson2D: nothing."""
    units = [f"sweep:poisson1d:{p}" for p in SWEEP_PARTS]
    units += [f"config:poisson1d:{s}" for s in range(5)]
    units += ["sweep:burgers1d:finetune", "config:burgers1d:0", "config:burgers1d:1"]
    recs = [_rec("poisson1d", "dense", s, 1e-4 * (s + 1)) for s in range(5)]
    recs += [_rec("burgers1d", "dense", s, 1e-2 * (s + 1)) for s in range(2)]
    return {"config": copy.deepcopy(FULL_CONFIG), "units": units, "records": recs,
            "sweep": [], "lr": {}, "code": {"hash": "x"}, "machine": {}}


def test_status_names_complete_and_missing_units():
    st = {e["pde"]: e for e in study_status(_partial())}
    assert list(st) == ["poisson1d", "burgers1d", "poisson2d"]
    assert st["poisson1d"]["complete"] and st["poisson1d"]["missing"] == []
    b = st["burgers1d"]
    assert not b["complete"] and b["done"] == [0, 1] and b["missing"] == [2, 3, 4]
    assert b["sweep_missing"] == ["hmatrix-dynamic", "lowrank-scratch"]
    p2 = st["poisson2d"]
    assert not p2["complete"] and p2["done"] == [] and p2["missing"] == [0, 1, 2]


def test_partial_report_says_what_is_missing(tmp_path):
    (path,) = write_pinn_report(_partial(), str(tmp_path), plots=False)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "**Partial results**" in text
    assert "| poisson1d | yes | 5/5 (0, 1, 2, 3, 4) | – | – |" in text
    assert "| burgers1d | no | 2/5 (0, 1) | 2, 3, 4 |" in text
    assert "| poisson2d | no | 0/3 (–) | 0, 1, 2 |" in text
    assert "Helmholtz2D is dropped" in text
    # the burgers table is over the two seeds done
    assert "| dense | – | 2/2 |" in text


def test_complete_report_has_no_partial_warning(tmp_path):
    res = _partial()
    res["config"]["pdes"] = ["poisson1d"]
    (path,) = write_pinn_report(res, str(tmp_path), plots=False)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "Partial" not in text and "Complete: every configured" in text


def test_report_only_cli_on_a_partial_file(tmp_path):
    with open(tmp_path / "results.json", "w", encoding="utf-8") as fh:
        json.dump(_partial(), fh)
    r = subprocess.run([sys.executable, "-m", "pinn", "compare", "--report-only", "--no-plots",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| burgers1d | no | 2/5 (0, 1) |" in (tmp_path / "report.md").read_text()
