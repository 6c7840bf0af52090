"""The training loop: a first-phase optimizer (Adam by default), then L-BFGS.

One loop serves every problem of the package -- the PDE problems of
:mod:`pinn.problems` and the operator-learning problems of :mod:`pinn.studies.operator`
-- and every study. It is deterministic per seed (on CPU, same thread count) and
detects non-finite losses.

Training-problem protocol
-------------------------
``train`` accepts a :class:`pinn.problems.Problem`, its name, or any object with

* ``losses(model, batch) -> dict[str, scalar tensor]`` (unweighted loss terms),
* ``defaults`` (dict with ``adam_steps, lbfgs_steps, lr, n_collocation, n_boundary``),
* ``make_batch(n_collocation, n_boundary, sampler, seed, dtype)`` (only used when no
  ``batch`` is given),
* ``l2_error(model) -> float`` (the error recorded every ``eval_every`` steps),
* optionally ``parameters()`` (trainable coefficients of an inverse problem; optimised
  together with the model's parameters) and ``name``.

Callback protocol
-----------------
A callback is an object with any of the optional methods below, or a plain callable
(then used as ``on_step_end``). Each receives the :class:`TrainState`:

``on_train_begin(state)``
    once, before the first step;
``after_backward(state)``
    first phase only, after ``backward()`` and before ``optimizer.step()``: the gradients
    are in ``.grad`` (e.g. gradient probes of :class:`pinn.DynamicHCompression`);
``on_step_end(state)``
    after every first-phase step, and after every chunk of L-BFGS iterations
    (``state.step`` then advanced by the iterations done);
``on_train_end(state)``
    once, after the last step (also after ``state.stop``).

A callback may

* replace ``state.optimizer`` (first phase; e.g. when parameters change);
  the learning-rate schedule is then re-created for the new optimizer and advanced to
  the current step,
* edit the parameter lists of ``state.optimizer.param_groups`` in place (structural
  changes of :class:`pinn.HMatrixLinear` layers);
* assign ``state.batch`` -- the loop uses the new batch from the next step on (an
  L-BFGS chunk keeps the batch it started with). This is how resampling and
  **stochastic batches** work: a callback that draws a new batch in ``on_step_end``
  (and the first one in ``on_train_begin``) is a batch provider; the operator study's
  random sources are one;
* set ``state.stop = True`` to end training after the current step (either phase;
  L-BFGS is then skipped).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .layers import MLP, block_rank_penalty
from .models import make_model
from .problems import Problem, get_problem

__all__ = ["train", "make_model", "NonFiniteLossError", "TrainState", "evaluate_losses",
           "OPTIMIZERS", "LBFGS_DEFAULTS", "resolve_device"]

#: first-phase optimizers by name
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop}

#: L-BFGS settings (``max_iter`` = iterations per chunk; callbacks and evaluation run
#: between chunks); override any of them with ``train(..., lbfgs={...})``
LBFGS_DEFAULTS = dict(lr=1.0, max_iter=50, max_eval=None, history_size=50,
                      line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)


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
    """What callbacks see (see the module docstring for what they may change).

    Attributes
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        The current optimizer (first phase: the one built from ``optimizer=``; then
        L-BFGS). A callback may replace it in the first phase.
    problem : object
    history : dict of lists
    step : int
        Global step (first-phase steps plus L-BFGS iterations done).
    phase : {"adam", "lbfgs"}
        ``"adam"`` is the first phase whatever its optimizer.
    losses : dict of str -> scalar tensor
        Loss terms of the last evaluation.
    batch : object
        The current training batch; assign a new one to resample.
    stop : bool
        Set True to end training after the current step.
    params : list of torch.nn.Parameter
        The parameters being optimised (model's, then the problem's), as at the start of
        the phase (L-BFGS is built on the parameters the model has when it starts).
    device : torch.device
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    problem: object
    history: dict
    step: int = 0
    phase: str = "adam"
    losses: dict = field(default_factory=dict)
    batch: object = None
    stop: bool = False
    params: list = field(default_factory=list)
    device: torch.device = None


def resolve_device(device):
    """``torch.device(device)`` for ``"cpu"`` or ``"cuda[:k]"`` (ValueError otherwise, or when
    CUDA is asked for but torch sees no CUDA device)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {device!r}") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return dev


def _check_finite(losses, step, phase):
    for name, v in losses.items():
        if not torch.isfinite(v).all():
            raise NonFiniteLossError(step, phase, name, float(v.detach()))


def evaluate_losses(model, problem, batch, weights=None, rank_penalty=0.0):
    """Loss terms (dict of scalar tensors) and their weighted sum.

    Raises
    ------
    ValueError
        When ``weights`` names a term the problem does not have.
    """
    terms = problem.losses(model, batch)
    weights = weights or {}
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ValueError(f"loss_weights has unknown term(s) {unknown}; the problem's loss terms "
                         f"are {sorted(terms)}")
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


def _to_device(obj, device):
    """``obj`` (tensor, or dict / tuple / list of them) with every tensor on ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _count(name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _resolve_problem(problem):
    if isinstance(problem, Problem) or isinstance(problem, str):
        return get_problem(problem)
    missing = [a for a in ("losses", "defaults", "l2_error") if not hasattr(problem, a)]
    if missing:
        raise TypeError(f"problem must be a Problem, a PDE name, or an object with losses(), "
                        f"defaults and l2_error() (missing {missing}); got "
                        f"{type(problem).__name__}")
    return problem


def _parameters(model, problem):
    """The model's parameters, then the problem's (``problem.parameters()`` if it has one)."""
    params = list(model.parameters())
    seen = {id(p) for p in params}
    for p in getattr(problem, "parameters", lambda: ())():
        if id(p) not in seen:
            params.append(p)
            seen.add(id(p))
    return params


def _make_optimizer(optimizer, params, lr):
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer callable must return a torch.optim.Optimizer, got "
                            f"{type(opt).__name__}")
        return opt
    key = str(optimizer).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or a callable "
                         f"params -> Optimizer, got {optimizer!r}")
    return OPTIMIZERS[key](params, lr=lr)


def _lbfgs_settings(lbfgs, eval_every):
    cfg = dict(LBFGS_DEFAULTS)
    cfg["max_iter"] = max(1, min(int(eval_every or 50), 50))
    if lbfgs is not None:
        if not isinstance(lbfgs, dict):
            raise TypeError(f"lbfgs must be a dict of L-BFGS settings, got {type(lbfgs).__name__}")
        unknown = sorted(set(lbfgs) - set(LBFGS_DEFAULTS))
        if unknown:
            raise ValueError(f"lbfgs has unknown setting(s) {unknown}; known: "
                             f"{sorted(LBFGS_DEFAULTS)}")
        cfg.update(lbfgs)
    cfg["max_iter"] = _count("lbfgs['max_iter']", cfg["max_iter"], 1)
    if cfg["max_eval"] is None:
        cfg["max_eval"] = 25 * cfg["max_iter"]
    return cfg


def _l2(model, problem, device, grid_cache):
    """``problem.l2_error(model)``; for a model off the CPU the problem's test grid is
    evaluated on the model's device (the problem's own method evaluates on the CPU)."""
    if device.type == "cpu" or not hasattr(problem, "test_grid"):
        return float(problem.l2_error(model))
    if "grid" not in grid_cache:
        grid_cache["grid"] = problem.test_grid()
    x, u = grid_cache["grid"]
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        pred = model(torch.as_tensor(x, dtype=dtype, device=device)).reshape(-1)
    pred = pred.double().cpu().numpy()
    return float(np.linalg.norm(pred - u) / np.linalg.norm(u))


def train(model, problem, *, adam_steps=None, lr=None, lbfgs_steps=None, n_collocation=None,
          n_boundary=None, seed=0, callbacks=(), progress=True, eval_every=100,
          sampler="sobol", loss_weights=None, rank_penalty=0.0, optimizer="adam",
          lr_schedule=None, lbfgs=None, device=None, batch=None):
    """Train ``model`` on ``problem``: ``adam_steps`` of the first-phase optimizer (Adam by
    default), then ``lbfgs_steps`` of L-BFGS.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (N, d) to (N, 1); its parameter dtype (float32 or float64) is used.
    problem : Problem, str, or an object of the training-problem protocol (module doc)
    adam_steps, lbfgs_steps : int >= 0, optional
        Defaults from ``problem.defaults``. ``adam_steps`` counts first-phase steps
        whatever the optimizer.
    lr : float > 0, optional
        Learning rate of a named first-phase optimizer (default ``problem.defaults["lr"]``).
    n_collocation, n_boundary : int >= 1, optional
        Number of collocation / condition points (sampled once, from ``seed``).
    seed : int
        Seeds the point sampling and torch's RNG: the run is deterministic for a
        given seed (on CPU, same thread count).
    callbacks : sequence
        See the callback protocol in the module docstring.
    progress : bool
        Show a tqdm progress bar.
    eval_every : int >= 0
        ``problem.l2_error(model)`` every this many steps (0: only at the end).
    sampler : {"sobol", "uniform", "grid"}
    loss_weights : dict, optional
        Weight per loss term (default 1); a key that is not a loss term of the problem
        raises ValueError.
    rank_penalty : float
        Coefficient ``lambda`` of :func:`pinn.block_rank_penalty`.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"} or callable
        First-phase optimizer: a name (built with ``lr``) or ``params -> Optimizer``.
    lr_schedule : callable, optional
        ``optimizer -> torch.optim.lr_scheduler.LRScheduler``, stepped once after every
        first-phase step.
    lbfgs : dict, optional
        L-BFGS settings overriding :data:`LBFGS_DEFAULTS` (``lr``, ``max_iter`` per
        chunk -- default ``min(eval_every, 50)`` --, ``max_eval``, ``history_size``,
        ``line_search_fn``, ``tolerance_grad``, ``tolerance_change``).
    device : torch.device or str, optional
        Default: the device of the model's first parameter. The batch and every tensor
        the loop makes live there.
    batch : object, optional
        The training batch (passed to ``problem.losses``); default
        ``problem.make_batch(n_collocation, n_boundary, sampler, seed, dtype)``. A
        callback may replace it (``state.batch``).

    Returns
    -------
    dict
        ``step, phase, loss, <term>...`` per step (lists), ``l2_step``, ``l2``
        (lists), ``time`` (training seconds, cumulative, evaluation excluded),
        ``final_l2``, ``train_time`` (evaluation excluded), ``steps`` (done),
        ``stopped`` (True when a callback set ``state.stop``).

    Raises
    ------
    NonFiniteLossError
        When any loss term is NaN/inf (names the step, phase and term).
    ValueError
        Bad counts, ``lr``, optimizer name, L-BFGS setting or ``loss_weights`` key.
    """
    problem = _resolve_problem(problem)
    d = problem.defaults
    adam_steps = _count("adam_steps", d["adam_steps"] if adam_steps is None else adam_steps, 0)
    lbfgs_steps = _count("lbfgs_steps", d["lbfgs_steps"] if lbfgs_steps is None else lbfgs_steps,
                         0)
    lr = d["lr"] if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and
                                                                          math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    lr = float(lr)
    eval_every = _count("eval_every", eval_every or 0, 0)
    if loss_weights is not None and not isinstance(loss_weights, dict):
        raise TypeError(f"loss_weights must be a dict, got {type(loss_weights).__name__}")
    lb_cfg = _lbfgs_settings(lbfgs, eval_every)
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError("lr_schedule must be a callable optimizer -> LRScheduler")
    params = _parameters(model, problem)
    if not params:
        raise ValueError("model has no parameters")
    device = params[0].device if device is None else torch.device(device)
    dtype = params[0].dtype
    torch.manual_seed(int(seed))
    if batch is None:
        n_collocation = _count("n_collocation", d["n_collocation"] if n_collocation is None
                               else n_collocation, 1)
        n_boundary = _count("n_boundary", d["n_boundary"] if n_boundary is None else n_boundary,
                            1)
        batch = problem.make_batch(n_collocation, n_boundary, sampler, int(seed), dtype)
    batch = _to_device(batch, device)
    hist = {"step": [], "phase": [], "loss": [], "time": [], "l2_step": [], "l2": []}
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=adam_steps + lbfgs_steps,
                       desc=f"train {getattr(problem, 'name', type(problem).__name__)}",
                       leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    grid_cache = {}
    clock = {"t0": time.perf_counter(), "eval": 0.0}

    def now():
        return time.perf_counter() - clock["t0"] - clock["eval"]

    def record(terms, total, phase, step):
        hist["step"].append(step)
        hist["phase"].append(phase)
        hist["loss"].append(float(total.detach()))
        for k, v in terms.items():
            hist.setdefault(k, []).append(float(v.detach()))
        hist["time"].append(now())

    def evaluate(step, force=False):
        if not (force or (eval_every and step % eval_every == 0)):
            return
        if hist["l2_step"] and hist["l2_step"][-1] == step:
            return
        t = time.perf_counter()
        hist["l2_step"].append(step)
        hist["l2"].append(_l2(model, problem, device, grid_cache))
        clock["eval"] += time.perf_counter() - t

    opt = _make_optimizer(optimizer, params, lr)
    sched = None if lr_schedule is None else lr_schedule(opt)
    state = TrainState(model, opt, problem, hist, batch=batch, params=params, device=device)
    _call(callbacks, "on_train_begin", state)
    step = 0
    for _ in range(adam_steps):
        if state.stop:
            break
        if state.optimizer is not opt:  # replaced by a callback
            opt = state.optimizer
            if lr_schedule is not None:
                sched = lr_schedule(opt)
                for _k in range(step):
                    sched.step()
        cur = state.batch
        opt.zero_grad(set_to_none=True)
        total, terms = evaluate_losses(model, problem, cur, loss_weights, rank_penalty)
        _check_finite(terms, step, "adam")
        total.backward()
        state.step, state.phase, state.losses = step, "adam", terms
        _call(callbacks, "after_backward", state)
        state.optimizer.step()
        if sched is not None:
            sched.step()
        record(terms, total.detach(), "adam", step)
        step += 1
        state.step = step
        _call(callbacks, "on_step_end", state)
        if state.batch is not cur:
            state.batch = _to_device(state.batch, device)
        evaluate(step)
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{float(total.detach()):.3e}")
    if lbfgs_steps and not state.stop:
        # the parameters now: a callback may have replaced parameter objects in the first
        # phase (structural changes of H-layers)
        params = _parameters(model, problem)
        state.params = params
        lb = torch.optim.LBFGS(params, **lb_cfg)
        state.optimizer = lb
        state.phase = "lbfgs"
        last = {}
        chunk = lb_cfg["max_iter"]

        def closure():
            lb.zero_grad(set_to_none=True)
            total, terms = evaluate_losses(model, problem, last["batch"], loss_weights,
                                           rank_penalty)
            _check_finite(terms, step, "lbfgs")
            total.backward()
            last["terms"] = {k: v.detach() for k, v in terms.items()}
            last["total"] = total.detach()
            return total

        done = 0
        while done < lbfgs_steps and not state.stop:
            want = min(chunk, lbfgs_steps - done)
            lb.param_groups[0]["max_iter"] = want
            last["batch"] = state.batch
            n_before = lb.state[params[0]].get("n_iter", 0)
            lb.step(closure)
            n_iter = lb.state[params[0]].get("n_iter", 0) - n_before
            done += n_iter
            step += n_iter
            # loss terms of the last evaluation (the accepted point of the last line search)
            record(last["terms"], last["total"], "lbfgs", step)
            state.step, state.phase, state.losses = step, "lbfgs", last["terms"]
            _call(callbacks, "on_step_end", state)
            if state.batch is not last["batch"]:
                state.batch = _to_device(state.batch, device)
            if eval_every:
                evaluate(step, force=True)
            if bar is not None:
                bar.update(n_iter)
                bar.set_postfix(loss=f"{float(last['total']):.3e}")
            if n_iter < want:  # converged (tolerances met)
                break
    if bar is not None:
        bar.close()
    hist["train_time"] = now()
    hist["steps"] = int(step)
    hist["stopped"] = bool(state.stop)
    _call(callbacks, "on_train_end", state)
    evaluate(step, force=True)
    hist["final_l2"] = hist["l2"][-1]
    return hist
