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
    expected = float(pinn.block_rank_penalty(m).detach())  # at the initial weights = the first record
    h = train(m, "poisson1d", adam_steps=5, lbfgs_steps=0, n_collocation=16, progress=False,
              rank_penalty=1e-3)
    assert h["rank_penalty"][0] == pytest.approx(expected, rel=1e-6)
    pde0, bc0 = h["pde"][0], h["bc"][0]
    assert h["loss"][0] == pytest.approx(pde0 + bc0 + 1e-3 * expected, rel=1e-6)


def test_training_through_hmatrix_layers():
    m = make_model("poisson1d", 16, 3, seed=0,
                   hidden_layer=lambda a, b: pinn.HMatrixLinear(a, b, leaf_size=4, rank=2))
    h = train(m, "poisson1d", adam_steps=100, lbfgs_steps=0, n_collocation=32, progress=False)
    assert h["loss"][-1] < h["loss"][0]


# ----------------------------------------------------------------------------- the contract
class Quad:
    """A training problem of the duck-typed protocol with one trainable coefficient ``c``:
    loss terms ``coef = (c - 3)^2`` and ``fit = mean((model(x) - y)^2)``."""

    name = "quad"
    defaults = dict(adam_steps=5, lbfgs_steps=0, lr=0.1, n_collocation=1, n_boundary=1)

    def __init__(self):
        self.c = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))
        self.seen = []

    def parameters(self):
        return [self.c]

    def losses(self, model, batch):
        self.seen.append(batch["id"])
        return {"coef": (self.c - 3.0) ** 2,
                "fit": (model(batch["x"]).reshape(-1) - batch["y"]).pow(2).mean()}

    def l2_error(self, model):
        return float(abs(self.c.detach() - 3.0))


def _lin():
    m = torch.nn.Linear(1, 1, dtype=torch.float64)
    with torch.no_grad():
        m.weight.fill_(0.5)
        m.bias.zero_()
    return m


def _batch(i=0):
    x = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    return {"id": i, "x": x, "y": 2.0 * x[:, 0]}


def test_problem_parameters_are_trained_with_named_sgd():
    prob = Quad()
    seen = {}

    def cb(state):
        seen["opt"] = type(state.optimizer).__name__
        seen["n_params"] = len(state.params)
        seen["device"] = state.device

    h = train(_lin(), prob, adam_steps=5, lbfgs_steps=0, optimizer="sgd", lr=0.1,
              batch=_batch(), callbacks=[cb], progress=False, eval_every=0)
    # plain gradient descent on (c - 3)^2: c_n - 3 = (c_0 - 3) (1 - 2 lr)^n
    assert float(prob.c) == pytest.approx(3.0 - 3.0 * 0.8**5, rel=1e-12)
    assert seen == {"opt": "SGD", "n_params": 3, "device": torch.device("cpu")}
    assert h["final_l2"] == pytest.approx(3.0 * 0.8**5, rel=1e-12)
    assert h["steps"] == 5 and not h["stopped"]


def test_optimizer_callable_and_lr_schedule():
    prob = Quad()
    made = []

    def make(params):
        opt = torch.optim.SGD(params, lr=0.1)
        made.append(opt)
        return opt

    # lr factor 1 for the first step, 0 after: only one step moves c
    sched = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s == 0 else 0.0)
    train(_lin(), prob, adam_steps=4, lbfgs_steps=0, optimizer=make, lr_schedule=sched,
          batch=_batch(), progress=False, eval_every=0)
    assert len(made) == 1
    assert float(prob.c) == pytest.approx(3.0 - 3.0 * 0.8, rel=1e-12)


@pytest.mark.parametrize("kw, msg", [
    (dict(optimizer="adagrad"), "optimizer must be one of"),
    (dict(lbfgs={"maxiter": 3}), "unknown setting"),
    (dict(loss_weights={"fitt": 2.0}), r"unknown term\(s\) \['fitt'\]"),
    (dict(adam_steps=-1), "adam_steps"),
    (dict(lr=float("nan")), "lr"),
])
def test_contract_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg):
        train(_lin(), Quad(), **dict(dict(batch=_batch(), progress=False), **kw))


@pytest.mark.parametrize("kw, msg", [(dict(n_collocation=0), "n_collocation"),
                                     (dict(n_boundary=-2), "n_boundary")])
def test_point_counts_are_not_silently_replaced(kw, msg):
    with pytest.raises(ValueError, match=msg):
        train(make_model("poisson1d", 4, 2), "poisson1d", adam_steps=1, progress=False, **kw)


def test_loss_weights_are_applied():
    prob = Quad()
    h = train(_lin(), prob, adam_steps=1, lbfgs_steps=0, optimizer="sgd", lr=0.1,
              batch=_batch(), loss_weights={"coef": 0.5}, progress=False, eval_every=0)
    assert h["loss"][0] == pytest.approx(0.5 * h["coef"][0] + h["fit"][0], rel=1e-12)
    assert h["coef"][0] == pytest.approx(9.0)
    # the weighted gradient: c_1 = 0 - 0.1 * 0.5 * 2 * (0 - 3)
    assert float(prob.c) == pytest.approx(0.3, rel=1e-12)


class _Swap:
    """Replaces the batch after step 2 and stops after step 4; records the hooks."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, state):
        self.calls.append("begin")

    def on_step_end(self, state):
        if state.step == 2:
            state.batch = _batch(1)
        if state.step == 4:
            state.stop = True

    def on_train_end(self, state):
        self.calls.append(("end", state.step))


def test_batch_replacement_stop_and_train_end():
    prob, cb = Quad(), _Swap()
    h = train(_lin(), prob, adam_steps=10, lbfgs_steps=20, batch=_batch(0), callbacks=[cb],
              progress=False, eval_every=0)
    assert prob.seen == [0, 0, 1, 1]  # the new batch from the next step on; no L-BFGS
    assert h["steps"] == 4 and h["stopped"] and h["phase"] == ["adam"] * 4
    assert cb.calls == ["begin", ("end", 4)]


def test_lbfgs_settings_and_chunks():
    steps, hist = [], {}

    def cb(state):
        if state.phase == "lbfgs":
            steps.append(state.step)
            hist.update(state.optimizer.param_groups[0])

    m = make_model("poisson1d", 8, 2, seed=0)
    h = train(m, "poisson1d", adam_steps=3, lbfgs_steps=20, n_collocation=16, seed=0,
              lbfgs={"max_iter": 7, "history_size": 5, "tolerance_grad": 0.0,
                     "tolerance_change": 0.0}, callbacks=[cb], progress=False, eval_every=0)
    assert hist["history_size"] == 5 and hist["max_iter"] == 20 - 14
    assert steps == [3 + 7, 3 + 14, 3 + 20]
    assert h["steps"] == 23 and h["phase"][-1] == "lbfgs"


class _Reparam:
    """Replaces the model's weight by a new Parameter object after step 2 (as structural
    changes of H-layers do) and puts it into the optimizer."""

    def on_step_end(self, state):
        if state.phase == "adam" and state.step == 2:
            old = state.model.weight
            new = torch.nn.Parameter(old.detach().clone())
            state.model.weight = new
            for g in state.optimizer.param_groups:
                g["params"] = [new if p is old else p for p in g["params"]]
            state.optimizer.state.pop(old, None)
            self.at_swap = new.detach().clone()


def test_lbfgs_optimises_the_parameters_the_model_has_after_the_first_phase():
    """Regression: L-BFGS was built on the parameter list of the start of training, so after a
    structural change it optimised orphaned tensors and left the model's weight unchanged."""
    cb = _Reparam()
    m = _lin()
    h = train(m, Quad(), adam_steps=3, lbfgs_steps=10, lr=1e-3, batch=_batch(), callbacks=[cb],
              progress=False, eval_every=0)
    assert h["phase"][-1] == "lbfgs"
    # the fit term 0.5 x vs 2 x: L-BFGS drives the weight to 2 (the bias to 0)
    assert float(m.weight) == pytest.approx(2.0, abs=1e-6)
    assert abs(float(cb.at_swap) - 2.0) > 1.0
