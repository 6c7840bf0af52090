"""One training step of a geometric H-layer: grouped leaves vs per-leaf loop vs nn.Linear.

Usage::

    python benchmarks/layer_step.py --dim 1 --n 256,1024,4096 --threads 1
    python benchmarks/layer_step.py --dim 2 --n 1024,4096 --threads 1
    python benchmarks/layer_step.py --dim 1 --device cuda

The H-layer is built as the elliptic-operator study builds it:
:func:`pinn.geometric.geometric_hmatrix_linear` on the grid points of
``EllipticOperatorProblem(dim, n, "smooth")`` (input = output points), leaf
size 16 (32 for n >= 4096), eta 1 in 1-D / 2 in 2-D, rank 1 in 1-D / 4 in 2-D,
``init="glorot"``, float32.

For each n it times (median of ``--repeat`` runs after two warm-ups):

* "step": forward + backward of ``(layer(x) ** 2).sum()`` (x of shape
  ``(batch, n)``, x not requiring grad -- the parameter gradients are computed);
* "fwd": a forward under ``torch.no_grad()``;

for ``nn.Linear(n, n)``, the H-layer through the grouped leaf application of
:mod:`pinn.autograd` ("H grouped"), and the same H-layer through the former
per-leaf Python loop ("H per-leaf", kept below as the baseline and swapped in
for the module's ``_apply`` / ``_param_grads``). Ratios are dense time / H time
(> 1: the H-layer is faster).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pinn.autograd as pa
from pinn.geometric import geometric_hmatrix_linear
from pinn.problems.elliptic_operator import EllipticOperatorProblem


# ----------------------------------------------------------------------------- former per-leaf path
def _apply_per_leaf(x, struct, params):
    m, n = struct.shape
    if x.shape[-1] != n:
        raise ValueError(f"x: last dimension must be {n}, got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, n)
    xp = x2 if struct.col_perm is None else x2.index_select(1, struct.col_perm)
    yp = x2.new_zeros((x2.shape[0], m))
    for lf in struct.leaves:
        xb = xp[:, lf.c0:lf.c0 + lf.n]
        f = pa._leaf_factors(lf, params)
        if lf.kind == pa.LeafKind.DENSE:
            yp[:, lf.r0:lf.r0 + lf.m] += xb @ f[0].t()
        else:
            yp[:, lf.r0:lf.r0 + lf.m] += (xb @ f[1]) @ f[0].t()
    y = yp if struct.inv_row_perm is None else yp.index_select(1, struct.inv_row_perm)
    return y.reshape(*lead, m)


def _param_grads_per_leaf(x, gy, struct, params, needs):
    m, n = struct.shape
    x2 = x.reshape(-1, n)
    g2 = gy.reshape(-1, m)
    xp = x2 if struct.col_perm is None else x2.index_select(1, struct.col_perm)
    gp = g2 if struct.row_perm is None else g2.index_select(1, struct.row_perm)
    grads = [None] * len(params)
    for lf in struct.leaves:
        if not any(needs[i] for i in lf.idx):
            continue
        xb = xp[:, lf.c0:lf.c0 + lf.n]
        gb = gp[:, lf.r0:lf.r0 + lf.m]
        if lf.kind == pa.LeafKind.DENSE:
            G = gb.t() @ xb
            grads[lf.idx[0]] = G.t() if lf.transposed else G
        else:
            U, V = pa._leaf_factors(lf, params)
            gU = gb.t() @ (xb @ V)
            gV = xb.t() @ (gb @ U)
            if lf.transposed:
                gU, gV = gV, gU
            grads[lf.idx[0]], grads[lf.idx[1]] = gU, gV
    return [g if needs[i] else None for i, g in enumerate(grads)]


@contextlib.contextmanager
def per_leaf():
    """Swap the former per-leaf loop into :mod:`pinn.autograd`."""
    saved = pa._apply, pa._param_grads
    pa._apply, pa._param_grads = _apply_per_leaf, _param_grads_per_leaf
    try:
        yield
    finally:
        pa._apply, pa._param_grads = saved


# ----------------------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn, repeat, device):
    for _ in range(2):
        fn()
    _sync(device)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def _step(layer, x):
    def run():
        for p in layer.parameters():
            p.grad = None
        (layer(x) ** 2).sum().backward()
    return run


def _fwd(layer, x):
    def run():
        with torch.no_grad():
            layer(x)
    return run


def build_layer(dim, n, device):
    pts = EllipticOperatorProblem(dim, n, "smooth").points
    layer = geometric_hmatrix_linear(pts, pts, leaf_size=32 if n >= 4096 else 16,
                                     eta=1.0 if dim == 1 else 2.0, rank=1 if dim == 1 else 4,
                                     init="glorot", generator=torch.Generator().manual_seed(0))
    return layer.to(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="256,1024,4096", help="comma-separated sizes")
    ap.add_argument("--dim", type=int, choices=(1, 2), default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("layer_step.py: --device cuda requested but torch.cuda.is_available() is False")
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    ns = [int(s) for s in a.n.split(",") if s.strip()]

    print(f"dim={a.dim} batch={a.batch} repeat={a.repeat} threads={a.threads} device={a.device} "
          f"torch={torch.__version__} float32; times in ms (median); ratio = dense / H")
    print()
    print("| n | leaves | groups | dense step | H grouped step | H per-leaf step | ratio grouped | "
          "ratio per-leaf | dense fwd | H grouped fwd | H per-leaf fwd | ratio grouped | ratio per-leaf |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        layer = build_layer(a.dim, n, device)
        dense = nn.Linear(n, n).to(device)
        x = torch.randn(a.batch, n, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():  # same function, to check the two H paths agree
            y_new = layer(x)
            with per_leaf():
                y_old = layer(x)
        err = float((y_new - y_old).abs().max() / y_old.abs().max())
        if err > 1e-5:
            raise RuntimeError(f"grouped and per-leaf forward differ: relative {err:.2e}")
        st = layer.structure
        ngroups = len(st.groups(list(layer.factors)))
        t = {}
        t["ds"] = _median_ms(_step(dense, x), a.repeat, device)
        t["df"] = _median_ms(_fwd(dense, x), a.repeat, device)
        t["gs"] = _median_ms(_step(layer, x), a.repeat, device)
        t["gf"] = _median_ms(_fwd(layer, x), a.repeat, device)
        with per_leaf():
            t["ls"] = _median_ms(_step(layer, x), a.repeat, device)
            t["lf"] = _median_ms(_fwd(layer, x), a.repeat, device)
        print(f"| {n} | {len(st.leaves)} | {ngroups} | {t['ds']:.2f} | {t['gs']:.2f} | {t['ls']:.2f} | "
              f"{t['ds'] / t['gs']:.2f} | {t['ds'] / t['ls']:.2f} | {t['df']:.2f} | {t['gf']:.2f} | "
              f"{t['lf']:.2f} | {t['df'] / t['gf']:.2f} | {t['df'] / t['lf']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
