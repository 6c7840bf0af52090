"""Issue 12: checkpoints written before the Partition refactor still load, and training gives
the same loss curves (references from tests/pinn/data/make_refactor_reference.py, run at
commit db4977d with the code before the refactor)."""
import importlib.util
import json
import os

import pytest
import torch

from pinn import HMatrixLinear

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
D = torch.float64


def _maker():
    spec = importlib.util.spec_from_file_location(
        "make_refactor_reference", os.path.join(DATA, "make_refactor_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ref():
    with open(os.path.join(DATA, "training_reference_v1.json")) as fh:
        return json.load(fh)


@pytest.fixture
def one_thread():
    """The references were recorded with one thread (reduction order)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _close(a, b, rtol=1e-12):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert abs(u - v) <= rtol * abs(v), (i, u, v)


@pytest.mark.parametrize("name", ["hodlr", "geometric", "from_linear", "dynamic"])
def test_old_checkpoints_load(name):
    saved = torch.load(os.path.join(DATA, "hmatrixlinear_state_v1.pt"), weights_only=True)[name]
    sd, x, y = saved["state_dict"], saved["x"], saved["y"]
    # a fresh layer of the same shape and another structure takes the checkpoint's
    layer = HMatrixLinear(x.shape[1], y.shape[1], leaf_size=3, rank=1, dtype=D)
    layer.load_state_dict(sd)
    assert layer.leaf_info() == json.loads(saved["leaf_info"])
    with torch.no_grad():
        out = layer(x.to(layer.factors[0].dtype))
    scale = float(y.abs().max()) + 1.0
    assert float((out.double() - y.double()).abs().max()) <= 1e-12 * scale
    # and its state round-trips into yet another layer
    again = HMatrixLinear(x.shape[1], y.shape[1], leaf_size=5, rank=2, dtype=D)
    again.load_state_dict(layer.state_dict())
    assert again.leaf_info() == layer.leaf_info()
    with torch.no_grad():
        assert torch.equal(again(x.to(again.factors[0].dtype)), out)


def test_adam_loss_curve_unchanged(ref, one_thread):
    _close(_maker().adam_curve(), ref["adam"])


@pytest.mark.parametrize("case", [0, 1])
def test_dynamic_training_unchanged(ref, case, one_thread):
    r = ref["dynamic"][case]
    loss, log, leaves, _ = _maker().dynamic_curve(*r["case"])
    _close(loss, r["loss"])
    assert json.loads(json.dumps(log)) == r["log"]
    assert json.loads(json.dumps(leaves)) == r["leaves"]


def test_fresh_layers_unchanged():
    """Every constructor path draws (or projects) exactly the factors it drew before."""
    ref = torch.load(os.path.join(DATA, "hmatrixlinear_init_v1.pt"), weights_only=True)
    now = _maker().init_layers()
    assert sorted(now) == sorted(ref)
    for name, r in ref.items():
        got = now[name]
        assert got["leaf_info"] == r["leaf_info"], name
        assert len(got["factors"]) == len(r["factors"]), name
        for a, b in zip(got["factors"], r["factors"]):
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert (got["bias"] is None) == (r["bias"] is None)
        assert got["bias"] is None or torch.equal(got["bias"], r["bias"]), name
