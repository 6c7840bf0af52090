"""The comparison study: dense vs H-matrix (post-hoc, fine-tuned, dynamic) vs SVD, pruning, quantization."""
from __future__ import annotations

import json
import math
import os
import platform
import time

import numpy as np
import torch

from ._files import write_json_atomic, write_text_atomic
from .compress import (clone_model, compress, count_parameters, dense_hidden_bytes, dynamic_int8,
                       hidden_bytes)
from .dynamic import DynamicHCompression
from .layers import LowRankLinear
from .ntk import ntk, ntk_compare
from .problems import get_problem
from .train import make_model, train

__all__ = ["STUDY_METHODS", "DEFAULT_CONFIG", "run_study", "write_report", "summarize"]

STUDY_METHODS = ("dense", "hmatrix", "hmatrix+finetune", "hmatrix-dynamic", "svd", "svd+finetune",
                 "prune", "prune+finetune", "quantize-int8", "quantize-int4", "lowrank-scratch")
BUDGETED = ("hmatrix", "hmatrix+finetune", "hmatrix-dynamic", "svd", "svd+finetune", "prune",
            "prune+finetune", "lowrank-scratch")

DEFAULT_CONFIG = dict(
    pdes=["poisson1d"], width=32, depth=3, budgets=[0.5, 0.25], seeds=[0],
    methods=list(STUDY_METHODS), adam_steps=1000, lbfgs_steps=300, finetune_steps=200,
    finetune_lbfgs_steps=50,
    n_collocation=None, n_boundary=None, leaf_size=8, dynamic_tol=0.05, dynamic_every=100,
    ntk_boundary=32, ntk_residual=64, reorder="none", progress=True,
)


def _time_inference(model, dim, n=10_000, repeats=5):
    p = next(model.parameters(), None)
    x = torch.rand(n, dim, dtype=torch.float32 if p is None else p.dtype)
    with torch.no_grad():
        model(x)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _check_config(cfg):
    for p in cfg["pdes"]:
        get_problem(p)
    for m in cfg["methods"]:
        if m not in STUDY_METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {STUDY_METHODS}")
    for b in cfg["budgets"]:
        if not (isinstance(b, (int, float)) and 0 < b <= 1):
            raise ValueError(f"budget must be a fraction in (0, 1], got {b!r}")
    if cfg["depth"] < 2:
        raise ValueError("depth must be >= 2 (hidden-to-hidden layers are what is compressed)")


def run_study(config=None, out=None):
    """Run the comparison study.

    Parameters
    ----------
    config : dict, optional
        Overrides of :data:`DEFAULT_CONFIG` (keys ``pdes, width, depth,
        budgets, seeds, methods, adam_steps, lbfgs_steps, finetune_steps,
        n_collocation, n_boundary, leaf_size, dynamic_tol, dynamic_every,
        ntk_boundary, ntk_residual, reorder, progress``).
    out : str, optional
        Directory for ``results.json``, ``report.md`` and plots.

    Returns
    -------
    dict with ``config``, ``records`` (one per pde x seed x method x budget)
    and ``spectra``.
    """
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    _check_config(cfg)
    methods = cfg["methods"]
    n_tasks = len(cfg["pdes"]) * len(cfg["seeds"]) * (
        1 + sum(len(cfg["budgets"]) if m in BUDGETED else 1 for m in methods if m != "dense"))
    bar = None
    if cfg["progress"]:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_tasks, desc="study")
        except ImportError:  # pragma: no cover
            bar = None
    records, spectra = [], []
    t_start = time.perf_counter()
    for pde in cfg["pdes"]:
        prob = get_problem(pde)
        d = prob.defaults
        tr = dict(adam_steps=cfg["adam_steps"], lbfgs_steps=cfg["lbfgs_steps"],
                  n_collocation=cfg["n_collocation"] or d["n_collocation"],
                  n_boundary=cfg["n_boundary"] or d["n_boundary"], progress=False,
                  eval_every=0)
        xb = prob.boundary_points(cfg["ntk_boundary"], "sobol", 123)[: cfg["ntk_boundary"]]
        xr = prob.sample_collocation(cfg["ntk_residual"], "sobol", 456)
        for seed in cfg["seeds"]:
            def rec(method, model, budget=None, train_time=0.0, info=None, K=None, extra=None):
                r = {"pde": prob.name, "seed": seed, "method": method, "budget": budget,
                     "width": cfg["width"], "depth": cfg["depth"]}
                if model is None:
                    r.update(feasible=False, note=(info or {}).get("note", "budget not reachable"))
                    records.append(r)
                    return r
                hb = hidden_bytes(model)
                r.update(feasible=True, bytes=hb, fraction=hb / dense_b,
                         parameters=count_parameters(model), l2=prob.l2_error(model),
                         train_time=train_time,
                         infer_time_10k=_time_inference(model, prob.dim))
                if info is not None:
                    r["setting"] = info.get("setting")
                    r["weight_error"] = info.get("weight_error")
                if extra:
                    r.update(extra)
                if K is not None:
                    Kt = ntk(model, prob, xb, xr)
                    cmp_ = ntk_compare(K, Kt)
                    spectra.append({"pde": prob.name, "seed": seed, "method": method,
                                    "budget": budget, "eig": cmp_.pop("eig_tilde")})
                    cmp_.pop("eig")
                    r["ntk"] = cmp_
                records.append(r)
                return r

            def tick():
                if bar is not None:
                    bar.update(1)

            # --- dense
            model = make_model(prob, cfg["width"], cfg["depth"], seed=seed)
            dense_b = dense_hidden_bytes(model)
            h = train(model, prob, seed=seed, **tr)
            K = ntk(model, prob, xb, xr)
            dense_cmp = ntk_compare(K, K)
            spectra.append({"pde": prob.name, "seed": seed, "method": "dense", "budget": None,
                            "eig": dense_cmp["eig"]})
            if "dense" in methods:
                rec("dense", model, train_time=h["train_time"],
                    extra={"ntk_cond": dense_cmp["cond"], "ntk_trace_ratio": dense_cmp["trace_ratio"]})
            tick()
            ft = dict(tr, adam_steps=cfg["finetune_steps"], lbfgs_steps=cfg["finetune_lbfgs_steps"])

            for q in ("quantize-int8", "quantize-int4"):
                if q in methods:
                    cm, info = compress(model, q)
                    extra = {}
                    if q == "quantize-int8":
                        extra["infer_time_10k_real_int8"] = _time_inference(dynamic_int8(model), prob.dim)
                    rec(q, cm, info=info, K=K, extra=extra)
                    tick()
            for b in cfg["budgets"]:
                for base in ("hmatrix", "svd", "prune"):
                    wanted = [m for m in (base, base + "+finetune") if m in methods]
                    if not wanted:
                        continue
                    kw = dict(leaf_size=cfg["leaf_size"], reorder_method=cfg["reorder"],
                              x=torch.as_tensor(xr, dtype=torch.float32)) if base == "hmatrix" else {}
                    t0 = time.perf_counter()
                    cm, info = compress(model, base, budget=b, **kw)
                    t_comp = time.perf_counter() - t0
                    if base in wanted:
                        rec(base, cm, b, info=info, K=K, extra={"compress_time": t_comp})
                        tick()
                    if base + "+finetune" in wanted:
                        if cm is None:
                            rec(base + "+finetune", None, b, info=info)
                        else:
                            fm = clone_model(cm)
                            hf = train(fm, prob, seed=seed, **ft)
                            rec(base + "+finetune", fm, b, train_time=hf["train_time"], info=info,
                                K=K)
                        tick()
                if "hmatrix-dynamic" in methods:
                    init = make_model(prob, cfg["width"], cfg["depth"], seed=seed)
                    hm, info = compress(init, "hmatrix", budget=b, leaf_size=cfg["leaf_size"])
                    if hm is None:
                        rec("hmatrix-dynamic", None, b, info=info)
                    else:
                        dyn = DynamicHCompression(cfg["dynamic_tol"], every=cfg["dynamic_every"],
                                                  budget_bytes=int(b * dense_b))
                        hd = train(hm, prob, seed=seed, callbacks=[dyn], **tr)
                        rec("hmatrix-dynamic", hm, b, train_time=hd["train_time"], info=info, K=K,
                            extra={"dynamic_log": [{k: v for k, v in e.items() if k != "ranks"}
                                                   for e in dyn.log]})
                    tick()
                if "lowrank-scratch" in methods:
                    # control for hmatrix-dynamic: a low-rank network of the same size trained
                    # from scratch with the same schedule
                    w = cfg["width"]
                    k = int(b * w * w // (2 * w))
                    if k < 1:
                        rec("lowrank-scratch", None, b)
                    else:
                        g = torch.Generator().manual_seed(int(seed))
                        lm = make_model(prob, w, cfg["depth"], seed=seed,
                                        hidden_layer=lambda a_, c_: LowRankLinear(a_, c_, k, generator=g))
                        hl = train(lm, prob, seed=seed, **tr)
                        rec("lowrank-scratch", lm, b, train_time=hl["train_time"], K=K,
                            extra={"setting": {"rank": k}})
                    tick()
            if out:  # partial results after every (pde, seed)
                write_report(_result(cfg, records, spectra, t_start), out, plots=False)
    if bar is not None:
        bar.close()
    result = _result(cfg, records, spectra, t_start)
    if out:
        write_report(result, out)
    return result


def _result(cfg, records, spectra, t_start):
    return {"config": cfg, "records": records, "spectra": spectra,
            "wall_time": time.perf_counter() - t_start,
            "machine": {"platform": platform.platform(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "cpus": os.cpu_count()}}


def _fmt(x, f="{:.2e}"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a" if x is None else str(x)
    return f.format(x)


def summarize(records):
    """Aggregate records over seeds: dict keyed by (pde, method, budget)."""
    groups = {}
    for r in records:
        groups.setdefault((r["pde"], r["method"], r["budget"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.get("feasible")]
        if not ok:
            out[key] = {"feasible": False, "n": len(rs)}
            continue
        l2 = np.array([r["l2"] for r in ok])
        s = {"feasible": True, "n": len(ok), "bytes": float(np.mean([r["bytes"] for r in ok])),
             "fraction": float(np.mean([r["fraction"] for r in ok])),
             "parameters": float(np.mean([r["parameters"] for r in ok])),
             "l2_mean": float(l2.mean()), "l2_std": float(l2.std()),
             "train_time": float(np.mean([r["train_time"] for r in ok])),
             "infer_time_10k": float(np.mean([r["infer_time_10k"] for r in ok]))}
        if "infer_time_10k_real_int8" in ok[0]:
            s["infer_time_10k_real_int8"] = float(np.mean([r["infer_time_10k_real_int8"] for r in ok]))
        if "ntk" in ok[0]:
            for k in ("rel_fro", "alignment", "top_eig_rel_err_max", "cond_tilde", "cond"):
                s["ntk_" + k] = float(np.mean([r["ntk"][k] for r in ok]))
        out[key] = s
    return out


def write_report(result, out, plots=True):
    """Write ``results.json``, ``report.md`` and (if matplotlib is available and ``plots``)
    the plots to ``out``."""
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, "results.json"), result)
    summ = summarize(result["records"])
    cfg = result["config"]
    lines = ["# PINN compression study", "",
             f"Config: `{json.dumps({k: v for k, v in cfg.items() if k != 'progress'})}`", "",
             f"Wall time: {result['wall_time']:.1f} s on {result['machine']}", "",
             "Budgets are fractions of the dense float32 hidden-to-hidden weight bytes. "
             "L2 = relative L2 error on the problem's test grid (mean ± std over seeds). "
             "NTK columns compare the compressed network's NTK with the trained dense "
             "network's NTK at the same points (float64): relative Frobenius error of the "
             "whole kernel, kernel alignment, max relative error of the top-10 eigenvalues, "
             "condition number. Train time: dense / dynamic / lowrank-scratch = full training "
             "from the Glorot initialization (lowrank-scratch: LowRankLinear hidden layers of the "
             "budget's rank, a control for hmatrix-dynamic); +finetune = the fine-tuning only "
             "(the same Adam + L-BFGS steps for every method); post-hoc = 0. Inference: forward pass on 10k points "
             "(median of 5), float32.", ""]
    hdr = ("| method | budget | fraction | params | bytes | L2 error | NTK rel. err | alignment "
           "| top-eig err | cond | train s | infer s/10k |")
    sep = "|" + "---|" * 12
    for pde in cfg["pdes"]:
        pname = get_problem(pde).name
        lines += [f"## {pname}", "", hdr, sep]
        keys = sorted((k for k in summ if k[0] == pname),
                      key=lambda k: (-(k[2] or 2), STUDY_METHODS.index(k[1])))
        for k in keys:
            s = summ[k]
            b = "-" if k[2] is None else f"{k[2]:g}"
            if not s["feasible"]:
                lines.append(f"| {k[1]} | {b} | not reachable | | | | | | | | | |")
                continue
            inf = _fmt(s["infer_time_10k"], "{:.4f}")
            if "infer_time_10k_real_int8" in s:
                inf += f" (real int8: {s['infer_time_10k_real_int8']:.4f})"
            lines.append(
                f"| {k[1]} | {b} | {s['fraction']:.3f} | {s['parameters']:.0f} | {s['bytes']:.0f} | "
                f"{s['l2_mean']:.2e} ± {s['l2_std']:.1e} | {_fmt(s.get('ntk_rel_fro'))} | "
                f"{_fmt(s.get('ntk_alignment'), '{:.4f}')} | {_fmt(s.get('ntk_top_eig_rel_err_max'))} | "
                f"{_fmt(s.get('ntk_cond_tilde', s.get('ntk_cond')))} | {s['train_time']:.1f} | {inf} |")
        lines.append("")
    write_text_atomic(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
    if plots:
        _plots(result, summ, out)
    return os.path.join(out, "report.md")


def _plots(result, summ, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    cfg = result["config"]
    for pde in cfg["pdes"]:
        pname = get_problem(pde).name
        for metric, ylabel, fname in (("l2_mean", "relative L2 error", "l2_vs_bytes"),
                                      ("ntk_rel_fro", "NTK relative Frobenius error", "ntk_vs_bytes")):
            fig, ax = plt.subplots(figsize=(6, 4))
            for meth in STUDY_METHODS:
                pts = sorted((s["bytes"], s[metric]) for k, s in summ.items()
                             if k[0] == pname and k[1] == meth and s["feasible"] and metric in s)
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, "o-" if len(xs) > 1 else "o", label=meth)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("hidden-layer weight bytes")
            ax.set_ylabel(ylabel)
            ax.set_title(pname)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = os.path.join(out, f"{fname}_{pname}.png")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            files.append(path)
        fig, ax = plt.subplots(figsize=(6, 4))
        for sp in result["spectra"]:
            if sp["pde"] != pname or sp["seed"] != cfg["seeds"][0]:
                continue
            ev = np.maximum(np.asarray(sp["eig"]), 1e-300)
            lab = sp["method"] + ("" if sp["budget"] is None else f" @{sp['budget']:g}")
            ax.semilogy(ev, lw=2 if sp["method"] == "dense" else 0.8, label=lab)
        ax.set_xlabel("index")
        ax.set_ylabel("NTK eigenvalue")
        ax.set_title(f"{pname}: NTK spectra (seed {cfg['seeds'][0]})")
        ax.legend(fontsize=5, ncol=2)
        fig.tight_layout()
        path = os.path.join(out, f"ntk_spectra_{pname}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    return files
