import json
import os

import pytest

from pinn.__main__ import main
from pinn.report import STUDY_METHODS, run_study


def test_compare_cli_subset(tmp_path):
    out = tmp_path / "study"
    rc = main(["compare", "--pde", "poisson1d", "--width", "8", "--depth", "3", "--budgets",
               "0.5", "--seeds", "0", "--adam-steps", "20", "--lbfgs-steps", "3",
               "--finetune-steps", "3", "--finetune-lbfgs-steps", "2", "--n-collocation", "16",
               "--leaf-size", "4", "--ntk-points", "2", "4", "--methods",
               "dense,hmatrix,svd+finetune,quantize-int8", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in res["records"]} == {"dense", "hmatrix", "svd+finetune",
                                                      "quantize-int8"}
    assert "| hmatrix | 0.5 |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_compare_cli_tiny(tmp_path, capsys):
    out = tmp_path / "study"
    rc = main(["compare", "--pde", "poisson1d", "--width", "8", "--depth", "3", "--budgets",
               "0.5", "--seeds", "0", "--adam-steps", "30", "--lbfgs-steps", "5",
               "--finetune-steps", "5", "--finetune-lbfgs-steps", "2", "--n-collocation", "16", "--leaf-size", "4",
               "--ntk-points", "4", "8", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in res["records"]}
    assert methods == set(STUDY_METHODS)
    for r in res["records"]:
        if r.get("feasible"):
            assert r["l2"] >= 0 and r["bytes"] > 0
            if r["budget"] is not None:
                assert r["fraction"] <= r["budget"] + 1e-12
    report = (out / "report.md").read_text()
    assert "hmatrix-dynamic" in report and "| method | budget |" in report
    try:
        import matplotlib  # noqa: F401
        assert (out / "l2_vs_bytes_poisson1d.png").exists()
        assert (out / "ntk_spectra_poisson1d.png").exists()
    except ImportError:
        pass


@pytest.mark.parametrize("args, msg", [
    (["--pde", "wave"], "unknown PDE"),
    (["--methods", "dense,magic"], "unknown method"),
    (["--budgets", "0.5,1.5"], "budget"),
])
def test_compare_cli_bad_input(args, msg, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["compare", "--out", str(tmp_path), "--no-progress"] + args)
    assert msg in capsys.readouterr().err


def test_train_cli(capsys):
    rc = main(["train", "--pde", "poisson1d", "--width", "8", "--depth", "2", "--adam-steps",
               "20", "--lbfgs-steps", "5", "--no-progress"])
    assert rc == 0
    assert "L2 error" in capsys.readouterr().out
