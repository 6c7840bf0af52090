"""Training loop: Adam then L-BFGS, deterministic per seed, with NaN detection."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .layers import MLP, block_rank_penalty
from .models import make_model
from .problems import get_problem

__all__ = ["train", "make_model", "NonFiniteLossError", "TrainState", "evaluate_losses"]


class NonFiniteLossError(FloatingPointError, ValueError):
    """A loss term became NaN or infinite during training.

    Attributes
    ----------
    step : int
    phase : str
    term : str
    value : float
    """

    def __init__(self, step, phase, term, value):
        self.step, self.phase, self.term, self.value = step, phase, term, value
        super().__init__(f"non-finite loss at step {step} ({phase}): term {term!r} = {value}")


@dataclass
class TrainState:
    """What callbacks see: the model, optimizer, step (global), phase, last loss terms."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    problem: object
    history: dict
    step: int = 0
    phase: str = "adam"
    losses: dict = field(default_factory=dict)


def _check_finite(losses, step, phase):
    for name, v in losses.items():
        if not torch.isfinite(v).all():
            raise NonFiniteLossError(step, phase, name, float(v.detach()))


def evaluate_losses(model, problem, batch, weights=None, rank_penalty=0.0):
    """Loss terms (dict of scalar tensors) and their weighted sum."""
    terms = problem.losses(model, batch)
    weights = weights or {}
    total = sum(weights.get(k, 1.0) * v for k, v in terms.items())
    if rank_penalty:
        terms["rank_penalty"] = block_rank_penalty(model)
        total = total + rank_penalty * terms["rank_penalty"]
    return total, terms


def _call(cbs, name, state):
    for cb in cbs:
        fn = getattr(cb, name, None)
        if fn is None and callable(cb) and name == "on_step_end":
            fn = cb
        if fn is not None:
            fn(state)


def train(model, problem, *, adam_steps=None, lr=None, lbfgs_steps=None, n_collocation=None,
          n_boundary=None, seed=0, callbacks=(), progress=True, eval_every=100,
          sampler="sobol", loss_weights=None, rank_penalty=0.0):
    """Train ``model`` on ``problem``: ``adam_steps`` of Adam, then ``lbfgs_steps`` of L-BFGS.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (N, d) to (N, 1); its parameter dtype (float32 or float64) is used.
    problem : Problem or str
    adam_steps, lbfgs_steps : int, optional
        Defaults from ``problem.defaults``.
    lr : float, optional
        Adam learning rate (default ``problem.defaults["lr"]``).
    n_collocation, n_boundary : int, optional
        Number of collocation / condition points (sampled once, from ``seed``).
    seed : int
        Seeds the point sampling and torch's RNG: the run is deterministic for a
        given seed (on CPU, same thread count).
    callbacks : sequence
        Objects with optional methods ``on_train_begin(state)``,
        ``after_backward(state)`` (Adam phase only; gradients are in ``.grad``),
        ``on_step_end(state)``; a plain callable is used as ``on_step_end``.
    progress : bool
        Show a tqdm progress bar.
    eval_every : int
        Relative L2 error against the reference every this many steps.
    sampler : {"sobol", "uniform", "grid"}
    loss_weights : dict, optional
        Weight per loss term (default 1).
    rank_penalty : float
        Coefficient ``lambda`` of :func:`pinn.block_rank_penalty`.

    Returns
    -------
    dict
        ``step, phase, loss, <term>...`` per step (lists), ``l2_step``, ``l2``
        (lists), ``time`` (seconds per step, cumulative), ``final_l2``,
        ``train_time``.

    Raises
    ------
    NonFiniteLossError
        When any loss term is NaN/inf (names the step, phase and term).
    """
    problem = get_problem(problem)
    d = problem.defaults
    adam_steps = d["adam_steps"] if adam_steps is None else int(adam_steps)
    lbfgs_steps = d["lbfgs_steps"] if lbfgs_steps is None else int(lbfgs_steps)
    lr = d["lr"] if lr is None else float(lr)
    n_collocation = n_collocation or d["n_collocation"]
    n_boundary = n_boundary or d["n_boundary"]
    if adam_steps < 0 or lbfgs_steps < 0:
        raise ValueError("adam_steps and lbfgs_steps must be >= 0")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    torch.manual_seed(int(seed))
    dtype = next(model.parameters()).dtype
    batch = problem.make_batch(int(n_collocation), int(n_boundary), sampler, int(seed), dtype)
    hist = {"step": [], "phase": [], "loss": [], "time": [], "l2_step": [], "l2": []}
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=adam_steps + lbfgs_steps, desc=f"train {problem.name}", leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    t0 = time.perf_counter()
    step = 0

    def record(terms, total, phase):
        hist["step"].append(step)
        hist["phase"].append(phase)
        hist["loss"].append(float(total.detach()))
        for k, v in terms.items():
            hist.setdefault(k, []).append(float(v.detach()))
        hist["time"].append(time.perf_counter() - t0)

    def maybe_eval(force=False):
        if eval_every and (step % eval_every == 0 or force):
            if not hist["l2_step"] or hist["l2_step"][-1] != step:
                hist["l2_step"].append(step)
                hist["l2"].append(problem.l2_error(model))

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state = TrainState(model, opt, problem, hist)
    _call(callbacks, "on_train_begin", state)
    for _ in range(adam_steps):
        opt = state.optimizer
        opt.zero_grad(set_to_none=True)
        total, terms = evaluate_losses(model, problem, batch, loss_weights, rank_penalty)
        _check_finite(terms, step, "adam")
        total.backward()
        state.step, state.phase, state.losses = step, "adam", terms
        _call(callbacks, "after_backward", state)
        state.optimizer.step()
        record(terms, total.detach(), "adam")
        step += 1
        state.step = step
        _call(callbacks, "on_step_end", state)
        maybe_eval()
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{float(total.detach()):.3e}")
    if lbfgs_steps:
        chunk = max(1, min(int(eval_every or 50), 50))
        lb = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=chunk, max_eval=25 * chunk,
                               history_size=50, line_search_fn="strong_wolfe",
                               tolerance_grad=1e-12, tolerance_change=1e-15)
        state.optimizer = lb
        last = {}

        def closure():
            lb.zero_grad(set_to_none=True)
            total, terms = evaluate_losses(model, problem, batch, loss_weights, rank_penalty)
            _check_finite(terms, step, "lbfgs")
            total.backward()
            last["terms"] = {k: v.detach() for k, v in terms.items()}
            last["total"] = total.detach()
            return total

        done = 0
        while done < lbfgs_steps:
            lb.param_groups[0]["max_iter"] = min(chunk, lbfgs_steps - done)
            st = lb.state[lb._params[0]]
            n_before = st.get("n_iter", 0)
            lb.step(closure)
            n_iter = lb.state[lb._params[0]].get("n_iter", 0) - n_before
            done += n_iter
            step += n_iter
            # loss terms of the last evaluation (the accepted point of the last line search)
            record(last["terms"], last["total"], "lbfgs")
            state.step, state.phase, state.losses = step, "lbfgs", last["terms"]
            _call(callbacks, "on_step_end", state)
            if eval_every:
                hist["l2_step"].append(step)
                hist["l2"].append(problem.l2_error(model))
            if bar is not None:
                bar.update(n_iter)
                bar.set_postfix(loss=f"{float(last['total']):.3e}")
            if n_iter < lb.param_groups[0]["max_iter"]:  # converged (tolerances met)
                break
    if bar is not None:
        bar.close()
    hist["train_time"] = time.perf_counter() - t0
    maybe_eval(force=True)
    hist["final_l2"] = hist["l2"][-1] if hist["l2"] else problem.l2_error(model)
    return hist
