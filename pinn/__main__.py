"""Command line: ``python -m pinn compare ...`` (the study), ``python -m pinn train ...`` and
``python -m pinn operator ...`` (operator learning on grids, :mod:`pinn.operator_study`)."""
from __future__ import annotations

import argparse
import sys

import torch


def _floats(s):
    return [float(v) for v in s.replace(",", " ").split()]


def _ints(s):
    return [int(v) for v in s.replace(",", " ").split()]


def _strs(s):
    return [v for v in s.replace(",", " ").split() if v]


def main(argv=None):
    from .report import DEFAULT_CONFIG, STUDY_METHODS, run_study

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["operator"]:
        from .operator_study import main as operator_main

        return operator_main(argv[1:])

    ap = argparse.ArgumentParser(prog="python -m pinn",
                                 description="PINNs with H-matrix compressed layers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="the comparison study (writes results.json, report.md, plots)")
    c.add_argument("--pde", default=",".join(DEFAULT_CONFIG["pdes"]),
                   help="comma-separated PDE names (poisson1d, poisson2d, burgers1d, helmholtz2d, "
                        "allencahn1d, heat1d)")
    c.add_argument("--width", type=int, default=DEFAULT_CONFIG["width"])
    c.add_argument("--depth", type=int, default=DEFAULT_CONFIG["depth"])
    c.add_argument("--budgets", default=",".join(map(str, DEFAULT_CONFIG["budgets"])))
    c.add_argument("--seeds", default=",".join(map(str, DEFAULT_CONFIG["seeds"])))
    c.add_argument("--methods", default=",".join(STUDY_METHODS))
    c.add_argument("--out", default="results/study")
    c.add_argument("--adam-steps", type=int, default=DEFAULT_CONFIG["adam_steps"])
    c.add_argument("--lbfgs-steps", type=int, default=DEFAULT_CONFIG["lbfgs_steps"])
    c.add_argument("--finetune-steps", type=int, default=DEFAULT_CONFIG["finetune_steps"])
    c.add_argument("--finetune-lbfgs-steps", type=int,
                   default=DEFAULT_CONFIG["finetune_lbfgs_steps"])
    c.add_argument("--n-collocation", type=int, default=None)
    c.add_argument("--leaf-size", type=int, default=DEFAULT_CONFIG["leaf_size"])
    c.add_argument("--reorder", default="none",
                   choices=["none", "spectral-weight", "spectral-activation"])
    c.add_argument("--dynamic-tol", type=float, default=DEFAULT_CONFIG["dynamic_tol"])
    c.add_argument("--ntk-points", type=int, nargs=2, default=None, metavar=("N_B", "N_R"),
                   help="boundary and residual points of the NTK (default 32 64)")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--no-progress", action="store_true")

    sub.add_parser("operator", add_help=False,
                   help="operator learning on grids: geometry-aware H-layers vs dense, SVD, "
                        "pruning (see python -m pinn operator --help)")
    t = sub.add_parser("train", help="train a dense network at the problem's default settings")
    t.add_argument("--pde", required=True)
    t.add_argument("--width", type=int, default=None)
    t.add_argument("--depth", type=int, default=None)
    t.add_argument("--adam-steps", type=int, default=None)
    t.add_argument("--lbfgs-steps", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--float64", action="store_true")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.cmd == "compare":
        try:
            cfg = dict(pdes=_strs(a.pde), width=a.width, depth=a.depth, budgets=_floats(a.budgets),
                       seeds=_ints(a.seeds), methods=_strs(a.methods), adam_steps=a.adam_steps,
                       lbfgs_steps=a.lbfgs_steps, finetune_steps=a.finetune_steps,
                       finetune_lbfgs_steps=a.finetune_lbfgs_steps,
                       n_collocation=a.n_collocation, leaf_size=a.leaf_size, reorder=a.reorder,
                       dynamic_tol=a.dynamic_tol, progress=not a.no_progress)
            if a.ntk_points:
                cfg["ntk_boundary"], cfg["ntk_residual"] = a.ntk_points
            res = run_study(cfg, out=a.out)
        except ValueError as e:
            ap.error(str(e))
        print(f"wrote {a.out}/report.md, {a.out}/results.json ({res['wall_time']:.1f} s)")
        return 0
    from .problems import get_problem
    from .train import make_model, train

    try:
        prob = get_problem(a.pde)
    except ValueError as e:
        ap.error(str(e))
    dtype = torch.float64 if a.float64 else torch.float32
    model = make_model(prob, a.width, a.depth, seed=a.seed, dtype=dtype)
    h = train(model, prob, adam_steps=a.adam_steps, lbfgs_steps=a.lbfgs_steps, seed=a.seed,
              progress=not a.no_progress, eval_every=500)
    print(f"{prob!r}: width={model.sizes[1]} depth={len(model.sizes) - 2} dtype={dtype} "
          f"L2 error {h['final_l2']:.3e}, train time {h['train_time']:.1f} s, "
          f"final loss {h['loss'][-1]:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
