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


def _compare_parser(sub):
    from .studies.pinn_compare import STUDY_METHODS

    c = sub.add_parser(
        "compare", help="the comparison study (writes results.json, report.md, plots)",
        description="The PINN compression study. Without options: the README's small default "
                    "(one PDE, one seed, ~1-2 min); --full: the study of issue 10 (3 PDEs, "
                    "3-5 seeds, lr sweep; hours). Options given explicitly override the "
                    "chosen config.")
    c.add_argument("--full", action="store_true", help="the full study (config 'full')")
    c.add_argument("--config", default=None,
                   help="a named config (default, full) or a JSON file of config keys")
    c.add_argument("--pde", default=None,
                   help="comma-separated PDE names (poisson1d, poisson2d, burgers1d, helmholtz2d, "
                        "allencahn1d, heat1d)")
    c.add_argument("--width", type=int, default=None)
    c.add_argument("--depth", type=int, default=None)
    c.add_argument("--budgets", default=None, help="fractions of the dense bytes, e.g. 0.5,0.25")
    c.add_argument("--seeds", default=None)
    c.add_argument("--methods", default=None, help="subset of: " + ", ".join(STUDY_METHODS))
    c.add_argument("--out", default="results/study")
    c.add_argument("--adam-steps", type=int, default=None)
    c.add_argument("--lbfgs-steps", type=int, default=None)
    c.add_argument("--finetune-steps", type=int, default=None)
    c.add_argument("--finetune-lbfgs-steps", type=int, default=None)
    c.add_argument("--n-collocation", type=int, default=None)
    c.add_argument("--leaf-size", type=int, default=None)
    c.add_argument("--lr", type=float, default=None, help="Adam lr without a sweep")
    c.add_argument("--reorder", default=None,
                   choices=["none", "spectral-weight", "spectral-activation"])
    c.add_argument("--dynamic-tol", type=float, default=None)
    c.add_argument("--ntk-points", type=int, nargs=2, default=None, metavar=("N_B", "N_R"),
                   help="boundary and residual points of the NTK")
    c.add_argument("--device", default=None, help="torch device for training: cpu or cuda")
    c.add_argument("--resume", action="store_true",
                   help="keep the units already in OUT/results.json (same config and code)")
    c.add_argument("--workers", type=int, default=1, help="worker processes (1 or 2)")
    c.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (default 1: a second thread does not pay for "
                        "these small networks and thrashes on a busy machine)")
    c.add_argument("--no-plots", action="store_true")
    c.add_argument("--report-only", action="store_true",
                   help="only rewrite report.md and the plots from OUT/results.json")
    c.add_argument("--no-progress", action="store_true")
    return c


def _compare_config(a):
    """The study config from the parsed options (ValueError on bad input)."""
    from .studies.pinn_compare import CONFIGS

    name = "full" if a.full else (a.config or "default")
    if a.full and a.config:
        raise ValueError("give --full or --config, not both")
    if name in CONFIGS:
        cfg = dict(CONFIGS[name])
    else:
        import json

        try:
            with open(name, encoding="utf-8") as fh:
                over = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {name!r} is neither a named config "
                             f"({', '.join(CONFIGS)}) nor a readable JSON file: {e}") from e
        if not isinstance(over, dict):
            raise ValueError(f"--config {name!r}: the JSON file must hold an object of config keys")
        cfg = dict(CONFIGS["default"])
        cfg.update(over)
    for opt, key, conv in (("pde", "pdes", _strs), ("budgets", "budgets", _floats),
                           ("seeds", "seeds", _ints), ("methods", "methods", _strs)):
        v = getattr(a, opt)
        if v is not None:
            try:
                cfg[key] = conv(v)
            except ValueError as e:
                raise ValueError(f"--{opt} {v!r}: {e}") from e
            if not cfg[key]:
                raise ValueError(f"--{opt} must not be empty")
    for opt in ("width", "depth", "adam_steps", "lbfgs_steps", "finetune_steps",
                "finetune_lbfgs_steps", "n_collocation", "leaf_size", "lr", "reorder",
                "dynamic_tol", "device"):
        v = getattr(a, opt)
        if v is not None:
            cfg[opt] = v
            if opt in ("adam_steps", "lbfgs_steps", "finetune_steps", "finetune_lbfgs_steps",
                       "n_collocation", "lr") and cfg.get("per_pde"):
                # an explicit option wins over the per-PDE settings of the config
                cfg["per_pde"] = {p: {k: w for k, w in d.items() if k != opt}
                                  for p, d in cfg["per_pde"].items()}
    if a.pde is not None and cfg.get("per_pde"):  # settings of the PDEs asked for
        from .problems import get_problem

        names = set()
        for p in cfg["pdes"]:
            try:
                names.add(get_problem(p).name)
            except ValueError:
                pass  # reported by check_config
        cfg["per_pde"] = {p: d for p, d in cfg["per_pde"].items() if p in names}
    if a.seeds is not None and cfg.get("per_pde"):
        cfg["per_pde"] = {p: {k: w for k, w in d.items() if k != "seeds"}
                          for p, d in cfg["per_pde"].items()}
    if a.lr is not None:
        cfg["lr_sweep"] = cfg["lr_sweep_finetune"] = None
        cfg["lr_finetune"] = a.lr
    if a.ntk_points:
        cfg["ntk_boundary"], cfg["ntk_residual"] = a.ntk_points
    return cfg


def _run_compare(a, ap, argv):
    import os
    import time

    from .studies.pinn_compare import check_config, check_out, load_results, run_study

    if a.report_only:
        from .report import write_pinn_report

        try:
            res = load_results(os.path.join(a.out, "results.json"))
            paths = write_pinn_report(res, a.out, plots=not a.no_plots)
        except (ValueError, OSError) as e:
            ap.error(str(e))
        print("wrote " + ", ".join(paths))
        return res
    try:
        if a.threads < 1:
            raise ValueError(f"--threads must be an integer >= 1, got {a.threads}")
        if a.workers not in (1, 2):
            raise ValueError(f"--workers must be 1 or 2, got {a.workers}")
        cfg = check_config(_compare_config(a))
        check_out(a.out)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    print(f"pinn compare: torch threads {torch.get_num_threads()} x {a.workers} worker(s), "
          f"load average {tuple(round(v, 2) for v in load0)} (1, 5, 15 min), "
          f"{os.cpu_count()} CPUs", flush=True)
    t0 = time.perf_counter()
    try:
        res = run_study(cfg, out=a.out, resume=a.resume, workers=a.workers, threads=a.threads,
                        progress=not a.no_progress, plots=not a.no_plots,
                        command="python -m pinn compare " + " ".join(argv[1:]))
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {a.out}/report.md, {a.out}/results.json ({time.perf_counter() - t0:.1f} s; "
          f"load average at the end {tuple(round(v, 2) for v in os.getloadavg())})")
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["operator"]:
        from .studies.operator import main as operator_main

        return operator_main(argv[1:])

    ap = argparse.ArgumentParser(prog="python -m pinn",
                                 description="PINNs with H-matrix compressed layers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _compare_parser(sub)

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
    if a.cmd == "compare":
        _run_compare(a, ap, argv)
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
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
