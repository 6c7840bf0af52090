"""Save and load a trained PINN: network weights, its problem, the training config and
history, optionally the optimizer state for restarting training.

The file is written by ``torch.save`` of a dict holding only tensors, numbers, strings and
a JSON string (no pickled objects), read back with ``torch.load(weights_only=True)``. The
write is atomic (serialised and read back in memory, then :func:`hmat.io.write_atomic`:
temporary file in the target directory and ``os.replace``),
so a reader never sees a half-written file and nothing is saved that cannot be loaded.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import torch

from ._files import write_bytes_atomic
from .models import model_config, model_from_config
from .problems import get_problem
from .problems.base import Problem

__all__ = ["save", "load", "FORMAT", "VERSION"]

FORMAT = "pinn-model"
VERSION = 1


def _problem_record(problem):
    """JSON part and tensor part describing ``problem``."""
    arrays = {}
    try:
        cfg = problem.config()
        cfg = {"builtin": True, **cfg}
    except TypeError:
        cfg = {"builtin": False, "name": problem.name, "repr": repr(problem)}
    if cfg["builtin"]:
        for key in ("anchors", "collocation_points"):
            v = getattr(problem, key, None)
            if v is not None:
                arrays[key] = torch.as_tensor(np.asarray(v, np.float64))
        cfg["condition_points"] = sorted(problem.condition_points or {})
        for k, v in (problem.condition_points or {}).items():
            arrays[f"cond.{k}"] = torch.as_tensor(np.asarray(v, np.float64))
        obs = []
        for c in problem.observations:
            obs.append(c.name)
            arrays[f"obs.{c.name}.x"] = torch.as_tensor(c.x)
            arrays[f"obs.{c.name}.y"] = torch.as_tensor(c.target)
        cfg["observations"] = obs
    params = {k: p.detach().cpu().clone() for k, p in problem.named_parameters()}
    return cfg, arrays, params


def _write_atomic(path, payload):
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    try:  # what cannot be loaded is not saved
        back = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"path: the model would not load back from {os.fspath(path)!r} "
                         f"({type(e).__name__}: {e}); nothing written") from None
    _checked(back, path)
    write_bytes_atomic(path, data)


def save(path, model, problem, *, config=None, history=None, optimizer=None, step=None):
    """Save a trained model with its problem (and optionally config, history, optimizer).

    Parameters
    ----------
    path : str or path-like
        Target file (conventionally ``.pt``); its directory must exist.
    model : pinn.MLP
        A network of ``nn.Linear`` layers (compressed models: save the dense one); its
        output transform must be a built-in one (:data:`pinn.models.TRANSFORMS`).
    problem : Problem or str
        A built-in problem is stored by name and arguments (plus user-given points and
        observations); a problem from :func:`pinn.define_problem` holds user functions,
        so only its name and trainable parameters are stored and :func:`load` needs it
        again (``problem=``).
    config : dict, optional
        JSON-serialisable training settings (stored verbatim).
    history : dict, optional
        The history returned by :func:`pinn.train` (lists of numbers/strings).
    optimizer : torch.optim.Optimizer, optional
        Its ``state_dict`` is stored for restarting training
        (:class:`pinn.callbacks.RestoreOptimizer`).
    step : int, optional
        Training step reached.

    Raises
    ------
    TypeError
        The model or its output transform cannot be rebuilt from the file.
    ValueError
        ``config``/``history`` not JSON-serialisable, missing directory.
    """
    problem = get_problem(problem)
    mcfg = model_config(model)
    pcfg, arrays, params = _problem_record(problem)
    meta = {"model": mcfg, "problem": pcfg, "config": config, "history": history,
            "step": None if step is None else int(step)}
    try:
        meta_json = json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config/history must be JSON-serialisable: {e}") from None
    payload = {"format": FORMAT, "version": VERSION, "meta": meta_json,
               "model_state": {k: v.detach().cpu().clone() for k, v in
                               model.state_dict().items()},
               "problem_params": params, "problem_arrays": arrays}
    if optimizer is not None:
        payload["optimizer_state"] = optimizer.state_dict()
    _write_atomic(path, payload)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _read(path, map_location):
    try:
        d = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"path: no such file {os.fspath(path)!r}") from None
    except Exception as e:  # corrupted or foreign file
        raise ValueError(f"path: {os.fspath(path)!r} is not a readable pinn model file "
                         f"({type(e).__name__}: {e})") from None
    return _checked(d, path)


def _checked(d, path):
    """``d`` (a loaded file) with its JSON header decoded, or ValueError naming ``path``."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"path: {os.fspath(path)!r} is not a pinn model file")
    if d.get("version") != VERSION:
        raise ValueError(f"path: unsupported pinn model file version {d.get('version')!r}")
    try:
        d["meta"] = json.loads(d["meta"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"path: {os.fspath(path)!r} has a corrupted header") from None
    return d


def load(path, problem=None, *, map_location="cpu"):
    """Load a model saved by :func:`save`.

    Parameters
    ----------
    path : str or path-like
    problem : Problem, optional
        Required when the file holds a user-defined problem (it is returned with its
        trainable parameters set to the saved values); for a built-in problem it
        overrides the stored one.
    map_location : str or torch.device
        Device of the loaded tensors (the model is moved there).

    Returns
    -------
    model : pinn.MLP
    problem : Problem
    info : dict
        ``config``, ``history``, ``step`` and ``optimizer_state`` (``None`` when absent).

    Raises
    ------
    ValueError
        Missing, foreign or corrupted file; a user-defined problem without ``problem=``;
        mismatched trainable parameters.
    """
    d = _read(path, map_location)
    meta = d["meta"]
    try:
        model = model_from_config(meta["model"])
        model.load_state_dict(d["model_state"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"path: the stored model does not match its description ({e})") \
            from None
    model = model.to(map_location)
    pcfg = meta["problem"]
    if problem is None:
        if not pcfg.get("builtin"):
            raise ValueError(f"path: the model was trained on a user-defined problem "
                             f"({pcfg.get('repr')}); pass it again: load(path, problem=...)")
        problem = get_problem(pcfg["name"], **pcfg.get("kwargs", {}))
        arrays = d.get("problem_arrays", {})
        problem.set_points(collocation=_np(arrays.get("collocation_points")),
                           anchors=_np(arrays.get("anchors")),
                           **{k: _np(arrays[f"cond.{k}"])
                              for k in pcfg.get("condition_points", [])})
        for name in pcfg.get("observations", []):
            problem.add_observations(_np(arrays[f"obs.{name}.x"]),
                                     _np(arrays[f"obs.{name}.y"]), name=name)
    elif not isinstance(problem, Problem):
        problem = get_problem(problem)
    saved = d.get("problem_params", {})
    have = dict(problem.named_parameters())
    if set(saved) != set(have):
        raise ValueError(f"problem: trainable parameters {sorted(have)} do not match the "
                         f"saved {sorted(saved)}")
    with torch.no_grad():
        for k, v in saved.items():
            have[k].copy_(v)
    info = {"config": meta.get("config"), "history": meta.get("history"),
            "step": meta.get("step"), "optimizer_state": d.get("optimizer_state")}
    return model, problem, info


def _np(t):
    return None if t is None else t.detach().cpu().numpy()
