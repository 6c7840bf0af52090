"""Where the time of a dynamic-H training goes: one Burgers1D network at the full study's
settings (width 64, depth 4, 6000 collocation points, budget 0.25), fewer steps, one torch
thread; the dense network is trained first with the same steps for the ratio.

Usage: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/pinn_study_speed/profile_dynamic.py ADAM LBFGS``
(raw output of one run: ``profile_dynamic_burgers.txt`` next to this file).
"""
import cProfile
import io
import pstats
import sys
import time

import torch

from pinn.assembled import assembled_forward
from pinn.compress import compress, dense_hidden_bytes
from pinn.dynamic import DynamicHCompression
from pinn.problems import get_problem
from pinn.studies.pinn_compare import FULL_CONFIG, adam_optimizer, resolve_config
from pinn.train import make_model, train


def main(adam, lbfgs):
    torch.set_num_threads(1)
    cfg = FULL_CONFIG
    pc = resolve_config(cfg, "burgers1d")
    prob = get_problem("burgers1d")

    def run(model, callbacks=()):
        with assembled_forward(model):
            train(model, prob, adam_steps=adam, lbfgs_steps=lbfgs, lr=1e-3, n_collocation=pc["n_collocation"],
                  n_boundary=pc["n_boundary"], seed=0, callbacks=callbacks, progress=False,
                  eval_every=cfg["eval_every"], optimizer=adam_optimizer(1e-3, cfg["adam_fused"]))

    dense = make_model(prob, cfg["width"], cfg["depth"], seed=0)
    t = time.perf_counter()
    run(dense)
    td = time.perf_counter() - t
    init = make_model(prob, cfg["width"], cfg["depth"], seed=0)
    hm, _ = compress(init, "hmatrix", budget=0.25, leaf_size=cfg["leaf_size"])
    cb = DynamicHCompression(cfg["dynamic_tol"], every=cfg["dynamic_every"],
                             budget_bytes=int(0.25 * dense_hidden_bytes(dense)))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    run(hm, [cb])
    prof.disable()
    th = time.perf_counter() - t
    print(f"dense train {td:.1f} s, dynamic-H train {th:.1f} s (ratio {th / td:.2f}), steps adam {adam} lbfgs {lbfgs}")
    for key, n in (("cumulative", 35), ("tottime", 25)):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(key).print_stats(n)
        print(s.getvalue())


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
