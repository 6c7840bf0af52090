"""GridNet (nonlinear grid-to-grid network) and the study's nonlinear / multi-seed / device paths."""
import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hmat
from pinn import GridNet, HMatrixLinear, LowRankLinear
from pinn import operator_study as S
from pinn._files import write_json_atomic, write_text_atomic
from pinn.geometric import geometric_hmatrix_linear


def _dense(n, seed):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n, n, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, n, generator=g, dtype=torch.float64) / n)
        lin.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.1)
    return lin


def _net(n=12, depth=2, channels=3, activation="tanh", seed=0):
    return GridNet([_dense(n, seed + i) for i in range(depth)], channels=channels,
                   activation=activation, generator=torch.Generator().manual_seed(seed))


def _exact_h(lin):
    """The same weight as an HMatrixLinear (certified, tol at rounding level)."""
    H = hmat.from_dense(lin.weight.detach().numpy(), tol=1e-13, leaf_size=4)
    return HMatrixLinear.from_hblock(H, bias=lin.bias.detach(), dtype=torch.float64)


def test_shapes_and_reference_formula():
    net = _net(n=10, depth=2, channels=3)
    f = torch.randn(5, 10, dtype=torch.float64)
    u = net(f)
    assert u.shape == (5, 10) and u.dtype == torch.float64
    assert net(f[0]).shape == (10,)
    torch.testing.assert_close(net(f[0]), u[0])
    # the formula of the docstring, written out
    K0, K1 = net.wide_layers
    v = f[:, None, :] * net.lift_weight[:, None] + net.lift_bias[:, None]
    v = torch.tanh(K0(v) + torch.einsum("ij,kjn->kin", net.mix[0], v) + net.mix_bias[0][:, None])
    v = K1(v) + torch.einsum("ij,kjn->kin", net.mix[1], v) + net.mix_bias[1][:, None]
    ref = torch.einsum("c,kcn->kn", net.proj_weight, v) + net.proj_bias
    torch.testing.assert_close(u, ref, rtol=1e-13, atol=1e-13)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(4, 20), depth=st.integers(1, 3), channels=st.integers(1, 4),
       act=st.sampled_from(["tanh", "gelu", "sin", "silu"]), seed=st.integers(0, 1000))
def test_replacing_wide_layers_by_equal_weights_keeps_the_function(n, depth, channels, act, seed):
    """Law: the network is a function of the wide layers' *weights*, not their format."""
    net = _net(n, depth, channels, act, seed)
    h = net.replace_wide(lambda i, lay: _exact_h(lay))
    assert all(isinstance(w, HMatrixLinear) for w in h.wide_layers)
    assert all(isinstance(w, nn.Linear) for w in net.wide_layers)  # the original is untouched
    f = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(h(f), net(f), rtol=1e-10, atol=1e-11)
    for a, b in zip(h.pointwise_parameters(), net.pointwise_parameters()):
        assert a is not b and torch.equal(a, b)


def test_gradcheck_and_gradgradcheck_through_h_layers():
    pts = np.linspace(0, 1, 16)[:, None]
    g = torch.Generator().manual_seed(1)
    lays = [geometric_hmatrix_linear(pts, pts, leaf_size=4, eta=1.0, rank=2, init="glorot",
                                     dtype=torch.float64, generator=g) for _ in range(2)]
    net = GridNet(lays, channels=2, generator=g)
    f = torch.randn(2, 16, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(net, (f,))
    assert torch.autograd.gradgradcheck(net, (f,))
    # parameters (leaf factors and pointwise) get gradients
    net(f).pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("bad, match", [
    (dict(wide_layers=[]), "at least one"),
    (dict(wide_layers=[nn.Linear(4, 5)]), "n -> n"),
    (dict(wide_layers=[nn.Linear(4, 4), nn.Linear(5, 5)]), "one n"),
    (dict(wide_layers=["x"]), "nn.Module"),
    (dict(wide_layers=[nn.Linear(4, 4)], channels=0), "channels"),
    (dict(wide_layers=[nn.Linear(4, 4)], activation="relu6"), "activation"),
])
def test_bad_arguments_are_named(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GridNet(**bad)
    net = GridNet([nn.Linear(4, 4)])
    with pytest.raises(ValueError, match="f: last dimension"):
        net(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="replacement wide layer 0"):
        net.replace_wide(lambda i, lay: nn.Linear(4, 3))


def test_study_gridnet_rows():
    cfg = dict(dim=1, n=32, net="gridnet", depth=2, channels=2, ranks=[1], adam_steps=40, leaf_size=4,
               lbfgs_steps=5, finetune_steps=3, n_test=8, time_batch=4,
               methods=["dense", "hmatrix", "hmatrix-posthoc", "svd", "prune", "lowrank",
                        "oracle-hmatrix"])
    res = S.run_study(cfg, progress=False)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"dense", "hmatrix", "hmatrix-posthoc", "svd", "prune", "lowrank"}
    es, n = 8, 32
    assert rows["dense"]["bytes"] == 2 * es * n * n and rows["dense"]["bytes_ratio"] == 1.0
    for m in ("hmatrix", "hmatrix-posthoc", "svd", "prune", "lowrank"):
        r = rows[m]
        assert r["green_error"] is None
        assert r["bytes"] <= r["budget_bytes"] * 1.05, m
        assert r["pointwise_params"] == 2 + 2 + 2 * 2 * 2 + 2 * 2 + 2 + 1  # a, beta, C, d, q, e
        assert np.isfinite(r["rel_error"])
    # training lowered the held-out error of the dense net below that of the initial net
    assert rows["dense"]["history"]["test_error"][-1] < rows["dense"]["history"]["test_error"][0]
    assert rows["hmatrix"]["leaves"] == rows["hmatrix-posthoc"]["leaves"] > 2
    assert rows["hmatrix-posthoc"]["max_rank"] == 1
    lines = S.markdown_table(res)
    assert "‖W−G‖" not in lines[0] and len(lines) == 2 + len(res["rows"])


def test_study_gridnet_exact_posthoc_h_keeps_the_function():
    """Rank 8 on leaves of size <= 8: the projection is exact, so the compressed network
    (same pointwise parameters, H wide layer) is the trained network."""
    cfg = dict(dim=1, n=16, net="gridnet", depth=1, channels=2, ranks=[8], adam_steps=30,
               lbfgs_steps=0, finetune_steps=0, n_test=4, time_batch=2, leaf_size=4,
               methods=["dense", "hmatrix-posthoc"])
    d, h = S.run_study(cfg, progress=False)["rows"]
    assert h["rel_error"] == pytest.approx(d["rel_error"], rel=1e-8)


def test_summary_over_seeds_and_cli(tmp_path):
    base = {"config": dict(S.DEFAULTS, seed=0), "problem": "P", "n": 4, "machine": {},
            "green_solve_time": 0.0}
    r0 = dict(base, rows=[dict(method="svd", rank_param=1, seed=0, bytes=10, bytes_ratio=0.5,
                               rel_error=1e-3, green_error=2e-3, train_time=None)])
    r1 = dict(base, config=dict(S.DEFAULTS, seed=1),
              rows=[dict(method="svd", rank_param=1, seed=1, bytes=10, bytes_ratio=0.5,
                         rel_error=3e-3, green_error=4e-3, train_time=None)])
    r2 = dict(base, config=dict(S.DEFAULTS, seed=2),
              rows=[dict(method="svd", rank_param=1, seed=2, bytes=10, bytes_ratio=0.5,
                         rel_error=2e-3, green_error=1e-3, train_time=None)])
    m = S.merge_seeds([r0, r1, r2])
    assert m["config"]["seeds"] == [0, 1, 2] and len(m["rows"]) == 3
    (s,) = S.summarize(m)
    assert s["seeds"] == 3
    assert (s["rel_error"], s["rel_error_min"], s["rel_error_max"]) == (2e-3, 1e-3, 3e-3)
    assert (s["green_error"], s["green_error_min"], s["green_error_max"]) == (2e-3, 1e-3, 4e-3)
    assert "train_time" not in s
    assert "2.00e-03 [1.00e-03, 3.00e-03]" in "\n".join(S.summary_table(m))
    assert "| seed |" in S.markdown_table(m)[0]
    with pytest.raises(ValueError, match="empty"):
        S.merge_seeds([])

    out = tmp_path / "cli"
    rc = S.main(["--n", "16", "--ranks", "1", "--methods", "oracle-hmatrix,oracle-svd",
                 "--seeds", "3,4", "--n-test", "4", "--time-batch", "2", "--quiet",
                 "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["seeds"] == [3, 4]
    assert [r["seed"] for r in res["rows"]] == [3, 3, 4, 4]
    assert "Over seeds:" in (out / "report.md").read_text()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown config key"):
        S.run_study(dict(n=16, widht=3), progress=False)
    with pytest.raises(ValueError, match="net must be one of"):
        S.run_study(dict(n=16, net="cnn", methods=["oracle-svd"]), progress=False)
    with pytest.raises(ValueError, match="device"):
        S.run_study(dict(n=16, device="tpu", methods=["oracle-svd"]), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            S.run_study(dict(n=16, device="cuda", methods=["oracle-svd"]), progress=False)
    with pytest.raises(ValueError, match="lr_pointwise"):
        S.train_operator(S.OperatorNet(S._dense_layer(16, torch.float64)),
                         S.EllipticOperatorProblem(1, 16), adam_steps=1, lbfgs_steps=0,
                         lr_pointwise=0.0)


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    write_text_atomic(p, "x")
    assert p.read_text() == "x"
    assert os.listdir(tmp_path) == ["r.json"]


def test_lowrank_and_masked_layers_work_on_channel_batches():
    lays = [LowRankLinear(8, 8, 2, dtype=torch.float64),
            S._pruned_from(np.eye(8), np.zeros(8), 4, torch.float64)]
    net = GridNet(lays, channels=3)
    assert net(torch.randn(2, 8, dtype=torch.float64)).shape == (2, 8)
    assert S.layer_bytes(net) == S.layer_bytes(lays[0]) + S.layer_bytes(lays[1])
    assert S.weight_params(net) == 2 * 8 * 2 + 4
    with pytest.raises(TypeError, match="no single weight"):
        S.weight_of(net)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_study_on_cuda_matches_cpu():
    cfg = dict(dim=1, n=32, ranks=[1], adam_steps=20, lbfgs_steps=0, n_test=8, time_batch=4,
               methods=["dense", "hmatrix", "oracle-hmatrix"])
    cpu = S.run_study(dict(cfg, device="cpu"), progress=False)
    gpu = S.run_study(dict(cfg, device="cuda"), progress=False)
    for a, b in zip(cpu["rows"], gpu["rows"]):
        assert b["device"].startswith("cuda")
        assert b["rel_error"] == pytest.approx(a["rel_error"], rel=1e-6)
