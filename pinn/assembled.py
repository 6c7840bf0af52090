"""Assembled-weight evaluation of :class:`pinn.HMatrixLinear` (and
:class:`pinn.LowRankLinear`) layers (a speed path).

A small H-layer (e.g. 64 x 64 with leaf size 8: 94 leaves) applied leaf by leaf costs
dozens of small kernels per forward, per input-derivative order and per backward pass:
a PINN step of a width-64 H-network took 100-200 ms where the dense network took 5-15 ms
(one torch thread). The weight does not depend on the input, so it can be *assembled*
once per forward call -- ``W = Ubig Vbig^T + scatter(dense leaves)`` with every low-rank
leaf's factors placed in disjoint columns of ``Ubig`` (out, K) and ``Vbig`` (in, K),
``K`` = the sum of the leaf ranks -- and applied as one dense matmul. The function and
its derivatives (input derivatives of any order, parameter gradients) are the same as
the leaf-by-leaf product's; only the floating-point summation order differs (the
extra terms are exact zeros). The trainable parameters, their count and their bytes
are unchanged: this is how the layer is *evaluated*, not how it is stored. A
:class:`pinn.LowRankLinear` is likewise applied as ``x (U V^T)^T`` (about 2x faster per
PINN step at 256 points, 1.3x at 2,540, than its factored custom-autograd path, one thread,
load 4).

:func:`assembled_forward` switches every H-layer of a model to this path for the
duration of a ``with`` block (the layer's gradient probe of
:meth:`pinn.HMatrixLinear.start_probe`, used by :class:`pinn.DynamicHCompression`, is
honoured: ``W_eff = H + P``).
"""
from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn.functional as F

from .layers import HMatrixLinear, LowRankLinear

__all__ = ["assemble_weight", "assembled_forward"]


#: layer -> its index plan; weak keys, so that a plan goes with its layer
_PLANS = weakref.WeakKeyDictionary()


def _plan(layer):
    """Index plan of ``layer``'s current structure (original, unpermuted coordinates).

    Cached (in this module, keyed by the layer) until its structure changes: every
    structure change of an HMatrixLinear installs a new ``factors`` ParameterList (the
    cache holds the old one, so its identity cannot be reused)."""
    cache = _PLANS.get(layer)
    dev = layer.factors[0].device
    if cache is not None and cache["factors"] is layer.factors and cache["device"] == dev \
            and cache["row_perm"] is layer.row_perm and cache["col_perm"] is layer.col_perm:
        return cache
    info = layer.leaf_info()
    out, inp = layer.out_features, layer.in_features
    rp = torch.arange(out) if layer.row_perm is None else layer.row_perm.cpu()
    cp = torch.arange(inp) if layer.col_perm is None else layer.col_perm.cpu()
    d_par, u_par, v_par = [], [], []
    d_idx, u_r, u_c, v_r, v_c = [], [], [], [], []
    K = 0
    for i, d in enumerate(info):
        r = rp[d["r0"]:d["r0"] + d["m"]]
        c = cp[d["c0"]:d["c0"] + d["n"]]
        f = layer.leaf_factors(i)
        if d["kind"] == "dense":
            d_par.append(f[0])
            d_idx.append((r.view(-1, 1) * inp + c.view(1, -1)).reshape(-1))
        elif d["rank"] > 0 and d["m"] > 0 and d["n"] > 0:
            k = d["rank"]
            u_par.append(f[0])
            v_par.append(f[1])
            cols = torch.arange(K, K + k)
            u_r.append(r.view(-1, 1).expand(-1, k).reshape(-1))
            u_c.append(cols.view(1, -1).expand(d["m"], -1).reshape(-1))
            v_r.append(c.view(-1, 1).expand(-1, k).reshape(-1))
            v_c.append(cols.view(1, -1).expand(d["n"], -1).reshape(-1))
            K += k

    def cat(ts):
        return torch.cat(ts).to(dev) if ts else torch.zeros(0, dtype=torch.long, device=dev)

    plan = dict(factors=layer.factors, device=dev, row_perm=layer.row_perm,
                col_perm=layer.col_perm, dense=d_par, u_par=u_par, v_par=v_par, K=K,
                d_idx=cat(d_idx), u=(cat(u_r), cat(u_c)), v=(cat(v_r), cat(v_c)))
    _PLANS[layer] = plan
    return plan


def assemble_weight(layer):
    """The dense weight of an :class:`pinn.HMatrixLinear`, shape (out, in), in the
    layer's dtype, differentiable w.r.t. its factors (a few large ops, see the module
    docstring); equal to ``layer.weight`` up to rounding.

    Raises
    ------
    TypeError
        If ``layer`` is not an HMatrixLinear.
    """
    if not isinstance(layer, HMatrixLinear):
        raise TypeError(f"layer must be a pinn.HMatrixLinear, got {type(layer).__name__}")
    plan = _plan(layer)
    out, inp = layer.out_features, layer.in_features
    p0 = layer.factors[0]
    if plan["K"]:
        us = torch.cat([p.reshape(-1) for p in plan["u_par"]])
        vs = torch.cat([p.reshape(-1) for p in plan["v_par"]])
        U = p0.new_zeros(out, plan["K"]).index_put(plan["u"], us)
        V = p0.new_zeros(inp, plan["K"]).index_put(plan["v"], vs)
        W = (U @ V.t()).reshape(-1)
    else:
        W = p0.new_zeros(out * inp)
    if plan["dense"]:
        ds = torch.cat([p.reshape(-1) for p in plan["dense"]])
        W = W.index_add(0, plan["d_idx"], ds)
    return W.reshape(out, inp)


@contextlib.contextmanager
def assembled_forward(model):
    """Evaluate every :class:`pinn.HMatrixLinear` of ``model`` through
    :func:`assemble_weight` (one dense matmul), and every :class:`pinn.LowRankLinear` as
    ``x (U V^T)^T + b`` (its ``weight``), inside the ``with`` block.

    Structure changes during the block (:class:`pinn.DynamicHCompression`) are followed
    (the index plan is rebuilt when the leaf structure changes). Gradient probes started
    inside the block (:meth:`pinn.HMatrixLinear.start_probe`) are applied as
    ``W_eff = H + P``, so ``P.grad`` is ``dL/dW`` as with the leaf-by-leaf path (a probe
    started *before* the block is not seen: enter the block before training). On exit
    the layers' own methods are restored (a probe still active then stays active on the
    leaf-by-leaf path).

    The weight is assembled anew at every forward call (not shared between the loss
    terms of one step: a cache keyed on the parameters' version counters would be wrong
    after torch's fused Adam, which updates parameters in place without advancing them).
    """
    layers = [m for m in model.modules() if isinstance(m, (HMatrixLinear, LowRankLinear))]
    for L in layers:
        if "forward" in vars(L):
            raise ValueError("assembled_forward: a layer is already inside assembled_forward")
    probes = {}
    for L in layers:
        if isinstance(L, LowRankLinear):
            L.forward = (lambda x, L=L: F.linear(x, L.weight, L.bias))
            continue

        def fwd(x, L=L):
            W = assemble_weight(L)
            P = probes.get(id(L))
            if P is not None:
                W = W + P
            return F.linear(x, W, L.bias)

        def start(L=L, orig=L.start_probe):
            P = orig()
            probes[id(L)] = P
            return P

        def stop(L=L, orig=L.stop_probe):
            probes.pop(id(L), None)
            return orig()

        L.forward, L.start_probe, L.stop_probe = fwd, start, stop
    try:
        yield model
    finally:
        for L in layers:
            for name in ("forward", "start_probe", "stop_probe"):
                vars(L).pop(name, None)
