"""Issue 14 items 4, 5, 6, 10 and determinism, through the public API (pinn.train with the
built-in callbacks of pinn.callbacks)."""
import io
import math
import os

import numpy as np
import pytest
import torch

import pinn
from pinn import callbacks as cb

PI = math.pi


def _poisson(n_collocation=32, **kw):
    """-u'' = pi^2 sin(pi x) on [-1, 1], u(+-1) = 0: u = sin(pi x)."""
    return pinn.define_problem(
        lambda x, u, du, d2u: -d2u[:, 0, 0] - PI**2 * torch.sin(PI * x[:, 0]),
        pinn.Interval(-1.0, 1.0), [pinn.DirichletBC(0.0)],
        reference=lambda x: np.sin(np.pi * x[:, 0]), n_collocation=n_collocation,
        n_boundary=2, **kw)


class _Spy:
    """Records what each step's state holds (after the other callbacks)."""

    def __init__(self):
        self.lr, self.n_pde, self.batches = [], [], []

    def on_step_end(self, state):
        self.lr.append(state.optimizer.param_groups[0]["lr"])
        self.n_pde.append(len(state.batch["pde"]))
        self.batches.append(state.batch["pde"].detach().clone())


# ------------------------------------------------------------------ item 4: optimizers
def test_optimizer_and_lr_schedule():
    prob = _poisson()
    m = pinn.make_model(prob, 8, 2, seed=0)
    spy = _Spy()
    h = pinn.train(m, prob, adam_steps=6, lbfgs_steps=0, lr=0.01, optimizer="sgd",
                   lr_schedule=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.5),
                   callbacks=[spy], progress=False)
    assert spy.lr == [0.01 * 0.5**k for k in range(1, 7)]
    assert len(h["loss"]) == 6


def test_lbfgs_settings():
    prob = _poisson()
    m = pinn.make_model(prob, 8, 2, seed=0)
    h = pinn.train(m, prob, adam_steps=0, lbfgs_steps=12, progress=False,
                   lbfgs={"history_size": 3, "max_iter": 4})
    steps = h["step"]
    assert all(b - a <= 4 for a, b in zip([0] + steps, steps)) and steps[-1] <= 12
    with pytest.raises(ValueError, match="unknown setting"):
        pinn.train(m, prob, adam_steps=0, lbfgs_steps=2, lbfgs={"histroy_size": 3},
                   progress=False)


# ------------------------------------------------------------------ item 5: resampling
def test_uniform_resampling_replaces_the_points():
    prob = _poisson()
    prob.set_points(anchors=[[0.5], [-0.5]])
    m = pinn.make_model(prob, 8, 2, seed=0)
    spy = _Spy()
    res = cb.Resampler(every=3, method="uniform", seed=4)
    pinn.train(m, prob, adam_steps=7, lbfgs_steps=0, callbacks=[res, spy], progress=False,
               n_collocation=32)
    assert spy.n_pde == [34] * 7  # 32 sampled + 2 anchors, every time
    b = spy.batches
    assert torch.equal(b[0], b[1]) and not torch.equal(b[1], b[2])  # new points at step 3
    assert torch.equal(b[2], b[4]) and not torch.equal(b[4], b[5])  # and at step 6
    for x in b:
        assert float(x.min()) >= -1 and float(x.max()) <= 1
        assert x[-2:].tolist() == [[0.5], [-0.5]]  # the anchors stay
    assert res.history == [(3, 34), (6, 34)]


def test_rar_adds_the_points_of_largest_residual():
    prob = _poisson()
    m = pinn.make_model(prob, 8, 2, seed=0, dtype=torch.float64)
    spy = _Spy()

    class Cands:  # the residual at the resampler's candidates, right before it runs
        def on_step_end(self, state):
            if state.step % 4 == 0:
                x = torch.as_tensor(prob.sample_collocation(50, "uniform", 7 + 1000003 * (
                    state.step // 4)), dtype=torch.float64)
                r = prob.residual(state.model, x).detach().abs()
                self.expect = x[torch.argsort(r, descending=True)[:5]]

    cands = Cands()
    res = cb.Resampler(every=4, method="rar", n_candidates=50, n_add=5, seed=7)
    pinn.train(m, prob, adam_steps=9, lbfgs_steps=0, callbacks=[cands, res, spy],
               progress=False)
    assert spy.n_pde == [32, 32, 32, 37, 37, 37, 37, 42, 42]
    added = spy.batches[-1][37:]
    assert sorted(added[:, 0].tolist()) == sorted(cands.expect[:, 0].tolist())
    assert torch.equal(spy.batches[-1][:37], spy.batches[3])  # earlier points kept


def test_resampler_bad_input():
    with pytest.raises(ValueError, match="method"):
        cb.Resampler(method="adaptive")
    with pytest.raises(ValueError, match="n_add"):
        cb.Resampler(method="rar", n_candidates=5, n_add=10)
    with pytest.raises(ValueError, match="every"):
        cb.Resampler(every=0)


# ------------------------------------------------------------------ item 6: callbacks
def test_early_stopping_ends_training_after_patience():
    prob = _poisson()
    m = pinn.make_model(prob, 8, 2, seed=0)
    # a 50 % improvement per step is never reached: stop `patience` steps after the first
    es = cb.EarlyStopping(monitor="loss", patience=5, min_delta=0.5)
    h = pinn.train(m, prob, adam_steps=100, lbfgs_steps=50, callbacks=[es], progress=False)
    assert h["stopped"] is True and es.stopped_step == 6
    assert len(h["loss"]) == 6 and set(h["phase"]) == {"adam"}  # L-BFGS skipped
    es = cb.EarlyStopping(monitor="pde", patience=1000, baseline=1e30)
    h = pinn.train(m, prob, adam_steps=100, lbfgs_steps=0, callbacks=[es], progress=False)
    assert len(h["loss"]) == 1
    es = cb.EarlyStopping(monitor="lose")
    with pytest.raises(ValueError, match="monitor 'lose' is not in the history"):
        pinn.train(m, prob, adam_steps=3, lbfgs_steps=0, callbacks=[es], progress=False)
    with pytest.raises(ValueError, match="min_delta"):
        cb.EarlyStopping(min_delta=1.5)


def test_log_line_has_terms_parameters_and_test_error(capsys):
    prob = pinn.define_problem(
        lambda x, u, du, d2u, c: -d2u[:, 0, 0] - c * PI**2 * torch.sin(PI * x[:, 0]),
        pinn.Interval(-1.0, 1.0), [pinn.DirichletBC(0.0)],
        reference=lambda x: np.sin(np.pi * x[:, 0]),
        parameters={"c": 0.5}, n_collocation=16, n_boundary=2)
    m = pinn.make_model(prob, 8, 2, seed=0)
    out = io.StringIO()
    log = cb.LogLine(every=5, file=out)
    h = pinn.train(m, prob, adam_steps=10, lbfgs_steps=0, callbacks=[log], progress=False,
                   eval_every=5)
    lines = out.getvalue().splitlines()
    assert lines == log.lines and len(lines) == 2
    assert lines[1].split()[:3] == ["step", "10", "adam"]
    for word in ("loss", "pde", "bc", "c", "l2"):
        assert word in lines[1].split()
    assert f"{h['l2'][-1]:.3e}" in lines[1]
    out = io.StringIO()
    log = cb.LogLine(every=4, file=out)
    pinn.train(m, prob, adam_steps=10, lbfgs_steps=0, callbacks=[log], progress=False)
    steps = [int(s.split()[1]) for s in out.getvalue().splitlines()]
    assert steps == [4, 8, 10]  # and the final step
    log = cb.LogLine(every=5)  # default: stdout, above the progress bar
    pinn.train(m, prob, adam_steps=5, lbfgs_steps=0, callbacks=[log], progress=True)
    assert capsys.readouterr().out.splitlines() == log.lines and len(log.lines) == 1


def test_checkpoint_saves_atomically_and_loads(tmp_path):
    prob = _poisson()
    m = pinn.make_model(prob, 8, 2, seed=0)
    path = tmp_path / "ckpt.pt"
    ck = cb.Checkpoint(path, every=4, config={"run": 1})
    seen = []

    class Check:  # the file is complete at every step where it exists
        def on_step_end(self, state):
            if path.exists():
                seen.append(pinn.load(path, problem=prob)[2]["step"])

    pinn.train(m, prob, adam_steps=10, lbfgs_steps=0, callbacks=[ck, Check()], progress=False)
    assert ck.saved_steps == [4, 8, 10]
    assert seen == [4] * 4 + [8] * 3  # steps 4..7, 8..10
    model, _, info = pinn.load(path, problem=prob)
    assert info["step"] == 10 and info["config"] == {"run": 1}
    assert len(info["history"]["loss"]) == 10 and info["optimizer_state"] is not None
    x = np.linspace(-1, 1, 9)[:, None]
    np.testing.assert_array_equal(pinn.predict(model, x), pinn.predict(m, x))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary files left


# ------------------------------------------------------------------ item 7: restart
def test_restart_continues_exactly(tmp_path):
    """N steps, save (weights + Adam state), load, N more == 2N steps in one go."""
    prob = _poisson()
    ref = pinn.make_model(prob, 8, 2, seed=0)
    h_ref = pinn.train(ref, prob, adam_steps=20, lbfgs_steps=0, progress=False)
    m = pinn.make_model(prob, 8, 2, seed=0)
    pinn.train(m, prob, adam_steps=10, lbfgs_steps=0, progress=False,
               callbacks=[cb.Checkpoint(tmp_path / "c.pt", every=10)])
    m2, prob2, info = pinn.load(tmp_path / "c.pt", problem=prob)
    h2 = pinn.train(m2, prob2, adam_steps=10, lbfgs_steps=0, progress=False,
                    callbacks=[cb.RestoreOptimizer(info["optimizer_state"])])
    assert h2["loss"] == h_ref["loss"][10:]
    for a, b in zip(ref.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not fit this optimizer"):
        pinn.train(pinn.make_model(prob, 9, 2), prob, adam_steps=1, lbfgs_steps=0,
                   progress=False, callbacks=[cb.RestoreOptimizer(info["optimizer_state"])])


# ------------------------------------------------------------------ item 10: inverse
def test_inverse_problem_learns_the_coefficient():
    """-u'' = c pi^2 sin(pi x) with unknown c (true 1), from 15 observations of sin(pi x)."""
    xd = np.linspace(-1, 1, 15)[:, None]
    prob = pinn.define_problem(
        lambda x, u, du, d2u, c: -d2u[:, 0, 0] - c * PI**2 * torch.sin(PI * x[:, 0]),
        pinn.Interval(-1, 1), [pinn.DirichletBC(0.0), pinn.PointSetBC(xd, np.sin(PI * xd))],
        reference=lambda x: np.sin(np.pi * x[:, 0]), parameters={"c": 0.5},
        n_collocation=64, n_boundary=2)
    (c,) = prob.parameters()
    assert isinstance(c, torch.nn.Parameter) and float(c) == 0.5
    assert [k for k, _ in prob.named_parameters()] == ["c"]
    m = pinn.make_model(prob, 16, 2, seed=0, dtype=torch.float64)
    h = pinn.train(m, prob, adam_steps=300, lbfgs_steps=200, progress=False)
    assert "data" in h
    assert abs(float(c.detach()) - 1.0) < 1e-3  # measured 0.99995 (seed 0, one thread)
    assert h["final_l2"] < 1e-3


def test_burgers_inverse_parameter_is_trained():
    prob = pinn.problems.Burgers1D(nu_init=0.05, n_initial=20).observe(30, seed=1)
    assert pinn.problems.Burgers1D().parameters() == []
    (nu,) = prob.parameters()
    m = pinn.make_model(prob, 8, 2, seed=0)
    seen = {}
    pinn.train(m, prob, adam_steps=5, lbfgs_steps=0, n_collocation=32, n_boundary=10,
               progress=False, callbacks=[lambda s: seen.setdefault("ids", {id(p) for p in
                                                                            s.params})])
    assert id(nu) in seen["ids"] and float(nu.detach()) != 0.05
    assert prob.nu == 0.01 / np.pi  # the reference keeps the true viscosity


# ------------------------------------------------------------------ determinism
def test_deterministic_for_seed_and_threads():
    runs = []
    for _ in range(2):
        prob = _poisson()
        m = pinn.make_model(prob, [8, 6], seed=3, initializer="glorot_uniform")
        res = cb.Resampler(every=5, method="rar", n_candidates=40, n_add=3, seed=1)
        h = pinn.train(m, prob, adam_steps=12, lbfgs_steps=8, seed=3, callbacks=[res],
                       progress=False, eval_every=4)
        runs.append((h["loss"], h["l2"], [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2]):
        assert torch.equal(a, b)
    prob = _poisson()
    m = pinn.make_model(prob, [8, 6], seed=4, initializer="glorot_uniform")
    h = pinn.train(m, prob, adam_steps=12, lbfgs_steps=0, seed=4, progress=False)
    assert h["loss"] != runs[0][0][:12]
