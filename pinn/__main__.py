"""Command line: ``python -m pinn compare ...`` (the study), ``python -m pinn train ...`` and
``python -m pinn operator ...`` (operator learning on grids, :mod:`pinn.operator_study`)."""
from __future__ import annotations

import argparse
import os
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
                   help="keep the units already in OUT/results.json (PDE by PDE: same settings; "
                        "same code unless the PDE is complete)")
    c.add_argument("--restart-pde", default=None,
                   help="with --resume: comma-separated PDEs whose records are dropped and "
                        "run again (after a change of their settings or of the code)")
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
        restart = _strs(a.restart_pde) if a.restart_pde is not None else ()
        res = run_study(cfg, out=a.out, resume=a.resume, restart=restart, workers=a.workers,
                        threads=a.threads,
                        progress=not a.no_progress, plots=not a.no_plots,
                        command="python -m pinn compare " + " ".join(argv[1:]))
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {a.out}/report.md, {a.out}/results.json ({time.perf_counter() - t0:.1f} s; "
          f"load average at the end {tuple(round(v, 2) for v in os.getloadavg())})")
    return res


# ------------------------------------------------------------------------------ train
class _TrainCLIError(Exception):
    """A bad ``python -m pinn train`` argument (reported as one line, exit code 2)."""


def _cli_int(name, s, minimum):
    try:
        v = int(s)
    except (TypeError, ValueError):
        raise _TrainCLIError(f"{name} must be an integer >= {minimum}, got {s!r}") from None
    if v < minimum:
        raise _TrainCLIError(f"{name} must be an integer >= {minimum}, got {s!r}")
    return v


def _cli_widths(s):
    parts = _strs(s)
    if not parts:
        raise _TrainCLIError(f"--width must be a positive integer or a list like 20,40,20, "
                             f"got {s!r}")
    w = [_cli_int("--width", p, 1) for p in parts]
    return w[0] if len(w) == 1 else w


def _cli_weights(s):
    out = {}
    for item in _strs(s):
        k, sep, v = item.partition("=")
        try:
            val = float(v)
        except ValueError:
            val = float("nan")
        if not sep or not k or not (val >= 0 and val < float("inf")):
            raise _TrainCLIError(f"--loss-weights must be term=weight pairs with finite weights "
                                 f">= 0 (e.g. pde=1,bc=10), got {item!r}")
        out[k] = val
    return out


def train_parser():
    """The argument parser of ``python -m pinn train``."""
    from .layers import ACTIVATIONS, INITIALIZERS
    from .train import OPTIMIZERS

    t = argparse.ArgumentParser(
        prog="python -m pinn train",
        description="Train a dense PINN on a built-in problem; with --out, write the model "
                    "(model.pt), history.json, run.json (settings and metrics) and plots.")
    t.add_argument("--pde", required=True,
                   help="poisson1d, poisson2d, burgers1d, helmholtz2d, allencahn1d, heat1d")
    t.add_argument("--width", default=None,
                   help="neurons per hidden layer, or one width per layer (20,40,20)")
    t.add_argument("--depth", default=None, help="hidden layers (with a single --width)")
    t.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    t.add_argument("--initializer", default="glorot_normal", choices=list(INITIALIZERS))
    t.add_argument("--adam-steps", default=None, help="first-phase optimizer steps")
    t.add_argument("--lbfgs-steps", default=None)
    t.add_argument("--lr", default=None, help="first-phase learning rate")
    t.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS),
                   help="first-phase optimizer")
    t.add_argument("--lbfgs-history", default=None, help="L-BFGS history size")
    t.add_argument("--n-collocation", default=None)
    t.add_argument("--n-boundary", default=None, help="boundary-condition points")
    t.add_argument("--n-initial", default=None,
                   help="initial-condition points (time-dependent problems; then "
                        "--n-boundary counts the boundary points only)")
    t.add_argument("--sampler", default="sobol", choices=["sobol", "uniform", "grid"])
    t.add_argument("--loss-weights", default=None, help="e.g. pde=1,bc=10")
    t.add_argument("--reference", default=None,
                   help="reference data .npz (x, y or DeepXDE's x, t, usol) for the metrics")
    t.add_argument("--seed", default="0")
    t.add_argument("--float64", action="store_true")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default cpu)")
    t.add_argument("--threads", default=None)
    t.add_argument("--eval-every", default="500", help="test error every this many steps")
    t.add_argument("--log-every", default=None, help="print a log line every this many steps")
    t.add_argument("--restart", default=None,
                   help="continue training from the weights in a model.pt written by --out "
                        "(a fresh optimizer; exact restarts: pinn.callbacks.Checkpoint)")
    t.add_argument("--out", default=None,
                   help="directory for model.pt, history.json, run.json, solution.png, "
                        "history.png")
    t.add_argument("--no-plots", action="store_true")
    t.add_argument("--no-progress", action="store_true")
    return t


def _train_settings(a):
    """Validated settings from parsed arguments (raises _TrainCLIError)."""
    from .problems import get_problem

    s = {}
    for key in ("adam_steps", "lbfgs_steps", "eval_every"):
        v = getattr(a, key)
        s[key] = None if v is None else _cli_int("--" + key.replace("_", "-"), v, 0)
    for key in ("depth", "n_collocation", "n_boundary", "n_initial", "threads", "log_every",
                "lbfgs_history"):
        v = getattr(a, key)
        s[key] = None if v is None else _cli_int("--" + key.replace("_", "-"), v, 1)
    s["seed"] = _cli_int("--seed", a.seed, 0)
    s["width"] = None if a.width is None else _cli_widths(a.width)
    if isinstance(s["width"], list) and s["depth"] not in (None, len(s["width"])):
        raise _TrainCLIError(f"--depth ({s['depth']}) must equal the number of --width "
                             f"entries ({len(s['width'])})")
    s["lr"] = None
    if a.lr is not None:
        try:
            s["lr"] = float(a.lr)
        except ValueError:
            s["lr"] = float("nan")
        if not (s["lr"] > 0 and s["lr"] < float("inf")):
            raise _TrainCLIError(f"--lr must be a finite number > 0, got {a.lr!r}")
    s["loss_weights"] = None if a.loss_weights is None else _cli_weights(a.loss_weights)
    s["device"] = None
    if a.device is not None:
        from .train import resolve_device

        try:
            s["device"] = str(resolve_device(a.device))
        except ValueError as e:
            raise _TrainCLIError(f"--device: {e}") from None
    kwargs = {}
    try:
        prob = get_problem(a.pde)
        if s["n_initial"] is not None:
            if not prob.time_dependent:
                raise _TrainCLIError(f"--n-initial: {a.pde} has no initial condition")
            prob = get_problem(a.pde, n_initial=s["n_initial"])
            kwargs["n_initial"] = s["n_initial"]
        d = prob.defaults
        prob.make_batch(s["n_collocation"] or d["n_collocation"],
                        s["n_boundary"] or d["n_boundary"], a.sampler, 0)  # counts check
    except ValueError as e:
        raise _TrainCLIError(str(e)) from None
    s["problem"] = {"name": prob.name, "kwargs": kwargs}
    if a.reference is not None:
        from .metrics import load_reference

        try:
            s["reference_data"] = load_reference(a.reference)
        except ValueError as e:
            raise _TrainCLIError(f"--reference: {e}") from None
        if s["reference_data"][0].shape[1] != prob.dim:
            raise _TrainCLIError(f"--reference: points have {s['reference_data'][0].shape[1]} "
                                 f"coordinates, {a.pde} has {prob.dim}")
    if a.out is not None:
        if os.path.exists(a.out) and not os.path.isdir(a.out):
            raise _TrainCLIError(f"--out {a.out!r} exists and is not a directory")
        try:
            os.makedirs(a.out, exist_ok=True)
        except OSError as e:
            raise _TrainCLIError(f"--out {a.out!r}: cannot create the directory ({e.strerror})") \
                from None
    return prob, s


def train_main(argv):
    """``python -m pinn train ...``: returns the exit code (2 with one line on bad input)."""
    from . import callbacks as cbs
    from ._files import write_json_atomic
    from .io import load, save
    from .metrics import errors
    from .models import make_model, predict
    from .train import train

    ap = train_parser()

    def fail(msg):
        print(f"python -m pinn train: error: {msg}", file=sys.stderr)
        return 2

    def one_line_error(msg):
        raise _TrainCLIError(msg)

    ap.error = one_line_error
    try:
        a = ap.parse_args(argv)
        prob, s = _train_settings(a)
    except _TrainCLIError as e:
        return fail(e)
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    dtype = torch.float64 if a.float64 else torch.float32
    callbacks = []
    restored_step = 0  # steps done before a --restart
    try:
        if a.restart is not None:
            model, prob_saved, info = load(a.restart)
            if prob_saved.name != prob.name or model.sizes[0] != prob.dim:
                return fail(f"--restart: {a.restart} holds a model of {prob_saved!r}, not "
                            f"{a.pde}")
            model = model.to(dtype)
            restored_step = info["step"] or 0
        else:
            model = make_model(prob, s["width"], s["depth"], seed=s["seed"], dtype=dtype,
                               activation=a.activation, initializer=a.initializer)
    except ValueError as e:
        return fail(e)
    if s["device"]:
        model = model.to(s["device"])
    if s["log_every"]:
        callbacks.append(cbs.LogLine(every=s["log_every"]))
    config = {"pde": s["problem"], "width": model.sizes[1:-1], "activation": a.activation,
              "initializer": a.initializer, "dtype": str(dtype), "seed": s["seed"],
              "adam_steps": s["adam_steps"], "lbfgs_steps": s["lbfgs_steps"], "lr": s["lr"],
              "optimizer": a.optimizer, "n_collocation": s["n_collocation"],
              "n_boundary": s["n_boundary"], "n_initial": s["n_initial"],
              "sampler": a.sampler, "loss_weights": s["loss_weights"],
              "device": s["device"], "restart": a.restart, "restart_step": restored_step}
    lbfgs = None if s["lbfgs_history"] is None else {"history_size": s["lbfgs_history"]}
    try:
        h = train(model, prob, adam_steps=s["adam_steps"], lbfgs_steps=s["lbfgs_steps"],
                  lr=s["lr"], optimizer=a.optimizer, lbfgs=lbfgs,
                  n_collocation=s["n_collocation"], n_boundary=s["n_boundary"],
                  sampler=a.sampler, seed=s["seed"], loss_weights=s["loss_weights"],
                  device=s["device"], callbacks=callbacks, progress=not a.no_progress,
                  eval_every=s["eval_every"])
    except ValueError as e:  # also NonFiniteLossError
        return fail(e)
    metrics = {}
    if prob.has_reference():
        x, y = prob.test_grid()
        metrics["reference"] = errors(predict(model, x), y)
    if "reference_data" in s:
        x, y = s["reference_data"]
        metrics["data"] = errors(predict(model, x), y)
    width = model.sizes[1] if len(set(model.sizes[1:-1])) == 1 else model.sizes[1:-1]
    print(f"{prob!r}: width={width} depth={len(model.sizes) - 2} dtype={dtype} "
          f"L2 error {h['final_l2']:.3e}, train time {h['train_time']:.1f} s, "
          f"final loss {h['loss'][-1]:.3e}")
    for k, m in metrics.items():
        print(f"  {k}: " + ", ".join(f"{n} {v:.3e}" for n, v in m.items()))
    if a.out is not None:
        hist = dict(h)
        step = restored_step + int(h.get("steps", len(h["step"])))
        save(os.path.join(a.out, "model.pt"), model, prob, config=config,
             history={k: v for k, v in hist.items() if isinstance(v, list)},
             optimizer=None, step=step)
        write_json_atomic(os.path.join(a.out, "history.json"), hist)
        write_json_atomic(os.path.join(a.out, "run.json"),
                          {"config": config, "metrics": metrics, "final_l2": h["final_l2"],
                           "train_time": h["train_time"], "steps": step,
                           "torch_threads": torch.get_num_threads()})
        written = ["model.pt", "history.json", "run.json"]
        if not a.no_plots:
            from .plot import have_matplotlib, plot_history, plot_solution

            if have_matplotlib():
                if prob.dim <= 2:
                    plot_solution(model, prob, os.path.join(a.out, "solution.png"))
                    written.append("solution.png")
                plot_history(h, os.path.join(a.out, "history.png"))
                written.append("history.png")
            else:
                print("  (matplotlib not installed: no plots)")
        print(f"wrote {', '.join(os.path.join(a.out, w) for w in written)}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["operator"]:
        from .studies.operator import main as operator_main

        return operator_main(argv[1:])
    if argv[:1] == ["train"]:
        return train_main(argv[1:])

    ap = argparse.ArgumentParser(prog="python -m pinn",
                                 description="PINNs with H-matrix compressed layers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _compare_parser(sub)

    sub.add_parser("operator", add_help=False,
                   help="operator learning on grids: geometry-aware H-layers vs dense, SVD, "
                        "pruning (see python -m pinn operator --help)")
    sub.add_parser("train", add_help=False,
                   help="train a dense PINN on a built-in problem (see python -m pinn train "
                        "--help)")
    a = ap.parse_args(argv)
    if a.cmd == "compare":
        _run_compare(a, ap, argv)
        return 0
    return train_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
