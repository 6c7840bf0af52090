"""Built-in training callbacks for :func:`pinn.train`.

Each implements hooks of the callback protocol of :mod:`pinn.train`
(``on_train_begin``, ``on_step_end``, ``on_train_end``, each receiving the
``TrainState``):

* :class:`LogLine` -- a periodic line with the step, phase, total and per-term losses and
  the test error;
* :class:`Checkpoint` -- atomic :func:`pinn.save` every ``every`` steps and at the end;
* :class:`EarlyStopping` -- ends training (``state.stop``) when a monitored quantity stops
  improving;
* :class:`Resampler` -- new collocation points every ``every`` steps: uniform
  resampling or residual-based adaptive refinement (RAR) by replacing ``state.batch``;
* :class:`RestoreOptimizer` -- restart: loads a saved optimizer state at the start.

Steps: the L-BFGS phase reports once per chunk of iterations, so "every ``k`` steps"
means "when the step count has passed a new multiple of ``k``".
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

__all__ = ["LogLine", "Checkpoint", "EarlyStopping", "Resampler", "RestoreOptimizer"]


def _every(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


class _Periodic:
    """Fires when ``state.step`` passes a new multiple of ``every``."""

    def __init__(self, every):
        self.every = _every("every", every)
        self._last = 0

    def on_train_begin(self, state):
        self._last = state.step // self.every

    def _due(self, state):
        k = state.step // self.every
        if k > self._last:
            self._last = k
            return True
        return False


class LogLine(_Periodic):
    """Print ``step  phase  loss  <term> ...  l2 ...`` every ``every`` steps and at the end.

    Parameters
    ----------
    every : int
    file : file-like, optional
        Default ``sys.stdout`` (at call time).
    test_error : bool
        Include the relative L2 test error (the last evaluated one if current, else
        computed; ``nan`` when the problem has no reference).
    """

    def __init__(self, every=100, file=None, test_error=True):
        super().__init__(every)
        self.file, self.test_error = file, bool(test_error)
        self.lines = []

    def line(self, state):
        """The log line for ``state`` (str)."""
        h = state.history
        parts = [f"step {state.step:6d}", f"{state.phase:5s}"]
        if h.get("loss"):
            parts.append(f"loss {h['loss'][-1]:.3e}")
        for k, v in state.losses.items():
            parts.append(f"{k} {float(v.detach()):.3e}")
        for p_name, p in getattr(state.problem, "named_parameters", lambda: [])():
            parts.append(f"{p_name} {float(p.detach()):.5g}")
        if self.test_error:
            if h.get("l2_step") and h["l2_step"][-1] == state.step:
                l2 = h["l2"][-1]
            else:
                l2 = state.problem.l2_error(state.model)
            parts.append(f"l2 {l2:.3e}")
        return "  ".join(parts)

    def _emit(self, state):
        s = self.line(state)
        self.lines.append(s)
        self._logged_step = state.step
        if self.file is None:
            try:  # above an active progress bar instead of through it
                from tqdm.auto import tqdm

                tqdm.write(s, file=sys.stdout)
                return
            except ImportError:  # pragma: no cover
                pass
        print(s, file=self.file or sys.stdout, flush=True)

    def on_step_end(self, state):
        if self._due(state):
            self._emit(state)

    def on_train_end(self, state):
        """A last line for the final step (unless it was just logged)."""
        if state.history.get("loss") and getattr(self, "_logged_step", None) != state.step:
            self._emit(state)


class Checkpoint(_Periodic):
    """Save model, problem, history and optimizer state atomically (:func:`pinn.save`).

    Parameters
    ----------
    path : str or path-like
        Overwritten at each save (atomic ``os.replace``: a crash leaves the previous one).
    every : int
    save_optimizer : bool
        Store the optimizer state (restart with :class:`RestoreOptimizer`).
    config : dict, optional
        Stored with the model.
    """

    def __init__(self, path, every=1000, save_optimizer=True, config=None):
        super().__init__(every)
        self.path, self.save_optimizer, self.config = path, bool(save_optimizer), config
        self.saved_steps = []

    def save(self, state):
        from .io import save

        save(self.path, state.model, state.problem, config=self.config,
             history={k: v for k, v in state.history.items() if isinstance(v, list)},
             optimizer=state.optimizer if self.save_optimizer else None, step=state.step)
        self.saved_steps.append(state.step)

    def on_step_end(self, state):
        if self._due(state):
            self.save(state)

    def on_train_end(self, state):
        if not self.saved_steps or self.saved_steps[-1] != state.step:
            self.save(state)


class EarlyStopping:
    """Stop training when ``monitor`` has not improved by ``min_delta`` for ``patience``
    steps (sets ``state.stop``).

    Parameters
    ----------
    monitor : str
        A history key: ``"loss"`` (total), a loss term (``"pde"``, ``"bc"``, ...) or
        ``"l2"`` (the test error, updated every ``eval_every`` steps).
    patience : int
        Steps without improvement before stopping.
    min_delta : float >= 0
        Relative improvement required: ``new < best * (1 - min_delta)``.
    baseline : float, optional
        Stop as soon as the monitored value is below it.

    Attributes
    ----------
    stopped_step : int or None
    best : float
    """

    def __init__(self, monitor="loss", patience=500, min_delta=0.0, baseline=None):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a history key, got {monitor!r}")
        self.monitor = monitor
        self.patience = _every("patience", patience)
        if not (isinstance(min_delta, (int, float)) and 0 <= min_delta < 1):
            raise ValueError(f"min_delta must be in [0, 1), got {min_delta!r}")
        self.min_delta = float(min_delta)
        self.baseline = None if baseline is None else float(baseline)
        self.best, self.best_step, self.stopped_step = math.inf, 0, None

    def on_train_begin(self, state):
        self.best, self.best_step, self.stopped_step = math.inf, state.step, None

    def on_step_end(self, state):
        vals = state.history.get(self.monitor)
        if vals is None:
            raise ValueError(f"monitor {self.monitor!r} is not in the history; one of "
                             f"{sorted(k for k, v in state.history.items() if isinstance(v, list))}")
        if not vals:
            return
        v = float(vals[-1])
        if v < self.best * (1.0 - self.min_delta):
            self.best, self.best_step = v, state.step
        if (self.baseline is not None and v < self.baseline) or \
                state.step - self.best_step >= self.patience:
            self.stopped_step = state.step
            state.stop = True


class Resampler(_Periodic):
    """New collocation points every ``every`` steps (replaces ``state.batch``).

    Parameters
    ----------
    every : int
    method : {"uniform", "rar"}
        ``"uniform"``: a fresh set of as many collocation points (random, ``seed``-
        determined), plus the problem's anchors. ``"rar"`` (residual-based adaptive
        refinement, Lu et al. 2021): evaluate ``|residual|`` at ``n_candidates`` random
        points and *add* the ``n_add`` largest to the collocation points.
    n_candidates, n_add : int
        For ``"rar"``.
    seed : int
        Seeds the candidate points (resampling ``k`` uses ``seed + k``).
    phases : sequence of str
        Phases in which to resample (default the first-phase optimizer only: L-BFGS
        assumes a fixed objective).

    Attributes
    ----------
    history : list of (step, n_points)
    """

    def __init__(self, every=1000, method="uniform", n_candidates=10000, n_add=10, seed=0,
                 phases=("adam",)):
        super().__init__(every)
        if method not in ("uniform", "rar"):
            raise ValueError(f"method must be 'uniform' or 'rar', got {method!r}")
        self.method = method
        self.n_candidates = _every("n_candidates", n_candidates)
        self.n_add = _every("n_add", n_add)
        if self.n_add > self.n_candidates:
            raise ValueError(f"n_add ({n_add}) must be <= n_candidates ({n_candidates})")
        self.seed, self.phases = int(seed), tuple(phases)
        self.history = []
        self._count = 0

    def on_train_begin(self, state):
        super().on_train_begin(state)
        if not hasattr(state, "batch"):
            raise RuntimeError("Resampler needs a pinn.train whose TrainState has a "
                               "replaceable batch (state.batch)")

    def _candidates(self, problem, n, old):
        x = problem.sample_collocation(n, "uniform", self.seed + 1000003 * self._count)
        return torch.as_tensor(x, dtype=old.dtype, device=old.device)

    def on_step_end(self, state):
        if not self._due(state) or state.phase not in self.phases:
            return
        self._count += 1
        problem, old = state.problem, state.batch["pde"]
        if self.method == "uniform":
            anchors = problem.anchors
            n = len(old) - (0 if anchors is None else len(anchors))
            new = self._candidates(problem, n, old)
            if anchors is not None:
                new = torch.cat([new, torch.as_tensor(anchors, dtype=old.dtype,
                                                      device=old.device)])
        else:
            cand = self._candidates(problem, self.n_candidates, old)
            with torch.enable_grad():
                r = problem.residual(state.model, cand).detach().abs()
            idx = torch.topk(r, self.n_add).indices
            new = torch.cat([old, cand[idx]])
        batch = dict(state.batch)
        batch["pde"] = new
        state.batch = batch
        self.history.append((state.step, len(new)))


class RestoreOptimizer:
    """Load a saved optimizer state at the start of training (restart).

    Parameters
    ----------
    state_dict : dict
        ``info["optimizer_state"]`` from :func:`pinn.load` (saved with ``optimizer=``).
    """

    def __init__(self, state_dict):
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be an optimizer state dict, got "
                            f"{type(state_dict).__name__}")
        self.state_dict = state_dict

    def on_train_begin(self, state):
        sd = self.state_dict
        try:
            cur = [p for g in state.optimizer.param_groups for p in g["params"]]
            ids = [i for g in sd["param_groups"] for i in g["params"]]
            if len(cur) != len(ids):
                raise ValueError(f"{len(ids)} saved parameters, {len(cur)} now")
            for p, i in zip(cur, ids):  # per-parameter state must have the parameter's shape
                for k, v in sd["state"].get(i, {}).items():
                    if torch.is_tensor(v) and v.ndim > 0 and v.shape != p.shape:
                        raise ValueError(f"state {k!r} has shape {tuple(v.shape)}, the "
                                         f"parameter {tuple(p.shape)}")
            state.optimizer.load_state_dict(sd)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"state_dict does not fit this optimizer ({e}); it must come "
                             f"from the same model, problem and optimizer") from None
