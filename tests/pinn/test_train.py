import math

import numpy as np
import pytest
import torch

import pinn
from pinn.train import NonFiniteLossError, make_model, train


def test_deterministic_per_seed():
    runs = []
    for _ in range(2):
        m = make_model("poisson1d", 8, 2, seed=3)
        h = train(m, "poisson1d", adam_steps=30, lbfgs_steps=10, n_collocation=32, seed=3,
                  progress=False, eval_every=10)
        runs.append((h["loss"], h["l2"], [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2]):
        assert torch.equal(a, b)
    m = make_model("poisson1d", 8, 2, seed=4)
    h = train(m, "poisson1d", adam_steps=30, lbfgs_steps=0, n_collocation=32, seed=4,
              progress=False)
    assert h["loss"] != runs[0][0]


def test_history_contents_and_decrease():
    m = make_model("poisson1d", 16, 2, seed=0)
    h = train(m, "poisson1d", adam_steps=200, lbfgs_steps=50, n_collocation=64, seed=0,
              progress=True, eval_every=50)
    for k in ("step", "phase", "loss", "pde", "bc", "time", "l2_step", "l2"):
        assert k in h
    assert len(h["pde"]) == len(h["loss"]) == len(h["time"])
    assert h["phase"][0] == "adam" and h["phase"][-1] == "lbfgs"
    assert h["loss"][-1] < 0.1 * h["loss"][0]
    assert h["l2"][-1] < h["l2"][0]
    assert h["final_l2"] == h["l2"][-1]


class _Poison:
    """Callback that makes a weight NaN after step 5."""

    def on_step_end(self, state):
        if state.step == 5:
            with torch.no_grad():
                state.model.layers[0].weight[0, 0] = float("nan")


def test_nan_is_reported_with_step_and_term():
    m = make_model("burgers1d", 8, 2, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"step 5 \(adam\).*term 'pde'") as ei:
        train(m, "burgers1d", adam_steps=20, lbfgs_steps=0, n_collocation=16, n_boundary=8,
              callbacks=[_Poison()], progress=False)
    assert ei.value.step == 5 and ei.value.term == "pde"
    assert isinstance(ei.value, ValueError)


def test_bad_train_input():
    m = make_model("poisson1d", 8, 2)
    with pytest.raises(ValueError, match="unknown PDE"):
        train(m, "wave9d", adam_steps=1)
    with pytest.raises(ValueError, match="lr"):
        train(m, "poisson1d", adam_steps=1, lr=0.0, progress=False)


def test_rank_penalty_term():
    m = make_model("poisson1d", 16, 3, seed=0,
                   hidden_layer=lambda a, b: pinn.LowRankLinear(a, b, 4))
    h = train(m, "poisson1d", adam_steps=5, lbfgs_steps=0, n_collocation=16, progress=False,
              rank_penalty=1e-3)
    assert "rank_penalty" in h and h["rank_penalty"][0] > 0


def test_training_through_hmatrix_layers():
    m = make_model("poisson1d", 16, 3, seed=0,
                   hidden_layer=lambda a, b: pinn.HMatrixLinear(a, b, leaf_size=4, rank=2))
    h = train(m, "poisson1d", adam_steps=100, lbfgs_steps=0, n_collocation=32, progress=False)
    assert h["loss"][-1] < h["loss"][0]
