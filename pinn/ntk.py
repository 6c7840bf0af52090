"""Empirical neural tangent kernel of a PINN (Wang, Yu & Perdikaris 2022) and comparison metrics."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap

from .problems import get_problem

__all__ = ["ntk", "ntk_compare", "jacobians"]


def _flat(jac, n):
    return torch.cat([j.reshape(n, -1) for j in jac.values()], dim=1)


def jacobians(model, problem, x_boundary, x_residual, chunk=64, wrt="parameters"):
    """Parameter Jacobians ``J_u = du(x_b)/dtheta`` and ``J_r = d(Lu)(x_r)/dtheta`` in float64.

    Parameters
    ----------
    model : torch.nn.Module
        Any network of this package (dense, LowRank, HMatrix, pruned, quantized).
    problem : Problem or str
    x_boundary : array_like, shape (N_b, d)
    x_residual : array_like, shape (N_r, d)
    chunk : int
        Points per ``jacrev`` call (memory bound).
    wrt : {"parameters", "effective"}
        ``"parameters"``: ``theta`` = the network's own parameters (factors, leaves,
        masked weights); ``"effective"``: ``theta`` = the effective dense weights and
        biases of every layer (:func:`pinn.compress.effective_dense`) -- the
        function-space Jacobian, the same for every parametrization of the same function.

    Returns
    -------
    J_u : torch.Tensor, shape (N_b, P), float64
    J_r : torch.Tensor, shape (N_r, P), float64
        ``P`` is the number of trainable scalars of ``model`` (all
        ``named_parameters``; pruned entries have zero columns), or of the dense
        weights and biases with ``wrt="effective"``.
    """
    problem = get_problem(problem)
    from .compress import clone_model, effective_dense

    if wrt not in ("parameters", "effective"):
        raise ValueError(f"wrt must be 'parameters' or 'effective', got {wrt!r}")
    m = (effective_dense(model) if wrt == "effective" else clone_model(model)).double()
    params = {k: v.detach() for k, v in m.named_parameters()}
    xb = torch.as_tensor(np.asarray(x_boundary), dtype=torch.float64)
    xr = torch.as_tensor(np.asarray(x_residual), dtype=torch.float64)

    def f(p, xi):
        return functional_call(m, p, (xi[None],)).reshape(())

    def u_b(p, x):
        return vmap(f, in_dims=(None, 0))(p, x)

    def res(p, x):
        u = vmap(f, in_dims=(None, 0))(p, x)
        g = vmap(jacrev(f, argnums=1), in_dims=(None, 0))(p, x)
        h = vmap(jacrev(jacrev(f, argnums=1), argnums=1), in_dims=(None, 0))(p, x)
        return problem.pde_residual(x, u, g, h)

    Ju = [_flat(jacrev(u_b)(params, xb[i:i + chunk]), len(xb[i:i + chunk]))
          for i in range(0, len(xb), chunk)]
    Jr = [_flat(jacrev(res)(params, xr[i:i + chunk]), len(xr[i:i + chunk]))
          for i in range(0, len(xr), chunk)]
    return torch.cat(Ju, 0), torch.cat(Jr, 0)


def ntk(model, problem, x_boundary, x_residual, chunk=64, wrt="parameters"):
    """PINN NTK blocks ``K_uu = J_u J_u^T``, ``K_rr = J_r J_r^T``, ``K_ur = J_u J_r^T``.

    Parameters
    ----------
    model, problem, x_boundary (N_b, d), x_residual (N_r, d), chunk, wrt :
        see :func:`jacobians` (``wrt="effective"``: the NTK w.r.t. the effective dense
        weights, free of the parametrization)

    Returns
    -------
    dict
        ``"K_uu"`` (N_b, N_b), ``"K_rr"`` (N_r, N_r), ``"K_ur"`` (N_b, N_r):
        numpy float64 arrays.
    """
    Ju, Jr = jacobians(model, problem, x_boundary, x_residual, chunk, wrt)
    return {"K_uu": (Ju @ Ju.T).numpy(), "K_rr": (Jr @ Jr.T).numpy(), "K_ur": (Ju @ Jr.T).numpy()}


def _whole(K):
    return np.block([[K["K_uu"], K["K_ur"]], [K["K_ur"].T, K["K_rr"]]])


def _spectrum(K):
    ev = np.linalg.eigvalsh(_whole(K))[::-1]
    return ev


def ntk_compare(K, K_tilde, top_m=10):
    """Compare an NTK ``K_tilde`` (compressed network) with a reference ``K``.

    Parameters
    ----------
    K, K_tilde : dict from :func:`ntk` (same points)
    top_m : int
        Number of leading eigenvalues compared.

    Returns
    -------
    dict of float
        ``rel_fro_uu``, ``rel_fro_rr``, ``rel_fro_ur``, ``rel_fro`` (whole
        kernel): ``||K~ - K||_F / ||K||_F``; ``alignment`` =
        ``<K, K~>_F / (||K||_F ||K~||_F)``; ``top_eig_rel_err_max`` /
        ``_mean``: relative error of the ``top_m`` largest eigenvalues of the
        whole kernel; ``lambda_min``, ``lambda_min_tilde``, ``cond``,
        ``cond_tilde`` (``inf`` when ``lambda_min <= 0``); ``trace_ratio``
        and ``trace_ratio_tilde`` = ``Tr K_rr / Tr K_uu``; ``eig`` and
        ``eig_tilde``: the spectra (lists, descending).
    """
    out = {}
    for b in ("uu", "rr", "ur"):
        A, B = K["K_" + b], K_tilde["K_" + b]
        if A.shape != B.shape:
            raise ValueError(f"K_{b} shapes differ: {A.shape} vs {B.shape}")
        out["rel_fro_" + b] = float(np.linalg.norm(B - A) / max(np.linalg.norm(A), 1e-300))
    W, Wt = _whole(K), _whole(K_tilde)
    out["rel_fro"] = float(np.linalg.norm(Wt - W) / max(np.linalg.norm(W), 1e-300))
    out["alignment"] = float(np.sum(W * Wt) / max(np.linalg.norm(W) * np.linalg.norm(Wt), 1e-300))
    ev, evt = _spectrum(K), _spectrum(K_tilde)
    m = min(top_m, len(ev))
    rel = np.abs(evt[:m] - ev[:m]) / np.maximum(np.abs(ev[:m]), 1e-300)
    out["top_eig_rel_err_max"] = float(rel.max())
    out["top_eig_rel_err_mean"] = float(rel.mean())
    for suf, e in (("", ev), ("_tilde", evt)):
        lmin = float(e[-1])
        out["lambda_min" + suf] = lmin
        out["cond" + suf] = float(e[0] / lmin) if lmin > 0 else math.inf
    out["trace_ratio"] = float(np.trace(K["K_rr"]) / np.trace(K["K_uu"]))
    out["trace_ratio_tilde"] = float(np.trace(K_tilde["K_rr"]) / np.trace(K_tilde["K_uu"]))
    out["eig"] = ev.tolist()
    out["eig_tilde"] = evt.tolist()
    return out
