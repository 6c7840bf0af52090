"""Inference time of compressed PINNs (the paper's fourth claim): dense vs every compressed form.

For each width and seed a dense Poisson1D network (depth 4, the full study's schedule:
Adam 1000 + L-BFGS <= 1000 on 256 collocation points) is trained, then compressed at
each byte budget exactly as the study does (``pinn.compress`` at a budget, H leaf size 8),
and the forward pass ``u(x)`` of a batch of points is timed, no gradients, float32, one
thread, for:

* ``dense``        : the trained :class:`pinn.MLP` (``nn.Linear``, MKL gemm);
* ``H``            : the post-hoc H-network's own forward (:class:`pinn.HMatrixLinear`,
                     leaves grouped by shape, the training path without autograd);
* ``H grouped``    : every hidden layer through :class:`pinn.geometric.GroupedHForward`
                     (the factors stacked once: gather + bmm + index_add per shape group);
* ``H hmat``       : every hidden layer as an ``hmat.HBlock`` in float32 (compiled numba
                     matmat over the packed leaves; activations as NumPy arrays);
* ``svd``          : :class:`pinn.LowRankLinear` hidden layers (``x V U^T``);
* ``prune``        : the pruned network the study trains (``torch.nn.utils.prune``: the
                     masked weight recomputed before every call, then a dense gemm);
* ``prune CSR``    : the same weights as ``torch.sparse_csr`` (``torch.sparse.mm``);
* ``int8``         : ``torch.ao`` dynamic int8 quantization of the dense network (real int8
                     kernels; the study's int8 rows are fake-quantized float weights);
* ``fp16``, ``bf16``: the whole network and the input in half precision.

``dense``, ``int8``, ``fp16`` and ``bf16`` do not depend on the budget; they are timed with
every budget's group so that each ratio compares functions timed interleaved in the same
stretch (medians of ``--repeat`` rounds, each a loop long enough to be timed). The
dynamically trained H-networks of the study are :class:`pinn.HMatrixLinear` layers like
the post-hoc ones (their leaf ranks differ); they are not trained here.

Usage: ``python benchmarks/pinn_inference.py [--widths 64,128] [--seeds 0,1,2]
[--batches 1,256,4096] [--out benchmarks/pinn_inference]``. Writes ``results.json`` (every
time), ``results.txt`` (this output) and ``speedup.png`` (with matplotlib) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hmat  # noqa: E402
from _common import Transcript, interleaved_median, machine  # noqa: E402
from pinn import HMatrixLinear, LowRankLinear, compress, get_problem, make_model, train  # noqa: E402
from pinn.compress import dynamic_int8, hidden_bytes  # noqa: E402
from pinn.geometric import GroupedHForward  # noqa: E402
from pinn.layers import ACTIVATIONS  # noqa: E402
from pinn.metrics import evaluate  # noqa: E402

BUDGETS = (0.5, 0.25, 0.1)
METHODS = ("dense", "H", "H grouped", "H hmat", "svd", "prune", "prune CSR", "int8", "fp16", "bf16")


def layer_functions(model, convert):
    """``x -> model(x)`` with every hidden-to-hidden layer replaced by ``convert(layer)`` (a
    callable on the activations); input and output layers stay the model's own."""
    act = ACTIVATIONS[model.activation]
    first, hidden, last = model.layers[0], [convert(L) for L in model.layers[1:-1]], model.layers[-1]

    def forward(x):
        h = act(first(x))
        for f in hidden:
            h = act(f(h))
        return last(h)

    return forward


def hmat_layer(layer):
    """A hidden H-layer as a float32 ``hmat.HBlock`` applied to torch activations (rows)."""
    H = layer.operator().astype(np.float32)  # float32 factors -> float64 -> float32: exact
    b = layer.bias.detach().numpy() if layer.bias is not None else np.float32(0)

    def apply(h):
        X = np.ascontiguousarray(h.numpy().T)  # (in, batch): a matmat over the columns
        return torch.from_numpy(np.ascontiguousarray((H @ X).T) + b)

    return apply


def csr_layer(layer):
    """A pruned layer as ``torch.sparse_csr`` (the kept entries only)."""
    W = layer.weight.detach().to_sparse_csr()
    b = layer.bias.detach()
    return lambda h: torch.sparse.mm(W, h.T).T + b


def dense_forms(dense):
    """The forms that do not depend on the budget: name -> function of the input points (N, 1)."""
    return {"dense": dense, "int8": dynamic_int8(dense), "fp16": make_half(dense, torch.float16),
            "bf16": make_half(dense, torch.bfloat16)}


def budget_forms(nets):
    """The forms of one budget's compressed networks: name -> function of the input points."""
    return {"H": nets["hmatrix"], "svd": nets["svd"], "prune": nets["prune"],
            "H grouped": layer_functions(nets["hmatrix"], GroupedHForward),
            "H hmat": layer_functions(nets["hmatrix"], hmat_layer),
            "prune CSR": layer_functions(nets["prune"], csr_layer)}


def make_half(model, dtype):
    """The dense network rounded as the study does, stored and run in ``dtype`` (input cast)."""
    m = compress(model, "fp16" if dtype == torch.float16 else "bf16")[0]  # the study's rounding
    m = m.to(dtype)
    return lambda x: m(x.to(dtype))


def check_layers(nets):
    """The compressed networks have the layer types the forms above assume."""
    kinds = {"hmatrix": HMatrixLinear, "svd": LowRankLinear}
    for name, cls in kinds.items():
        if not all(isinstance(L, cls) for L in nets[name].layers[1:-1]):
            raise RuntimeError(f"{name}: hidden layers are not {cls.__name__}")
    if not all(hasattr(L, "weight_mask") for L in nets["prune"].layers[1:-1]):
        raise RuntimeError("prune: hidden layers are not masked by torch.nn.utils.prune")


#: forms that compute the same function as another one (up to float32 rounding)
SAME = {"H grouped": "H", "H hmat": "H", "prune CSR": "prune"}


def same_function(out):
    """Raise if a form differs from the network it re-implements beyond float32 rounding."""
    for k, ref in SAME.items():
        d = float((out[k] - out[ref]).norm() / out[ref].norm())
        if not d <= 1e-5:
            raise RuntimeError(f"{k} differs from {ref} by {d:.1e} (relative)")


def run(widths, seeds, batches, repeat, say):
    torch.set_num_threads(1)
    hmat.set_num_threads(1)
    prob = get_problem("poisson1d")
    rows = []
    for width in widths:
        for seed in seeds:
            dense = make_model(prob, width, 4, seed=seed)
            t0 = time.perf_counter()
            train(dense, prob, adam_steps=1000, lbfgs_steps=1000, lr=1e-3, n_collocation=256,
                  n_boundary=2, seed=seed, progress=False)
            l2 = float(evaluate(dense, prob, metrics=["l2"])["l2"])
            fixed = dense_forms(dense)
            say(f"width {width} seed {seed}: dense trained in {time.perf_counter() - t0:.1f} s, L2 {l2:.2e}")
            for budget in BUDGETS:
                nets, info = {}, {}
                for m in ("hmatrix", "svd", "prune"):
                    kw = dict(leaf_size=8) if m == "hmatrix" else {}
                    nets[m], info[m] = compress(dense, m, budget=budget, **kw)
                missing = [m for m in nets if nets[m] is None]
                if missing:
                    say(f"  w {width} s {seed} budget {budget}: {', '.join(missing)} cannot meet the budget; skipped")
                    continue
                check_layers(nets)
                fns = {**fixed, **budget_forms(nets)}
                H_layers = nets["hmatrix"].layers[1:-1]
                for batch in batches:
                    x = torch.rand(batch, 1, generator=torch.Generator().manual_seed(batch))
                    calls = {k: (lambda f=fns[k]: f(x)) for k in METHODS}
                    with torch.no_grad():
                        ref = dense(x)
                        out = {k: calls[k]().float() for k in METHODS}
                        err = {k: float((out[k] - ref).norm() / ref.norm()) for k in METHODS}
                        same_function(out)
                        inner = max(1, int(2e-3 / max(interleaved_median({"d": calls["dense"]}, 3)["d"], 1e-7)))
                        t = interleaved_median(calls, repeat, inner=inner)
                    row = dict(width=width, seed=seed, budget=budget, batch=batch, dense_l2=l2,
                               seconds=t, speedup={k: t["dense"] / t[k] for k in METHODS},
                               output_error=err, inner=inner,
                               bytes_fraction={m: info[m]["fraction"] for m in nets},
                               h_leaves=[L.num_leaves for L in H_layers],
                               h_bytes=hidden_bytes(nets["hmatrix"]), load_average=os.getloadavg())
                    rows.append(row)
                    say(f"  w {width} s {seed} budget {budget:<4} batch {batch:<5} dense "
                        f"{t['dense'] * 1e6:8.1f} us | "
                        + " | ".join(f"{k} {row['speedup'][k]:5.2f}x" for k in METHODS[1:]))
    return rows


def summary(rows, widths, batches, say):
    """Median [min, max] over seeds of the speed-up (dense time / method time)."""
    say("\nspeed-up over dense (dense time / method time), median [min, max] over seeds; > 1 = faster")
    for width in widths:
        for batch in batches:
            for budget in BUDGETS:
                sel = [r for r in rows if r["width"] == width and r["batch"] == batch and r["budget"] == budget]
                if not sel:
                    continue
                parts = []
                for k in METHODS[1:]:
                    v = [r["speedup"][k] for r in sel]
                    parts.append(f"{k} {statistics.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]")
                say(f"w {width:<4} batch {batch:<5} budget {budget:<4}: " + " | ".join(parts))


def plot(rows, widths, batches, path):
    """Speed-up over dense vs budget, one panel per (width, batch), median and range over seeds."""
    import matplotlib

    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(widths), len(batches), figsize=(4 * len(batches), 3.2 * len(widths)),
                             squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    for i, width in enumerate(widths):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            for c, k in enumerate(METHODS[1:]):
                xs, med, lo, hi = [], [], [], []
                for budget in BUDGETS:
                    v = [r["speedup"][k] for r in rows
                         if r["width"] == width and r["batch"] == batch and r["budget"] == budget]
                    if not v:
                        continue
                    xs.append(budget)
                    med.append(statistics.median(v))
                    lo.append(med[-1] - min(v))
                    hi.append(max(v) - med[-1])
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=2, color=colours(c), label=k)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set(xscale="log", yscale="log", title=f"width {width}, batch {batch}", xlabel="byte budget")
            ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS], minor=False)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            if j == 0:
                ax.set_ylabel("speed-up over dense")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="64,128")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batches", default="1,256,4096")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default=None, help="directory for results.json and results.txt")
    a = ap.parse_args(argv)
    try:
        widths, seeds, batches = ([int(v) for v in s.split(",")] for s in (a.widths, a.seeds, a.batches))
    except ValueError as e:
        ap.error(f"--widths/--seeds/--batches: comma-separated integers ({e})")
    if a.repeat < 1 or min(widths + batches) < 1 or min(seeds) < 0:
        ap.error("--repeat, --widths and --batches must be >= 1, --seeds >= 0")
    out = Transcript()
    out.say(f"# {' '.join(sys.argv)}\n# {machine()}\n# torch {torch.__version__}, 1 thread, float32, no grad")
    rows = run(widths, seeds, batches, a.repeat, out.say)
    summary(rows, widths, batches, out.say)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        for name, text in (("results.json", json.dumps({"machine": machine(), "command": " ".join(sys.argv),
                                                         "torch": torch.__version__, "rows": rows}, indent=1)),
                           ("results.txt", "\n".join(out) + "\n")):
            tmp = os.path.join(a.out, f".{name}.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(a.out, name))
        try:
            plot(rows, widths, batches, os.path.join(a.out, "speedup.png"))
        except ImportError:
            out.say("(matplotlib not installed: no plot)")


if __name__ == "__main__":
    main()
