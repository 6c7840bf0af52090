"""Per-step training time of the full study's networks (width 64, depth 4), with the
H- and low-rank layers applied leaf by leaf (``h_forward="leaves"``) and through their
assembled weight (``"assembled"``, :mod:`pinn.assembled`), interleaved A/B, one torch
thread. Usage (repository root): ``OMP_NUM_THREADS=1 PYTHONPATH=. python
benchmarks/pinn_study_speed/step_time.py [PDE ...]``. Prints one line per network and
the load average before and after."""
import contextlib
import os
import sys
import time

import torch

from pinn.assembled import assembled_forward
from pinn.compress import clone_model, compress, dense_hidden_bytes
from pinn.studies.pinn_compare import FULL_CONFIG, _lowrank_scratch, resolve_config
from pinn.problems import get_problem
from pinn.train import make_model, train

torch.set_num_threads(1)
STEPS = 20


def step_ms(model, prob, pc, assembled):
    ctx = assembled_forward(model) if assembled else contextlib.nullcontext()
    with ctx:
        h = train(model, prob, adam_steps=STEPS, lbfgs_steps=0, lr=1e-3,
                  n_collocation=pc["n_collocation"], n_boundary=pc["n_boundary"], seed=0,
                  progress=False, eval_every=0)
    return 1e3 * h["train_time"] / STEPS, h["loss"][-1]


for pde in sys.argv[1:] or ["poisson1d", "burgers1d"]:
    prob = get_problem(pde)
    pc = resolve_config(FULL_CONFIG, pde)
    dense = make_model(prob, 64, 4, seed=0)
    db = dense_hidden_bytes(dense)
    nets = [("dense", dense)]
    for b in (0.5, 0.1):
        nets.append((f"hmatrix {b}", compress(dense, "hmatrix", budget=b, leaf_size=8)[0]))
        nets.append((f"hmatrix-dynamic init {b}",
                     compress(make_model(prob, 64, 4, seed=0), "hmatrix", budget=b,
                              leaf_size=8)[0]))
        nets.append((f"svd {b}", compress(dense, "svd", budget=b)[0]))
        nets.append((f"lowrank-scratch {b}", _lowrank_scratch(prob, 64, 4, 0, b * db)[0]))
    print(f"{pde}: {pc['n_collocation']} collocation points; load {os.getloadavg()}", flush=True)
    step_ms(clone_model(dense), prob, pc, False)  # warm-up
    for name, net in nets:
        a = step_ms(clone_model(net), prob, pc, False)
        b = step_ms(clone_model(net), prob, pc, True)
        a2 = step_ms(clone_model(net), prob, pc, False)
        b2 = step_ms(clone_model(net), prob, pc, True)
        leaves, asm = min(a[0], a2[0]), min(b[0], b2[0])
        print(f"  {name:26s} Adam step ms: leaves {leaves:7.1f}  assembled {asm:7.1f}  "
              f"ratio {leaves / asm:4.1f}   loss after {STEPS} steps {a[1]:.6e} / {b[1]:.6e}",
              flush=True)
    print(f"  load after {os.getloadavg()}", flush=True)
