"""Operator-learning comparison: where geometry-aware H-layers should win.

A single grid-indexed linear layer ``u = W f + c`` (``net="linear"``) or a
small nonlinear :class:`pinn.GridNet` whose wide layers are grid-indexed
(``net="gridnet"``) is trained on
:class:`pinn.problems.elliptic_operator.EllipticOperatorProblem` (PDE residual
only, random Gaussian-random-field sources, no solution data); the linear
layer's exact minimiser is the discrete Green's function ``W = A^{-1}``.
Methods compared at equal storage (the storage of the geometric H-layer of
rank ``r``, per wide layer):

``dense``               nn.Linear trained (the uncompressed reference)
``hmatrix``             geometric H-layer (strong admissibility) trained from scratch
``hmatrix-dynamic``     the same with :class:`pinn.DynamicHCompression` during Adam (tolerance
                        ``dynamic_tol``, sampling-noise discount ``dynamic_noise``, no byte
                        budget: its storage is whatever it ends at)
``hmatrix-posthoc``     dense-trained weight projected onto the H-structure
                        (Frobenius-best per block, same leaves and ranks as ``hmatrix``)
``hmatrix+finetune``    ``hmatrix-posthoc`` fine-tuned
``lowrank``             ``U V^T`` trained from scratch at the same storage
``svd``                 truncated SVD of the dense-trained weight, same storage
``svd+finetune``
``prune``               magnitude pruning of the dense-trained weight, same storage (CSR)
``prune+finetune``      fine-tuned with the mask fixed
``oracle-hmatrix``      best H-approximation of the *true* ``G`` (no training) -- what
``oracle-svd``          the format can represent at this storage (reference rows)
``oracle-prune``

Metrics: relative error on held-out sources against the sparse direct solve,
relative Frobenius error of the weight against ``G``, parameters, bytes
(values at the training dtype's size; pruning also 4-byte column indices and row
pointers), training time, forward time (torch layer, and for H the compiled
``hmat`` packed matmat), all measured in the same run.

Command line: ``python -m pinn operator --dim 1 --n 1024 --out DIR`` (also
``python -m pinn.operator_study``); ``--net gridnet``, ``--seeds 0,1,2``,
``--device cuda``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import hmat
import numpy as np
import torch
from torch import nn

from .._files import write_json_atomic, write_text_atomic
from ..geometric import geometric_block_tree, geometric_hmatrix_linear, project_to_structure
from ..gridnet import GridNet
from ..compress import MaskedLinear, layer_bytes, nnz_for_bytes, rank_for_bytes
from ..layers import HMatrixLinear, LowRankLinear
from ..report import (merge_seeds, operator_summary, operator_summary_table, operator_table,
                      write_operator_report)
from ..train import resolve_device, train
from ..problems.elliptic_operator import LOSSES, EllipticOperatorProblem

__all__ = ["main", "run_study", "train_operator", "OperatorNet", "MaskedLinear", "METHODS",
           "DEFAULTS", "weight_of", "layer_bytes", "evaluate"]

METHODS = ("dense", "hmatrix", "hmatrix-dynamic", "hmatrix-posthoc", "hmatrix+finetune",
           "lowrank", "svd", "svd+finetune", "prune", "prune+finetune",
           "oracle-hmatrix", "oracle-svd", "oracle-prune")

#: the networks: one grid-indexed linear layer, or a :class:`pinn.GridNet`
NETS = ("linear", "gridnet")

DEFAULTS = dict(dim=1, n=256, coefficient="smooth", loss="precond", ranks=[2], leaf_size=16,
                eta=1.0, adam_steps=1500, lbfgs_steps=300, finetune_steps=300, batch=64,
                lbfgs_samples=None, lr=0.05, dtype="float64", seed=0, n_test=64,
                dynamic_tol=1e-4, dynamic_every=100, dynamic_noise=2.0, methods=list(METHODS),
                time_batch=64,
                alpha=0.5, net="linear", channels=4, depth=2, activation="tanh",
                lr_pointwise=1e-2, device="cpu")


#: low-rank factors of from-scratch layers: random U with entries FACTOR_SCALE * h**(dim/2), V = 0;
#: Adam learning rate of factors: lr * FACTOR_LR * h**(dim/2)
FACTOR_SCALE = 0.5
FACTOR_LR = 2.0

# ----------------------------------------------------------------------------- model pieces
class OperatorNet(nn.Module):
    """``u = layer(f)``: a network of one grid-indexed linear layer.

    Parameters
    ----------
    layer : nn.Module
        ``nn.Linear``, :class:`pinn.HMatrixLinear`, :class:`pinn.LowRankLinear`
        or :class:`MaskedLinear` mapping ``(k, n) -> (k, n)``.
    """

    def __init__(self, layer):
        super().__init__()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module, got {type(layer).__name__}")
        self.layer = layer

    def forward(self, f):
        return self.layer(f)

    @property
    def wide_layers(self):
        """The grid-indexed layers (here: the one layer), as for :class:`pinn.GridNet`."""
        return [self.layer]

    def replace_wide(self, fn):
        """``OperatorNet(fn(0, layer))`` (the interface of :meth:`pinn.GridNet.replace_wide`)."""
        return OperatorNet(fn(0, self.layer))


def weight_of(layer):
    """Dense weight (out, in) of any supported layer, float64 numpy copy."""
    if isinstance(layer, OperatorNet):
        layer = layer.layer
    if isinstance(layer, GridNet):
        raise TypeError("a GridNet is nonlinear: it has no single weight")
    if isinstance(layer, HMatrixLinear):
        # assembled by hmat from float64 copies of the factors (no autograd graph)
        return np.asarray(layer.operator().to_dense(), dtype=np.float64)
    return layer.weight.detach().double().cpu().numpy()


def weight_params(layer):
    """Number of stored weight scalars (bias excluded; pruned zeros excluded); for a
    network the sum over its wide layers."""
    if isinstance(layer, (OperatorNet, GridNet)):
        return sum(weight_params(w) for w in layer.wide_layers)
    if isinstance(layer, HMatrixLinear):
        return int(sum(p.numel() for p in layer.factors))
    if isinstance(layer, LowRankLinear):
        return int(layer.U.numel() + layer.V.numel())
    if isinstance(layer, MaskedLinear):
        return layer.nnz
    return int(layer.weight.numel())


# ----------------------------------------------------------------------------- training
def _param_kinds(model):
    """Split parameters into entries (dense weights and leaves), low-rank factors, biases of
    the wide layers, and the other (pointwise) parameters of a :class:`pinn.GridNet`."""
    factor_ids = set()
    for mod in model.modules():
        if isinstance(mod, HMatrixLinear):
            for i, d in enumerate(mod.leaf_info()):
                if d["kind"] == "lowrank":
                    factor_ids.update(id(p) for p in mod.leaf_factors(i))
        elif isinstance(mod, LowRankLinear):
            factor_ids.update((id(mod.U), id(mod.V)))
    bias_ids = {id(mod.bias) for mod in model.modules()
                if isinstance(getattr(mod, "bias", None), torch.Tensor)}
    other_ids = {id(p) for mod in model.modules() if isinstance(mod, GridNet)
                 for p in mod.pointwise_parameters()}
    entry, factor, bias, other = [], [], [], []
    for p in model.parameters():
        (factor if id(p) in factor_ids else bias if id(p) in bias_ids else
         other if id(p) in other_ids else entry).append(p)
    return entry, factor, bias, other


def _regroup(optimizer, model):
    """Re-assign the model's parameters to the groups (after structural changes).

    Optimizer state is keyed by parameter, so moving a parameter between groups
    keeps its Adam moments.
    """
    for g, ps in zip(optimizer.param_groups, _param_kinds(model)):
        g["params"] = ps


class OperatorTraining:
    """An :class:`EllipticOperatorProblem` in the training-problem protocol of
    :func:`pinn.train` (the batch is a tensor of sources ``(k, n)``).

    Parameters
    ----------
    problem : EllipticOperatorProblem
    eval_sources : numpy.ndarray (k, n), optional
        Held-out sources: ``l2_error`` is their mean relative error against the direct
        solve (NaN without them).
    """

    name = "operator"

    def __init__(self, problem, eval_sources=None):
        self.problem = problem
        self.eval_sources = eval_sources
        self.defaults = dict(adam_steps=1000, lbfgs_steps=200, lr=0.05, n_collocation=1,
                             n_boundary=1)

    def losses(self, model, batch):
        return {"residual": self.problem.loss(model(batch), batch)}

    def l2_error(self, model):
        if self.eval_sources is None:
            return float("nan")
        return evaluate(model, self.problem, self.eval_sources)["rel_error"]


class RandomSources:
    """Batch provider (a :func:`pinn.train` callback): fresh Gaussian-random-field sources
    (``batch`` of them) for every first-phase step, then one fixed set of ``lbfgs_samples``
    sources for L-BFGS; stops the H-layers' gradient probes when the first phase ends.

    Parameters
    ----------
    problem : EllipticOperatorProblem
    batch, lbfgs_samples, adam_steps : int
    rng : numpy.random.Generator
    dtype : torch.dtype
    device : torch.device
    """

    def __init__(self, problem, batch, lbfgs_samples, adam_steps, rng, dtype, device):
        self.problem, self.batch, self.lbfgs_samples = problem, batch, lbfgs_samples
        self.adam_steps, self.rng, self.dtype, self.device = adam_steps, rng, dtype, device

    def _draw(self, k):
        return torch.as_tensor(self.problem.sample_sources(int(k), seed=self.rng),
                               dtype=self.dtype, device=self.device)

    def on_train_begin(self, state):
        state.batch = self._draw(self.batch if self.adam_steps else self.lbfgs_samples)

    def on_step_end(self, state):
        if state.phase != "adam":
            return
        if state.step < self.adam_steps:
            state.batch = self._draw(self.batch)
        else:  # the first phase is over: the L-BFGS set, and no more gradient probes
            for mod in state.model.modules():
                if isinstance(mod, HMatrixLinear):
                    mod.stop_probe()
            state.batch = self._draw(self.lbfgs_samples)


class Regroup:
    """Callback: after structural changes (:class:`pinn.DynamicHCompression`) re-assign the
    model's parameters to the optimizer's groups by kind (entries, factors, biases,
    pointwise); the optimizer state is keyed by parameter, so moments are kept."""

    def on_step_end(self, state):
        if state.phase == "adam":
            _regroup(state.optimizer, state.model)


def train_operator(model, problem, *, adam_steps=1000, lr=0.05, lbfgs_steps=200, batch=64,
                   lbfgs_samples=None, seed=0, callbacks=(), progress=False, log_every=100,
                   eval_sources=None, lr_pointwise=1e-2):
    """Train ``model`` (sources -> solutions) on the residual loss of ``problem`` with
    :func:`pinn.train` (the one training loop).

    Adam on fresh Gaussian-random-field sources every step (``batch`` of them; the
    :class:`RandomSources` batch provider), cosine-decayed to 0 (``lr_schedule``), in four
    parameter groups (``optimizer`` callable): weight entries (dense weights, dense
    leaves) with learning rate ``lr * h**dim`` -- the Green's function entries scale like
    the quadrature weight ``h**dim`` and Adam's step is per entry --, low-rank factors with
    ``lr * FACTOR_LR * h**(dim/2)`` (balanced factors of a block with entries ~ g have
    entries ~ sqrt(g)), biases with ``lr * h**dim * sqrt(n)`` (the size of ``W f`` for a
    unit random ``f``) and the pointwise parameters of a :class:`pinn.GridNet` with
    ``lr_pointwise``; then L-BFGS (strong Wolfe, no tolerances, chunks of 50) on a fixed
    set of ``lbfgs_samples`` sources (default ``2 n``, so that the weight is identifiable).

    Parameters
    ----------
    model : nn.Module
        Maps ``(k, n)`` sources to ``(k, n)`` solutions.
    problem : EllipticOperatorProblem
    adam_steps, lbfgs_steps : int >= 0
    lr : float > 0
    lr_pointwise : float > 0
    batch : int >= 1
    lbfgs_samples : int, optional
    seed : int
    callbacks : sequence
        :func:`pinn.train` callbacks (e.g. :class:`pinn.DynamicHCompression`); the
        parameter groups are re-assigned after theirs.
    progress : bool
        A tqdm bar.
    log_every : int
        Held-out error every this many steps (with ``eval_sources``).
    eval_sources : numpy.ndarray (k, n), optional

    Returns
    -------
    dict
        ``step``, ``loss`` (lists, at the evaluation steps), ``test_step``, ``test_error``,
        ``train_time`` (seconds, evaluation excluded), ``steps``.

    Notes
    -----
    Training runs on the device of the model's parameters (sources are sampled in numpy
    and moved there).
    """
    if not isinstance(problem, EllipticOperatorProblem):
        raise TypeError(f"problem must be an EllipticOperatorProblem, got {type(problem).__name__}")
    for name, v in (("adam_steps", adam_steps), ("lbfgs_steps", lbfgs_steps)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    for name, v in (("lr", lr), ("lr_pointwise", lr_pointwise)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    p0 = next(model.parameters())
    dtype, device = p0.dtype, p0.device
    rng = np.random.default_rng(seed)
    scale = problem.h ** problem.dim
    base = {"entry": lr * scale, "factor": lr * FACTOR_LR * math.sqrt(scale),
            "bias": lr * scale * math.sqrt(problem.n), "other": lr_pointwise}

    def make_optimizer(params):
        entry, factor, bias, other = _param_kinds(model)
        groups = [{"params": entry, "lr": base["entry"], "kind": "entry"},
                  {"params": factor, "lr": base["factor"], "kind": "factor"},
                  {"params": bias, "lr": base["bias"], "kind": "bias"},
                  {"params": other, "lr": base["other"], "kind": "other"}]
        if not callbacks:
            # the fused kernel: one call for all parameters (an H-layer has thousands; the
            # per-parameter Adam loop cost 3x more). Callbacks such as DynamicHCompression
            # edit the per-parameter state, so they get the default implementation.
            try:
                return torch.optim.Adam(groups, fused=True)
            except (RuntimeError, ValueError, TypeError):
                pass
        return torch.optim.Adam(groups)

    def cosine(opt):
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / max(adam_steps, 1))))

    provider = RandomSources(problem, batch, lbfgs_samples or 2 * problem.n, adam_steps, rng,
                             dtype, device)
    cbs = [provider, *callbacks] + ([Regroup()] if callbacks else [])
    h = train(model, OperatorTraining(problem, eval_sources), adam_steps=int(adam_steps),
              lbfgs_steps=int(lbfgs_steps), seed=seed, callbacks=cbs, progress=progress,
              eval_every=log_every if eval_sources is not None else 0,
              optimizer=make_optimizer, lr_schedule=cosine,
              lbfgs={"max_iter": 50, "max_eval": 25 * 50, "tolerance_grad": 0.0,
                     "tolerance_change": 0.0},
              batch=torch.zeros(0, problem.n, dtype=dtype, device=device))
    steps, losses = h["step"], h["loss"]
    hist = {"step": [], "loss": [], "test_step": [], "test_error": []}
    if eval_sources is not None:
        hist["test_step"], hist["test_error"] = list(h["l2_step"]), list(h["l2"])
    marks = hist["test_step"] or ([steps[-1]] if steps else [])
    j = 0
    for s in marks:
        while j + 1 < len(steps) and steps[j + 1] <= s:
            j += 1
        if steps:
            hist["step"].append(int(s))
            hist["loss"].append(float(losses[j]))
    hist["train_time"] = h["train_time"]
    hist["steps"] = h["steps"]
    return hist


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, problem, sources):
    """Held-out metrics: mean relative error vs the direct solve, mean relative residual,
    and the training loss evaluated on these sources."""
    p0 = next(model.parameters())
    with torch.no_grad():
        F = torch.as_tensor(sources, dtype=p0.dtype, device=p0.device)
        Ut = model(F)
        loss = float(problem.loss(Ut, F))
        U = Ut.double().cpu().numpy()
    return {"rel_error": problem.relative_error(U, sources),
            "residual": float(np.mean(problem.residual_norm(U, sources))), "test_loss": loss}


def _median_time(fn, repeat, sync=None):
    fn()
    if sync is not None:
        sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def forward_times(layer, n, batch, dtype, repeat=7):
    """Forward time (s) of a torch layer or network on ``batch`` sources, on the device of
    its parameters; for H-layers also of :class:`pinn.geometric.GroupedHForward` and of
    ``hmat``'s operator: the compiled CPU matmat, or on a CUDA device the CuPy backend
    (``hmat.backend.to_cupy``) when CuPy is installed."""
    p0 = next(layer.parameters())
    dev = p0.device
    x = torch.randn(batch, n, dtype=dtype, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    out = {"device": str(dev)}
    with torch.no_grad():
        out["forward_s"] = _median_time(lambda: layer(x), repeat, sync)
    if isinstance(layer, HMatrixLinear):
        from ..geometric import GroupedHForward

        grouped = GroupedHForward(layer)
        with torch.no_grad():
            out["forward_grouped_s"] = _median_time(lambda: grouped(x), repeat, sync)
        H = layer.operator()
        if dtype == torch.float32:
            H = H.astype(np.float32)
        X = np.ascontiguousarray(x.cpu().numpy().T)
        if dev.type == "cuda":
            from hmat import backend

            if backend.has_cupy():
                import cupy

                Hc, Xc = backend.to_cupy(H), cupy.asarray(X)
                out["forward_hmat_s"] = _median_time(
                    lambda: Hc @ Xc, repeat, cupy.cuda.get_current_stream().synchronize)
                out["forward_hmat_backend"] = "cupy"
        else:
            out["forward_hmat_s"] = _median_time(lambda: H @ X, repeat)
            out["forward_hmat_backend"] = "numba"
    return out


# ----------------------------------------------------------------------------- methods
def dense_layer(n, dtype):
    """A zero-initialised ``nn.Linear(n, n)`` of ``dtype`` (weight and bias 0)."""
    lin = nn.Linear(n, n, dtype=dtype)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    return lin




def lowrank_from(W, bias, rank, dtype):
    """:class:`pinn.LowRankLinear` of the truncated SVD of ``W`` (numpy (out, in)) at
    ``rank`` (balanced factors), with ``bias`` (numpy (out,) or None)."""
    u, s, vh = np.linalg.svd(W, full_matrices=False)
    sq = np.sqrt(s[:rank])
    n_out, n_in = W.shape
    lay = LowRankLinear(n_in, n_out, rank, bias=bias is not None, dtype=dtype)
    with torch.no_grad():
        lay.U.copy_(torch.as_tensor(u[:, :rank] * sq))
        lay.V.copy_(torch.as_tensor(vh[:rank].T * sq))
        if bias is not None:
            lay.bias.copy_(torch.as_tensor(bias))
    return lay


def pruned_from(W, bias, nnz, dtype):
    """:class:`pinn.compress.MaskedLinear` keeping the ``nnz`` largest-magnitude entries of
    ``W`` (numpy (out, in))."""
    flat = np.abs(W).ravel()
    nnz = int(max(0, min(nnz, flat.size)))
    mask = np.zeros(flat.size, bool)
    if nnz:
        mask[np.argpartition(-flat, nnz - 1)[:nnz]] = True
    mask = torch.as_tensor(mask.reshape(W.shape))
    b = None if bias is None else torch.as_tensor(bias, dtype=dtype)
    return MaskedLinear(torch.as_tensor(W, dtype=dtype), mask, b)


def structured_hmatrix(problem, rank, leaf_size, eta, dtype, W=None, bias=None, init="zeros",
                       seed=0):
    """A geometric :class:`pinn.HMatrixLinear` on the problem's grid points (strong
    admissibility ``eta``, leaves ``leaf_size``, admissible leaves of ``rank``): projected
    from ``W`` if given, else initialised by ``init`` from ``seed``."""
    pts = problem.points
    if W is not None:
        return geometric_hmatrix_linear(pts, pts, leaf_size=leaf_size, eta=eta, rank=rank, init=W,
                                        bias=bias if bias is not None else True, dtype=dtype)
    g = torch.Generator().manual_seed(int(seed))
    return geometric_hmatrix_linear(pts, pts, leaf_size=leaf_size, eta=eta, rank=rank, init=init,
                                    bias=True, dtype=dtype, generator=g,
                                    factor_scale=FACTOR_SCALE * math.sqrt(problem.h ** problem.dim))


# ----------------------------------------------------------------------------- the study
def _parse_methods(methods):
    methods = list(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    return methods


def run_study(config=None, progress=True, on_row=None):
    """Run the comparison for one seed; returns the results dict (see :func:`main`).

    ``config`` keys: see :data:`DEFAULTS`. ``net="linear"`` trains one grid-indexed
    linear layer (its exact minimiser is the Green's function); ``net="gridnet"`` a
    :class:`pinn.GridNet` with ``depth`` wide layers and ``channels`` channels, every
    method applied to each wide layer (budgets per wide layer; the ``oracle-*`` rows
    and the weight error exist only for the linear net). ``on_row(partial_results)``,
    if given, is called after every recorded row (the CLI uses it to keep a partial
    ``results.json`` on disk).
    """
    cfg = dict(DEFAULTS)
    unknown = sorted(set(config or {}) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(DEFAULTS)}")
    cfg.update(config or {})
    methods = _parse_methods(cfg["methods"])
    if cfg["dtype"] not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {cfg['dtype']!r}")
    dtype = getattr(torch, cfg["dtype"])
    if cfg["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg['loss']!r}")
    if cfg["net"] not in NETS:
        raise ValueError(f"net must be one of {NETS}, got {cfg['net']!r}")
    linear = cfg["net"] == "linear"
    depth = 1 if linear else int(cfg["depth"])
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {cfg['depth']!r}")
    device = resolve_device(cfg["device"])
    ranks = [int(r) for r in cfg["ranks"]]
    if not ranks or min(ranks) < 0:
        raise ValueError(f"ranks must be non-empty integers >= 0, got {cfg['ranks']!r}")
    problem = EllipticOperatorProblem(cfg["dim"], cfg["n"], cfg["coefficient"], loss=cfg["loss"],
                                      alpha=cfg["alpha"])
    n = problem.n
    es = torch.tensor([], dtype=dtype).element_size()
    f_test = problem.sample_sources(cfg["n_test"], seed=10_000 + cfg["seed"])
    t0 = time.perf_counter()
    G = problem.green() if linear else None
    Gb = problem.exact_bias() if linear else None
    green_time = time.perf_counter() - t0
    Gn = None if G is None else np.linalg.norm(G)
    tr_kw = dict(adam_steps=cfg["adam_steps"], lr=cfg["lr"], lbfgs_steps=cfg["lbfgs_steps"],
                 batch=cfg["batch"], lbfgs_samples=cfg["lbfgs_samples"], seed=cfg["seed"],
                 progress=progress, log_every=max(1, (cfg["adam_steps"] + cfg["lbfgs_steps"]) // 10),
                 eval_sources=f_test[:16], lr_pointwise=cfg["lr_pointwise"])
    ft_kw = dict(tr_kw, adam_steps=0, lbfgs_steps=cfg["finetune_steps"])
    rows = []

    def _results(row_list):
        return {"config": cfg, "problem": repr(problem), "n": n, "green_solve_time": green_time,
                "machine": _machine(device), "rows": list(row_list)}

    def make(layers):
        """The network around the given wide layers, on the study's device."""
        if linear:
            return OperatorNet(layers[0]).to(device)
        g = torch.Generator().manual_seed(int(cfg["seed"]))
        return GridNet(layers, channels=int(cfg["channels"]), activation=cfg["activation"],
                       dtype=dtype, generator=g).to(device)

    def from_trained(model, build):
        """``model`` with every wide layer replaced by ``build(W, b)`` of its weight/bias."""
        def fn(i, lay):
            b = None if lay.bias is None else lay.bias.detach().double().cpu().numpy()
            return build(weight_of(lay), b).to(device)
        return model.replace_wide(fn)

    def record(method, rank, model, hist=None, extra=None, budget=None):
        nbytes = layer_bytes(model)
        row = dict(method=method, rank_param=rank, seed=cfg["seed"], budget_bytes=budget,
                   params=weight_params(model), bytes=nbytes,
                   bytes_ratio=nbytes / (es * n * n * depth),
                   green_error=None, bias_error=None,
                   train_time=None if hist is None else hist["train_time"],
                   steps=None if hist is None else hist["steps"],
                   history=None if hist is None else {k: hist[k] for k in
                                                       ("step", "loss", "test_step", "test_error")})
        if linear:
            W = weight_of(model)
            b = model.layer.bias
            row["green_error"] = float(np.linalg.norm(W - G) / Gn)
            if b is not None and np.any(Gb):
                row["bias_error"] = float(np.linalg.norm(b.detach().double().cpu().numpy() - Gb)
                                          / np.linalg.norm(Gb))
        else:
            row["pointwise_params"] = int(sum(p.numel() for p in model.pointwise_parameters()))
        row.update(evaluate(model, problem, f_test))
        row.update(forward_times(model.layer if linear else model, n, cfg["time_batch"], dtype))
        hl = [w for w in model.wide_layers if isinstance(w, HMatrixLinear)]
        if hl:
            info = [d for w in hl for d in w.leaf_info()]
            lr_ranks = [d["rank"] for d in info if d["kind"] == "lowrank"]
            row["leaves"] = len(info)
            row["max_rank"] = max(lr_ranks) if lr_ranks else 0
        if extra:
            row.update(extra)
        rows.append(row)
        if on_row is not None:
            on_row(_results(row_list=rows))
        if progress:
            ge = "" if row["green_error"] is None else f" green {row['green_error']:.3e}"
            print(f"[{method} r={rank} seed={cfg['seed']}] bytes {row['bytes']} "
                  f"({row['bytes_ratio']:.3f} of dense) test {row['rel_error']:.3e}{ge} "
                  f"fwd {row['forward_s'] * 1e3:.2f} ms"
                  + (f" train {row['train_time']:.1f} s" if row['train_time'] is not None else ""),
                  flush=True)
        return row

    def note(msg):
        if progress:
            print(msg, flush=True)

    def structured(r, seed_offset=0):
        return [structured_hmatrix(problem, r, cfg["leaf_size"], cfg["eta"], dtype,
                                    seed=cfg["seed"] + 1000 * i + seed_offset) for i in range(depth)]

    def failed(method, r, e):  # reported, not hidden
        note(f"{method} failed: {type(e).__name__}: {e}")
        rows.append(dict(method=method, rank_param=r, seed=cfg["seed"],
                         error=f"{type(e).__name__}: {e}"))

    need_dense = any(m in methods for m in ("dense", "hmatrix-posthoc", "hmatrix+finetune", "svd",
                                            "svd+finetune", "prune", "prune+finetune"))
    dense_model = None
    if need_dense:
        note(f"== dense ({depth} x {n} x {n}, net {cfg['net']}, device {device})")
        dense_model = make([dense_layer(n, dtype) for _ in range(depth)])
        h = train_operator(dense_model, problem, **tr_kw)
        record("dense", None, dense_model, h)
        if "dense" not in methods:
            rows.pop()

    for r in ranks:
        bt = geometric_block_tree(problem.points, problem.points, leaf_size=cfg["leaf_size"],
                                  eta=cfg["eta"])
        ref = structured_hmatrix(problem, r, cfg["leaf_size"], cfg["eta"], dtype)
        budget = layer_bytes(ref)  # per wide layer
        k_svd = rank_for_bytes(n, n, es, budget)
        nnz = nnz_for_bytes(n, n, es, budget)
        note(f"== rank {r}: H-structure {ref.num_leaves} leaves, budget {budget} bytes per wide "
             f"layer ({budget / (es * n * n):.3f} of dense) -> SVD rank {k_svd}, pruning nnz {nnz}")
        total = budget * depth

        def derived(name, tuned, build, extra=None):
            """Rows ``name`` (the dense-trained net with its wide layers replaced by
            ``build(W, b)``) and ``tuned`` (the same, fine-tuned), each if asked for."""
            if name not in methods and tuned not in methods:
                return
            m = from_trained(dense_model, build)
            if name in methods:
                record(name, r, m, budget=total, extra=extra)
            if tuned in methods:
                h = train_operator(m, problem, **ft_kw)
                record(tuned, r, m, h, budget=total, extra=extra)

        if "hmatrix" in methods:
            m = make(structured(r))
            h = train_operator(m, problem, **tr_kw)
            record("hmatrix", r, m, h, budget=total)
        if "hmatrix-dynamic" in methods:
            from ..dynamic import DynamicHCompression

            m = make(structured(r))
            # no byte budget: the layer starts at the rank-r budget and may grow or shrink
            # (with budget_bytes=budget it cannot grow at all); its bytes are reported
            # random sources every step: discount the sampling noise in the growth indicator
            cb = DynamicHCompression(cfg["dynamic_tol"], every=cfg["dynamic_every"],
                                     noise_factor=cfg["dynamic_noise"])
            try:
                h = train_operator(m, problem, callbacks=[cb], **tr_kw)
                record("hmatrix-dynamic", r, m, h, budget=total,
                       extra={"dynamic_log": [{k: e[k] for k in ("step", "bytes", "grown", "split",
                                                                   "merged", "densified")}
                                              for e in cb.log]})
            except Exception as e:  # noqa: BLE001 -- reported in the results, not hidden
                failed("hmatrix-dynamic", r, e)
        def to_h(W, b):
            H = hmat.HBlock.from_partition(bt.partition(), project_to_structure(W, bt, r))
            return HMatrixLinear.from_hblock(H, bias=None if b is None else torch.as_tensor(b),
                                             dtype=dtype)

        derived("hmatrix-posthoc", "hmatrix+finetune", to_h)
        if "lowrank" in methods:
            g = torch.Generator().manual_seed(cfg["seed"])
            lays = []
            for _ in range(depth):
                lay = LowRankLinear(n, n, k_svd, dtype=dtype, generator=g)
                with torch.no_grad():
                    lay.U.normal_(0.0, FACTOR_SCALE * math.sqrt(problem.h ** problem.dim),
                                  generator=g)
                    lay.V.zero_()
                lays.append(lay)
            m = make(lays)
            h = train_operator(m, problem, **tr_kw)
            record("lowrank", r, m, h, budget=total, extra={"rank": k_svd})
        derived("svd", "svd+finetune", lambda W, b: lowrank_from(W, b, k_svd, dtype),
                {"rank": k_svd})
        derived("prune", "prune+finetune", lambda W, b: pruned_from(W, b, nnz, dtype),
                {"nnz": nnz})
        oracles = [mt for mt in methods if mt.startswith("oracle-")]
        if oracles and not linear:
            note(f"{', '.join(oracles)}: only for net='linear' (a GridNet has no exact weight); "
                 "skipped")
        elif oracles:
            if "oracle-hmatrix" in methods:
                H = hmat.HBlock.from_partition(bt.partition(), project_to_structure(G, bt, r))
                record("oracle-hmatrix", r, make([HMatrixLinear.from_hblock(
                    H, bias=torch.as_tensor(Gb), dtype=dtype)]), budget=total)
            if "oracle-svd" in methods:
                record("oracle-svd", r, make([lowrank_from(G, Gb, k_svd, dtype)]), budget=total,
                       extra={"rank": k_svd})
            if "oracle-prune" in methods:
                record("oracle-prune", r, make([pruned_from(G, Gb, nnz, dtype)]), budget=total,
                       extra={"nnz": nnz})

    return _results(row_list=rows)


def _machine(device=None):
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        info["load_average"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    return info


#: former private names, still used by tests/pinn/test_gridnet.py (not this branch's file)
_dense_layer, _lowrank_from, _pruned_from, _structured_hmatrix = (
    dense_layer, lowrank_from, pruned_from, structured_hmatrix)

# the report functions of pinn.report under this module's former names
markdown_table = operator_table
summarize = operator_summary
summary_table = operator_summary_table
write_report = write_operator_report


# ----------------------------------------------------------------------------- CLI
def _ints(s):
    return [int(v) for v in str(s).replace(",", " ").split()]


def build_parser(prog="python -m pinn operator"):
    d = DEFAULTS
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, choices=(1, 2), default=d["dim"])
    ap.add_argument("--n", type=int, default=d["n"],
                    help="unknowns: 1-D grid size, or m*m in 2-D (e.g. 1024 for 32x32)")
    ap.add_argument("--coefficient", choices=("constant", "smooth"), default=d["coefficient"])
    ap.add_argument("--loss", choices=LOSSES, default=d["loss"])
    ap.add_argument("--methods", default=",".join(d["methods"]),
                    help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--ranks", default=",".join(map(str, d["ranks"])),
                    help="ranks of the admissible H-leaves; each defines a storage budget")
    ap.add_argument("--leaf-size", type=int, default=d["leaf_size"])
    ap.add_argument("--eta", type=float, default=d["eta"])
    ap.add_argument("--adam-steps", type=int, default=d["adam_steps"])
    ap.add_argument("--lbfgs-steps", type=int, default=d["lbfgs_steps"])
    ap.add_argument("--finetune-steps", type=int, default=d["finetune_steps"])
    ap.add_argument("--batch", type=int, default=d["batch"])
    ap.add_argument("--lbfgs-samples", type=int, default=None)
    ap.add_argument("--lr", type=float, default=d["lr"], help="Adam lr in units of h**dim")
    ap.add_argument("--alpha", type=float, default=d["alpha"], help="GRF smoothness (0 = white)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"])
    ap.add_argument("--seed", type=int, default=d["seed"], help="seed (one run)")
    ap.add_argument("--seeds", default=None,
                    help="several seeds, e.g. 0,1,2: one run each, rows merged, a summary "
                         "table over seeds (overrides --seed)")
    ap.add_argument("--net", choices=NETS, default=d["net"],
                    help="linear: one grid-indexed layer; gridnet: pinn.GridNet (nonlinear)")
    ap.add_argument("--channels", type=int, default=d["channels"], help="GridNet channels")
    ap.add_argument("--depth", type=int, default=d["depth"], help="GridNet wide layers")
    ap.add_argument("--activation", default=d["activation"], help="GridNet activation")
    ap.add_argument("--lr-pointwise", type=float, default=d["lr_pointwise"],
                    help="Adam lr of the GridNet's pointwise parameters")
    ap.add_argument("--device", default=d["device"], help="torch device: cpu or cuda")
    ap.add_argument("--n-test", type=int, default=d["n_test"])
    ap.add_argument("--dynamic-tol", type=float, default=d["dynamic_tol"])
    ap.add_argument("--dynamic-every", type=int, default=d["dynamic_every"])
    ap.add_argument("--dynamic-noise", type=float, default=d["dynamic_noise"],
                    help="noise_factor of pinn.DynamicHCompression (0: plain indicator)")
    ap.add_argument("--time-batch", type=int, default=d["time_batch"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--out", default="results/operator")
    ap.add_argument("--quiet", action="store_true")
    return ap


def main(argv=None, prog="python -m pinn operator"):
    """``python -m pinn operator``: run the study, write results.json, report.md, plots.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).
    prog : str
        How the command was invoked (shown in help and recorded in the results).
    """
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if a.threads is not None:
        if a.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(a.threads)
    methods = [m for m in a.methods.replace(",", " ").split() if m]
    try:
        _parse_methods(methods)
        ranks = _ints(a.ranks)
        seeds = [a.seed] if a.seeds is None else _ints(a.seeds)
    except ValueError as e:
        ap.error(str(e))
    if not seeds:
        ap.error("--seeds must list at least one seed")
    cfg = dict(dim=a.dim, n=a.n, coefficient=a.coefficient, loss=a.loss, methods=methods,
               ranks=ranks, leaf_size=a.leaf_size, eta=a.eta, adam_steps=a.adam_steps,
               lbfgs_steps=a.lbfgs_steps, finetune_steps=a.finetune_steps, batch=a.batch,
               lbfgs_samples=a.lbfgs_samples, lr=a.lr, alpha=a.alpha, dtype=a.dtype, seed=a.seed,
               n_test=a.n_test, dynamic_tol=a.dynamic_tol, dynamic_every=a.dynamic_every,
               dynamic_noise=a.dynamic_noise,
               time_batch=a.time_batch, net=a.net, channels=a.channels, depth=a.depth,
               activation=a.activation, lr_pointwise=a.lr_pointwise, device=a.device)
    os.makedirs(a.out, exist_ok=True)
    done = []

    def partial(res):
        write_json_atomic(os.path.join(a.out, "results.partial.json"), merge_seeds(done + [res]))

    try:
        for seed in seeds:
            done.append(run_study(dict(cfg, seed=seed), progress=not a.quiet, on_row=partial))
    except ValueError as e:
        ap.error(str(e))
    res = merge_seeds(done)
    res["command"] = prog + " " + " ".join(sys.argv[1:] if argv is None else argv)
    plots = write_operator_report(res, a.out)
    try:  # the complete results are on disk now
        os.remove(os.path.join(a.out, "results.partial.json"))
    except FileNotFoundError:
        pass
    if not a.quiet:
        print(f"wrote {os.path.join(a.out, 'results.json')}, report.md"
              + (", " + ", ".join(plots) if plots else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m pinn.operator_study"))
