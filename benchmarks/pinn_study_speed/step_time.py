"""Per-step training time of the full study's networks (width 64, depth 4), as the
study trained them before (H- and low-rank layers applied leaf by leaf, per-parameter
Adam) and now (layers applied through their assembled weight, :mod:`pinn.assembled`;
torch's fused Adam), with the step in between (assembled, per-parameter Adam);
interleaved, best of two, one torch thread.

Usage (repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/pinn_study_speed/step_time.py [PDE ...]

Prints one line per network and the load average before and after (numbers under load
are inflated; the ratios of interleaved runs are what it is for)."""
import contextlib
import os
import sys
import time

import torch

from pinn.assembled import assembled_forward
from pinn.compress import clone_model, compress, dense_hidden_bytes
from pinn.problems import get_problem
from pinn.studies.pinn_compare import (FULL_CONFIG, adam_optimizer, lowrank_scratch_model,
                                      resolve_config)
from pinn.train import make_model, train

torch.set_num_threads(1)
STEPS = 20
VARIANTS = (("leaves+loop", False, False), ("assembled+loop", True, False),
            ("assembled+fused", True, True))


def step_ms(model, prob, pc, assembled, fused):
    ctx = assembled_forward(model) if assembled else contextlib.nullcontext()
    with ctx:
        h = train(model, prob, adam_steps=STEPS, lbfgs_steps=0,
                  n_collocation=pc["n_collocation"], n_boundary=pc["n_boundary"], seed=0,
                  progress=False, eval_every=0, optimizer=adam_optimizer(1e-3, fused))
    return 1e3 * h["train_time"] / STEPS, h["loss"][-1]


for pde in sys.argv[1:] or ["poisson1d", "burgers1d"]:
    prob = get_problem(pde)
    pc = resolve_config(FULL_CONFIG, pde)
    dense = make_model(prob, 64, 4, seed=0)
    db = dense_hidden_bytes(dense)
    nets = [("dense", dense),
            ("hmatrix 0.5", compress(dense, "hmatrix", budget=0.5, leaf_size=8)[0]),
            ("hmatrix 0.1", compress(dense, "hmatrix", budget=0.1, leaf_size=8)[0]),
            ("svd 0.5", compress(dense, "svd", budget=0.5)[0]),
            ("lowrank-scratch 0.5", lowrank_scratch_model(prob, 64, 4, 0, 0.5 * db)[0])]
    print(f"{pde}: {pc['n_collocation']} collocation points; load {os.getloadavg()}", flush=True)
    step_ms(clone_model(dense), prob, pc, False, False)  # warm-up
    for name, net in nets:
        best = {v[0]: (float("inf"), None) for v in VARIANTS}
        for _ in range(2):
            for label, asm, fused in VARIANTS:
                t, loss = step_ms(clone_model(net), prob, pc, asm, fused)
                best[label] = (min(best[label][0], t), loss)
        old = best["leaves+loop"][0]
        print(f"  {name:20s} Adam step ms: " + "  ".join(
            f"{k} {v[0]:7.1f}" for k, v in best.items())
            + f"   old/new {old / best['assembled+fused'][0]:4.1f}x   loss after {STEPS} steps "
            + " / ".join(f"{v[1]:.6e}" for v in best.values()), flush=True)
    print(f"  load after {os.getloadavg()}", flush=True)
