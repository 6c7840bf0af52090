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
