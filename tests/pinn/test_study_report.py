"""The reporting module: aggregation over seeds and the seed-spread verdicts."""
import pytest

from pinn.report import spread_verdicts, summarize


def _rec(method, seed, l2, budget=0.5):
    return {"pde": "poisson1d", "method": method, "budget": budget, "seed": seed,
            "feasible": True, "l2": l2, "bytes": 100, "fraction": 0.5}


def test_summarize_median_min_max():
    s = summarize([_rec("svd", k, v) for k, v in enumerate([3.0, 1.0, 2.0])])
    st = s[("poisson1d", "svd", 0.5)]["l2"]
    assert (st["median"], st["min"], st["max"], st["n"]) == (2.0, 1.0, 3.0, 3)


@pytest.mark.parametrize("h, svd, disjoint, better", [
    ([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], True, "hmatrix"),   # ranges do not overlap
    ([1.0, 1.5, 2.05], [2.0, 2.1, 2.2], False, "hmatrix"),  # overlap: within the spread
    ([3.0, 3.1, 3.2], [2.0, 2.1, 2.2], True, "svd"),
    ([1.0], [2.0], None, "hmatrix"),                        # one seed: no verdict
])
def test_spread_verdicts(h, svd, disjoint, better):
    recs = [_rec("hmatrix", k, v) for k, v in enumerate(h)] + \
           [_rec("svd", k, v) for k, v in enumerate(svd)]
    (v,) = [e for e in spread_verdicts(summarize(recs), "poisson1d")
            if (e["method"], e["rival"]) == ("hmatrix", "svd")]
    assert v["disjoint"] is disjoint and v["better"] == better
    assert v["ratio"] == pytest.approx(sorted(svd)[len(svd) // 2] / sorted(h)[len(h) // 2])


def _ntk_rec(method, seed, ntk, budget=0.5):
    return dict(_rec(method, seed, 1e-3, budget), ntk={"rel_fro": ntk, "alignment": 1.0,
                                                      "top_eig_rel_err_max": 0.0})


@pytest.mark.parametrize("h, svd, disjoint, better", [
    ([0.10, 0.12, 0.14], [0.20, 0.25, 0.30], True, "hmatrix+finetune"),
    ([0.10, 0.22, 0.24], [0.20, 0.25, 0.30], False, "hmatrix+finetune"),
    ([0.50, 0.60, 0.70], [0.20, 0.25, 0.30], True, "svd+finetune"),
])
def test_spread_verdicts_ntk(h, svd, disjoint, better):
    """The NTK verdict judges the function-space NTK error, not L2 (equal for every record
    here), and leaves out pairs without an NTK error (dense)."""
    recs = [_ntk_rec("hmatrix+finetune", k, v) for k, v in enumerate(h)] + \
           [_ntk_rec("svd+finetune", k, v) for k, v in enumerate(svd)] + \
           [_rec("dense", k, 1e-3, None) for k in range(3)] + \
           [_ntk_rec("hmatrix-dynamic", k, 0.3) for k in range(3)]
    summ = summarize(recs)
    got = spread_verdicts(summ, "poisson1d", "ntk")
    assert {(e["method"], e["rival"]) for e in got} == {("hmatrix+finetune", "svd+finetune"),
                                                        ("hmatrix-dynamic", "hmatrix+finetune")}
    (v,) = [e for e in got if e["rival"] == "svd+finetune"]
    assert v["disjoint"] is disjoint and v["better"] == better
    assert v["ratio"] == pytest.approx(sorted(svd)[1] / sorted(h)[1])
    (l2,) = [e for e in spread_verdicts(summ, "poisson1d") if e["rival"] == "svd+finetune"]
    assert l2["disjoint"] is False and l2["ratio"] == 1.0  # equal L2 everywhere
    (d,) = [e for e in spread_verdicts(summ, "poisson1d") if e["rival"] == "dense"]
    assert d["method"] == "hmatrix-dynamic"  # the L2 verdict keeps the dense pair
    with pytest.raises(ValueError, match="metric"):
        spread_verdicts(summ, "poisson1d", "loss")
