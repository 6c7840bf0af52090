"""Resuming the PINN study PDE by PDE: settings and code provenance per PDE, --restart-pde,
appending seeds, files of the older one-config format."""
import json

import pytest

import pinn.studies.pinn_compare as pc
from pinn.report import write_pinn_report

CFG = dict(pdes=["poisson1d", "heat1d"], width=8, depth=3, budgets=[0.5], seeds=[0],
           methods=["dense", "svd"], adam_steps=20, lbfgs_steps=3, finetune_steps=3,
           finetune_lbfgs_steps=2, n_collocation=16, n_boundary=4, leaf_size=4,
           ntk_boundary=2, ntk_residual=4)


def _run(out, cfg=CFG, **kw):
    return pc.run_study(dict(cfg), out=str(out), progress=False, plots=False, **kw)


def _by_pde(res, name):
    return [r for r in res["records"] if r["pde"] == name]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, _run(out)


def _copy(first, tmp_path):
    out, _ = first
    (tmp_path / "results.json").write_text((out / "results.json").read_text())
    return json.loads((tmp_path / "results.json").read_text())


def test_provenance_is_recorded_per_pde(first):
    _, res = first
    assert set(res["pde_runs"]) == {"poisson1d", "heat1d"}
    for run in res["pde_runs"].values():
        assert run["code"]["hash"] == pc.code_hash()
    full = dict(pc.DEFAULT_CONFIG, **CFG)
    assert res["pde_runs"]["heat1d"]["settings"] == pc.pde_settings(full, "heat1d")
    assert res["pde_runs"]["heat1d"]["settings"]["n_collocation"] == 16
    assert "seeds" not in res["pde_runs"]["heat1d"]["settings"]


def test_changed_settings_of_one_pde_refused_then_that_pde_rerun(first, tmp_path):
    old = _copy(first, tmp_path)
    cfg = dict(CFG, per_pde={"heat1d": {"adam_steps": 25}})
    with pytest.raises(ValueError, match=r"heat1d.*adam_steps.*--restart-pde heat1d"):
        _run(tmp_path, cfg, resume=True)
    res = _run(tmp_path, cfg, resume=True, restart=["heat1d"])
    assert _by_pde(res, "poisson1d") == _by_pde(old, "poisson1d")  # kept, not recomputed
    heat = _by_pde(res, "heat1d")
    assert heat and all(r["steps"] == 25 + 3 for r in heat if r["method"] == "dense")
    assert res["pde_runs"]["heat1d"]["settings"]["adam_steps"] == 25
    assert res["pde_runs"]["poisson1d"]["settings"]["adam_steps"] == 20
    assert sorted(res["units"]) == ["config:heat1d:0", "config:poisson1d:0"]


def test_complete_pdes_of_other_code_are_kept_incomplete_ones_refused(first, tmp_path,
                                                                       monkeypatch):
    old = _copy(first, tmp_path)
    h0 = old["code"]["hash"]
    monkeypatch.setattr(pc, "code_hash", lambda: "0123456789abcdef")
    old["lr"]["poisson1d"]["dense"] = 0.5  # what an older version ran with is kept
    (tmp_path / "results.json").write_text(json.dumps(old))
    res = _run(tmp_path, resume=True)  # both PDEs complete: nothing runs
    assert res["records"] == old["records"]
    assert res["lr"]["poisson1d"]["dense"] == 0.5
    assert {r["code"]["hash"] for r in res["pde_runs"].values()} == {h0}
    assert res["code"]["hash"] == "0123456789abcdef"
    more = dict(CFG, per_pde={"heat1d": {"seeds": [0, 1]}})
    with pytest.raises(ValueError, match=r"PDE heat1d .* not complete .* another version"):
        _run(tmp_path, more, resume=True)
    # restarted, heat1d runs with this code; the report names the code of each PDE
    res2 = _run(tmp_path, more, resume=True, restart=["heat1d"])
    assert res2["pde_runs"]["heat1d"]["code"]["hash"] == "0123456789abcdef"
    assert res2["pde_runs"]["poisson1d"]["code"]["hash"] == h0
    assert _by_pde(res2, "poisson1d") == _by_pde(old, "poisson1d")
    assert res2["lr"]["poisson1d"]["dense"] == 0.5  # not recomputed by this code
    assert res2["lr"]["heat1d"]["dense"] == CFG.get("lr", pc.DEFAULT_CONFIG["lr"])
    assert sorted(r["seed"] for r in _by_pde(res2, "heat1d")) == [0, 0, 1, 1]
    text = (tmp_path / "report.md").read_text()
    assert f"poisson1d: code hash `{h0}`" in text and "heat1d: code hash `0123456789abcdef`" in text


def test_seeds_are_appended_by_the_same_code(first, tmp_path):
    old = _copy(first, tmp_path)
    res = _run(tmp_path, dict(CFG, seeds=[0, 1]), resume=True)
    assert _by_pde(res, "poisson1d")[:len(_by_pde(old, "poisson1d"))] == _by_pde(old, "poisson1d")
    assert sorted({r["seed"] for r in res["records"]}) == [0, 1]
    assert sorted(res["units"]) == ["config:heat1d:0", "config:heat1d:1", "config:poisson1d:0",
                                    "config:poisson1d:1"]


def test_file_of_the_one_config_format_resumes(first, tmp_path):
    old = _copy(first, tmp_path)
    del old["pde_runs"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    res = _run(tmp_path, resume=True)
    assert res["records"] == old["records"]
    assert set(res["pde_runs"]) == {"poisson1d", "heat1d"}
    with pytest.raises(ValueError, match="adam_steps"):
        _run(tmp_path, dict(CFG, adam_steps=21), resume=True)


@pytest.mark.parametrize("cfg, kw, msg", [
    (dict(CFG, pdes=["poisson1d"]), dict(resume=True), r"holds PDE\(s\) \['heat1d'\]"),
    (CFG, dict(resume=True, restart=["burgers1d"]), "--restart-pde 'burgers1d' is not a PDE"),
    (CFG, dict(restart=["heat1d"]), "use it with resume"),
])
def test_bad_resume_requests_are_refused_by_name(first, tmp_path, cfg, kw, msg):
    old = _copy(first, tmp_path)
    with pytest.raises(ValueError, match=msg):
        _run(tmp_path, cfg, **kw)
    assert json.loads((tmp_path / "results.json").read_text()) == old  # nothing written


def test_report_without_differing_code_has_no_per_pde_lines(first, tmp_path):
    _, res = first
    (path,) = write_pinn_report(res, str(tmp_path), plots=False)
    assert "Code per PDE" not in open(path, encoding="utf-8").read()
