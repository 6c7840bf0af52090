"""Forward time of grid-indexed layers: dense vs H (three implementations) vs low rank.

For each grid, the weight is the discrete Green's function of
``-div(a grad u) = f`` (smooth a), stored as

* ``dense``    : ``nn.Linear`` (torch, MKL gemm),
* ``H torch``  : :class:`pinn.HMatrixLinear` forward (the training path: one small
                 matmul per leaf in Python, custom autograd),
* ``H grouped``: :class:`pinn.geometric.GroupedHForward` (leaves of equal shape
                 stacked: one gather + bmm + index_add per shape group),
* ``H hmat``   : ``hmat.HBlock @ X`` (compiled packed-leaf matmat, numba),
* ``lowrank``  : ``LowRankLinear`` at the same storage as the H-matrix,

all float32, the H-matrix = the Frobenius-best projection of G onto the geometric
block structure (leaf size, eta, rank as given). Times are medians over
interleaved repeats in one process, reported with the ratio to dense measured in
the same run.

With ``--device cuda`` the torch layers run on the GPU (times synchronised) and
``H hmat`` is ``hmat``'s CuPy backend (``hmat.backend.to_cupy``: three CSR
matrices).

Usage: ``python benchmarks/operator.py [--quick] [--device cpu|cuda] [--out FILE.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import interleaved_median  # noqa: E402
from pinn.geometric import GroupedHForward, geometric_hmatrix_linear  # noqa: E402
from pinn.layers import LowRankLinear  # noqa: E402
from pinn.problems.elliptic_operator import EllipticOperatorProblem  # noqa: E402

CASES = [  # dim, n, leaf_size, eta, rank
    (1, 256, 16, 1.0, 1), (1, 1024, 16, 1.0, 1), (1, 4096, 32, 1.0, 1),
    (2, 1024, 16, 2.0, 4), (2, 4096, 32, 2.0, 4),
]


def run(cases, batches, repeat, device="cpu"):
    import hmat

    torch.set_num_threads(1)
    hmat.set_num_threads(1)  # single thread for every implementation
    dev = torch.device(device)
    if dev.type == "cuda":
        import cupy

        from hmat import backend

        def sync():
            torch.cuda.synchronize()
            cupy.cuda.get_current_stream().synchronize()
    else:
        def sync():
            pass
    rows = []
    for dim, n, leaf, eta, rank in cases:
        p = EllipticOperatorProblem(dim, n, "smooth")
        G = p.green()
        H = geometric_hmatrix_linear(p.points, p.points, leaf_size=leaf, eta=eta, rank=rank, init=G,
                                     dtype=torch.float32, bias=False)
        Hop = H.operator().astype(np.float32)
        if dev.type == "cuda":
            Hop = backend.to_cupy(Hop)
        H = H.to(dev)
        grouped = GroupedHForward(H)
        lin = torch.nn.Linear(n, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(G, dtype=torch.float32))
        k = int(H.nbytes // (4 * 2 * n))
        s = np.linalg.svd(G, compute_uv=False)  # the error needs only singular values;
        lr = LowRankLinear(n, n, k, bias=False, dtype=torch.float32)  # timing: any rank-k factors
        lin, lr = lin.to(dev), lr.to(dev)
        Gn = np.linalg.norm(G)
        err_h = float(np.linalg.norm(H.operator().to_dense() - G) / Gn)
        err_lr = float(np.sqrt(np.sum(s[k:] ** 2)) / np.linalg.norm(s))
        for b in batches:
            x = torch.randn(b, n)
            X = np.ascontiguousarray(x.numpy().T)
            if dev.type == "cuda":
                X = cupy.asarray(X)
            x = x.to(dev)
            with torch.no_grad():
                fns = {"dense": lambda: lin(x), "H torch": lambda: H(x),
                       "H grouped": lambda: grouped(x), "H hmat": lambda: Hop @ X,
                       "lowrank": lambda: lr(x)}
                t = interleaved_median(fns, repeat, sync)
            row = dict(dim=dim, n=n, grid=(f"{n}" if dim == 1 else f"{p.m}x{p.m}"), leaf_size=leaf,
                       eta=eta, rank=rank, leaves=H.num_leaves, groups=grouped.num_groups, batch=b,
                       h_bytes_ratio=H.nbytes / (4 * n * n), lowrank_rank=k, h_green_error=err_h,
                       lowrank_green_error=err_lr, times=t, device=str(dev))
            rows.append(row)
            print(f"{row['grid']:>7} b={b:<3} leaves {H.num_leaves:5d} groups {grouped.num_groups:2d} "
                  f"H/dense bytes {row['h_bytes_ratio']:.3f} | dense {t['dense'] * 1e3:8.2f} ms | "
                  + " | ".join(f"{k} {t[k] * 1e3:8.2f} ms ({t['dense'] / t[k]:5.2f}x)"
                               for k in ("H torch", "H grouped", "H hmat", "lowrank")), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the 1-D n=256 and 1024 cases")
    ap.add_argument("--cases", default=None,
                    help="indices into CASES, comma-separated (default: all)")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None, help="PNG of forward time vs n (needs matplotlib)")
    a = ap.parse_args(argv)
    cases = CASES[:2] if a.quick else CASES
    if a.cases:
        cases = [CASES[int(i)] for i in a.cases.split(",")]
    batches = [int(v) for v in a.batches.split(",")]
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    rows = run(cases, batches, a.repeat, a.device)
    if a.out:
        info = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average": os.getloadavg(),
                "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": 1,
                "device": a.device, "gpu": (torch.cuda.get_device_name() if
                                            a.device.startswith("cuda") else None),
                "command": "python benchmarks/operator.py " + " ".join(sys.argv[1:] if argv is None else argv)}
        with open(a.out, "w") as fh:
            json.dump({"machine": info, "rows": rows}, fh, indent=1)
    if a.plot:
        plot(rows, a.plot)
    return 0


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.4), dpi=80, squeeze=False)
    for ax, b in zip(axes[0], batches):
        rs = [r for r in rows if r["batch"] == b]
        labels = [r["grid"] + ("" if r["dim"] == 1 else " (2-D)") for r in rs]
        xs = np.arange(len(rs))
        for j, k in enumerate(("dense", "H torch", "H grouped", "H hmat", "lowrank")):
            ax.bar(xs + (j - 2) * 0.16, [r["times"][k] * 1e3 for r in rs], 0.16, label=k)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("forward ms (median)")
        where = rs[0].get("device", "cpu")
        ax.set_title(f"batch {b}, float32, " + ("1 thread" if where == "cpu" else where),
                     fontsize=9)
        ax.grid(True, axis="y", lw=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
