"""The one byte rule and the one registry of methods (pinn.compress), used by both studies."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pinn
from pinn.compress import (REGISTRY, MaskedLinear, compress, effective_dense, layer_bytes,
                           model_bytes, nnz_for_bytes, rank_for_bytes, sparse_bytes)
from pinn.studies import operator as op_study
from pinn.studies.pinn_compare import STUDY_METHODS, TRAINED
from pinn.train import make_model


def test_registry_covers_both_studies():
    assert set(REGISTRY["pinn"]) == set(STUDY_METHODS)
    assert set(REGISTRY["operator"]) == set(op_study.METHODS)
    for study in REGISTRY.values():
        for m in study.values():
            assert m.kind in ("reference", "posthoc", "finetune", "scratch", "dynamic",
                              "control", "oracle")
            if m.kind == "finetune":
                assert m.base in study and study[m.base].kind == "posthoc"
    # every PINN post-hoc method is built by compress()
    for m in REGISTRY["pinn"].values():
        if m.kind == "posthoc":
            assert m.compress_name is not None
    assert set(TRAINED) == {"dense", "hmatrix+finetune", "hmatrix-dynamic", "svd+finetune",
                            "prune+finetune", "lowrank-scratch"}


@pytest.fixture(scope="module")
def net():
    return make_model("poisson2d", 16, 3, seed=0)  # two hidden 16 x 16 layers


def test_byte_rule_per_format(net):
    m = n = 16
    assert model_bytes(net) == 2 * 4 * m * n
    for name, per_layer in (("quantize-int8", m * n + 4 * m), ("quantize-int4", m * n // 2 + 4 * m),
                            ("fp16", 2 * m * n), ("bf16", 2 * m * n)):
        cm, info = compress(net, name)
        assert model_bytes(cm) == info["bytes"] == 2 * per_layer, name
    cm, _ = compress(net, "svd", rank=3)
    assert model_bytes(cm) == 2 * 4 * 3 * (m + n)
    cm, _ = compress(net, "prune", budget=0.5)
    nnz = [int(l.weight_mask.count_nonzero()) for _, l in pinn.hidden_layers(cm)]
    assert model_bytes(cm) == sum(sparse_bytes(m, n, k, 4) for k in nnz) <= 0.5 * 2 * 4 * m * n
    # float64 parameters count 8 bytes a value
    assert model_bytes(make_model("poisson2d", 16, 3, seed=0, dtype=torch.float64)) == 2 * 8 * m * n


def test_byte_rule_operator_networks():
    for n, bytes_ in ((10, math.ceil(100 / 8) + 8 * 3),  # bitmask beats CSR (12 * 3 + 44)
                      (100, 12 * 3 + 4 * 101)):  # CSR beats the bitmask (1250 + 24)
        lin = torch.nn.Linear(n, n, dtype=torch.float64)
        mask = torch.zeros(n, n, dtype=torch.bool)
        mask[0, :3] = True
        ml = MaskedLinear(lin.weight.detach(), mask)
        assert layer_bytes(ml) == bytes_
    net = op_study.OperatorNet(ml)
    assert layer_bytes(net) == model_bytes(net) == layer_bytes(ml)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 80), n=st.integers(1, 80), es=st.sampled_from([2, 4, 8]),
       nbytes=st.integers(0, 60_000))
def test_budget_inverses_are_maximal(m, n, es, nbytes):
    """Law: the largest rank / nnz within a budget fits it and one more does not."""
    k = rank_for_bytes(m, n, es, nbytes)
    assert 0 <= k <= min(m, n) and es * k * (m + n) <= nbytes
    assert k == min(m, n) or es * (k + 1) * (m + n) > nbytes
    z = nnz_for_bytes(m, n, es, nbytes)
    assert 0 <= z <= m * n
    assert z == 0 and sparse_bytes(m, n, 0, es) > nbytes or sparse_bytes(m, n, z, es) <= nbytes
    assert z == m * n or sparse_bytes(m, n, z + 1, es) > nbytes
    assert sparse_bytes(m, n, z, es) <= es * m * n


@pytest.mark.parametrize("method, kw", [("hmatrix", dict(tol=0.3, leaf_size=4)),
                                        ("svd", dict(rank=4)), ("prune", dict(budget=0.4)),
                                        ("quantize-int4", {}), ("bf16", {})])
def test_effective_dense_is_the_same_function(net, method, kw):
    cm, _ = compress(net, method, **kw)
    x = torch.rand(7, 2, generator=torch.Generator().manual_seed(1))
    y = cm(x)
    ed = effective_dense(cm)
    assert all(type(l) is torch.nn.Linear for l in ed.layers)
    torch.testing.assert_close(ed(x), y, rtol=1e-5, atol=1e-6 * float(y.abs().max()))
