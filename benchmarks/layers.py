"""Speed of HMatrixLinear vs nn.Linear vs LowRankLinear (forward, forward+backward, PDE residual).

Usage::

    python benchmarks/layers.py                       # widths 128..1024, batch 1024
    python benchmarks/layers.py --widths 128 256 512 1024 2048 4096 --batches 1024 8192

The weight is a synthetic matrix with hierarchical low-rank structure (the
kernel ``1 / (1 + |i - j|)`` on the neuron indices plus 1e-6 noise), compressed
with ``HMatrixLinear.from_linear(tol=--tol)``; the LowRankLinear has the rank
whose storage equals the H-layer's (capped at full rank). Times are the minimum
of ``--repeats`` runs after a warm-up (robust on a shared machine), in float32 on the current thread count,
as ratios to nn.Linear measured in the same run. "PDE residual" is
``u_xx`` of ``x -> Linear(1, w) -> tanh -> layer -> tanh -> Linear(w, 1)``
by double backward over a batch of scalar inputs. "memory" is the bytes of
parameters plus the distinct storages saved for backward in the PDE-residual
graph (``torch.autograd.graph.saved_tensors_hooks``), as a ratio to nn.Linear --
the part of the peak memory that depends on the layer type.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import pinn


def _weight(w, seed=0):
    i = torch.arange(w, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    W = 1.0 / (1.0 + (i[:, None] - i[None, :]).abs()) + 1e-6 * torch.randn(w, w, generator=g,
                                                                          dtype=torch.float64)
    lin = nn.Linear(w, w)
    with torch.no_grad():
        lin.weight.copy_(W / W.norm() * w**0.5)
    return lin


def _time(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _saved_bytes(fn):
    """Bytes of the distinct storages saved for backward while running ``fn``."""
    storages = {}

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def bench(width, batch, tol, leaf_size, repeats):
    lin = _weight(width)
    H = pinn.HMatrixLinear.from_linear(lin, tol=tol, leaf_size=leaf_size)
    k = max(1, min(width, H.nbytes // (2 * width * 4)))
    LR = pinn.LowRankLinear.from_linear(lin, rank=int(k))
    layers = {"dense": lin, "lowrank": LR, "hmatrix": H}
    x = torch.randn(batch, width)
    xs = torch.rand(batch, 1)
    res = {}
    for name, layer in layers.items():
        inp = nn.Linear(1, width)
        out = nn.Linear(width, 1)

        def fwd():
            with torch.no_grad():
                layer(x)

        def fwdbwd():
            xx = x.detach().requires_grad_(True)
            layer(xx).sum().backward()

        def pde():
            xx = xs.detach().requires_grad_(True)
            u = out(torch.tanh(layer(torch.tanh(inp(xx)))))
            (g,) = torch.autograd.grad(u.sum(), xx, create_graph=True)
            (h,) = torch.autograd.grad(g.sum(), xx, create_graph=True)
            h.sum().backward()

        params = sum(p.numel() * p.element_size() for p in layer.parameters())
        res[name] = dict(fwd=_time(fwd, repeats), fwdbwd=_time(fwdbwd, repeats),
                         pde=_time(pde, repeats), mem=params + _saved_bytes(pde),
                         bytes=params)
    res["info"] = dict(h_bytes=H.nbytes, dense_bytes=width * width * 4, rank=int(k),
                       leaves=H.num_leaves,
                       max_rank=max([d["rank"] for d in H.leaf_info() if d["kind"] == "lowrank"] or [0]))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[1024])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--leaf-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, tol {a.tol}, "
          f"leaf_size {a.leaf_size}")
    print("| width | batch | H bytes / dense | H leaves (max rank) | LR rank | "
          "fwd H | fwd LR | fwd+bwd H | fwd+bwd LR | PDE H | PDE LR | memory H | memory LR | "
          "dense fwd s |")
    print("|" + "---|" * 14)
    crossover = {}
    for batch in a.batches:
        for w in a.widths:
            r = bench(w, batch, a.tol, a.leaf_size, a.repeats)
            d, h, l, i = r["dense"], r["hmatrix"], r["lowrank"], r["info"]
            rat = lambda m, k: m[k] / d[k]
            print(f"| {w} | {batch} | {i['h_bytes'] / i['dense_bytes']:.3f} | {i['leaves']} "
                  f"({i['max_rank']}) | {i['rank']} | {rat(h, 'fwd'):.2f} | {rat(l, 'fwd'):.2f} | "
                  f"{rat(h, 'fwdbwd'):.2f} | {rat(l, 'fwdbwd'):.2f} | {rat(h, 'pde'):.2f} | "
                  f"{rat(l, 'pde'):.2f} | {rat(h, 'mem'):.2f} | {rat(l, 'mem'):.2f} | "
                  f"{d['fwd']:.2e} |", flush=True)
            if rat(h, "fwd") < 1 and batch not in crossover:
                crossover[batch] = w
    for batch in a.batches:
        print(f"batch {batch}: HMatrixLinear forward faster than nn.Linear from width "
              f"{crossover.get(batch, 'none of those measured')}")
    print("(ratios < 1: faster / smaller than nn.Linear)")


if __name__ == "__main__":
    main()
