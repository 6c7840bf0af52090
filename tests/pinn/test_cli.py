import json
import os

import pytest

from pinn.__main__ import main
from pinn.studies.pinn_compare import STUDY_METHODS, run_study

TINY = ["--pde", "poisson1d", "--width", "8", "--depth", "3", "--budgets", "0.5", "--seeds", "0",
        "--adam-steps", "20", "--lbfgs-steps", "3", "--finetune-steps", "3",
        "--finetune-lbfgs-steps", "2", "--n-collocation", "16", "--leaf-size", "4",
        "--ntk-points", "2", "4", "--no-progress", "--no-plots"]


def test_compare_cli_subset(tmp_path, capsys):
    out = tmp_path / "study"
    rc = main(["compare", *TINY, "--methods", "dense,svd-lossless,hmatrix,svd+finetune,int8",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "torch threads 1" in printed and "load average" in printed
    res = json.loads((out / "results.json").read_text())
    rec = {r["method"]: r for r in res["records"]}
    assert set(rec) == {"dense", "svd-lossless", "hmatrix", "svd+finetune", "int8"}
    # the lossless control is the same function: same L2, function-space NTK error ~ 0
    assert rec["svd-lossless"]["l2"] == pytest.approx(rec["dense"]["l2"], rel=1e-5)
    assert rec["svd-lossless"]["ntk"]["rel_fro"] < 1e-5
    assert rec["svd-lossless"]["ntk_param"]["rel_fro"] > 1e-2
    # byte rule: 2 hidden 8x8 layers; lossless SVD 2 * 4 * 8 * (8 + 8), int8 2 * (64 + 4 * 8)
    assert rec["dense"]["bytes"] == 2 * 4 * 64
    assert rec["svd-lossless"]["bytes"] == 2 * 4 * 8 * 16
    assert rec["int8"]["bytes"] == 2 * (64 + 4 * 8)
    assert rec["hmatrix"]["bytes"] <= 0.5 * 2 * 4 * 64
    assert res["machine"]["torch_threads"] == 1 and len(res["machine"]["load_average"]) == 3
    assert res["code"]["hash"] and res["config"]["width"] == 8
    assert "| hmatrix | 0.5 |" in (out / "report.md").read_text()


def test_compare_resume_skips_done_units_and_refuses_other_config(tmp_path):
    out = tmp_path / "study"
    args = ["compare", *TINY, "--seeds", "0,1", "--methods", "dense,svd", "--out", str(out)]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["units"] == ["config:poisson1d:0", "config:poisson1d:1"]
    first = [r for r in res["records"] if r["seed"] == 0]
    # as if the run had been killed during seed 1: its unit and records are not in the file
    res["units"] = res["units"][:1]
    res["records"] = first
    (out / "results.json").write_text(json.dumps(res))
    assert main(args + ["--resume"]) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert res2["units"] == ["config:poisson1d:0", "config:poisson1d:1"]
    assert [r for r in res2["records"] if r["seed"] == 0] == first  # kept, not recomputed
    assert sorted(r["seed"] for r in res2["records"]) == [0, 0, 1, 1]
    assert len(res2["runs"]) == 2
    with pytest.raises(SystemExit):
        main(args[:-2] + ["--width", "6", "--out", str(out), "--resume"])


@pytest.mark.slow
def test_compare_cli_all_methods(tmp_path):
    out = tmp_path / "study"
    assert main(["compare", *TINY[:-1], "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in res["records"]} == set(STUDY_METHODS)
    for r in res["records"]:
        assert r.get("feasible"), r
        if r["budget"] is not None:
            assert r["fraction"] <= r["budget"] + 1e-12
    try:
        import matplotlib  # noqa: F401
        assert (out / "error_vs_bytes_poisson1d.png").exists()
        assert (out / "curves_poisson1d.png").exists()
    except ImportError:
        pass


@pytest.mark.parametrize("args, msg", [
    (["--pde", "wave"], "unknown PDE"),
    (["--pde", ""], "--pde must not be empty"),
    (["--methods", "dense,magic"], "unknown method"),
    (["--budgets", "0.5,1.5"], "budget"),
    (["--budgets", ""], "--budgets must not be empty"),
    (["--budgets", "half"], "--budgets"),
    (["--threads", "-2"], "--threads must be an integer >= 1"),
    (["--workers", "3"], "--workers must be 1 or 2"),
    (["--adam-steps", "-1"], "adam_steps must be an integer >= 0"),
    (["--dynamic-tol", "5"], "dynamic_tol must be a number in (0, 1]"),
    (["--width", "0"], "width must be an integer >= 1"),
    (["--n-collocation", "0"], "n_collocation must be an integer >= 1"),
    (["--leaf-size", "0"], "leaf_size must be an integer >= 2"),
    (["--leaf-size", "1"], "leaf_size must be an integer >= 2"),
    (["--config", "nosuch.json"], "neither a named config"),
    (["--device", "tpu"], "device"),
])
def test_compare_cli_bad_input(args, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as ei:
        main(["compare", "--out", str(tmp_path), "--no-progress"] + args)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_compare_out_under_a_file_fails_before_training(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(SystemExit) as ei:
        main(["compare", *TINY, "--out", str(f / "sub")])
    assert ei.value.code == 2
    err = capsys.readouterr()
    assert "is a file, not a directory" in err.err and "torch threads" not in err.out


def test_run_study_api_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        run_study({"widht": 8}, progress=False)


def test_train_cli(capsys):
    rc = main(["train", "--pde", "poisson1d", "--width", "8", "--depth", "2", "--adam-steps",
               "20", "--lbfgs-steps", "5", "--no-progress"])
    assert rc == 0
    assert "L2 error" in capsys.readouterr().out


def test_compare_report_only(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["compare", *TINY, "--methods", "dense,svd", "--out", str(out)]) == 0
    (out / "report.md").unlink()
    assert main(["compare", "--report-only", "--no-plots", "--out", str(out)]) == 0
    assert "| svd | 0.5 |" in (out / "report.md").read_text()
    with pytest.raises(SystemExit) as ei:
        main(["compare", "--report-only", "--out", str(tmp_path / "none")])
    assert ei.value.code == 2 and "cannot read results file" in capsys.readouterr().err
