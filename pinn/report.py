"""Tables and plots of the studies (the one reporting module).

* :func:`write_pinn_report` -- ``report.md`` and plots of ``python -m pinn compare``
  (:mod:`pinn.studies.pinn_compare`): per PDE a table over budgets and methods with the
  median and [min, max] over seeds, the learning-rate sweep, which differences exceed the
  seed-to-seed spread, L2/NTK-vs-bytes plots with error bars (one colour per method) and
  training curves (median and range over seeds);
* :func:`write_operator_report`, :func:`operator_table`, :func:`operator_summary`,
  :func:`operator_summary_table` -- the same for ``python -m pinn operator``.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ._files import write_json_atomic, write_text_atomic

__all__ = ["summarize", "write_pinn_report", "study_status", "spread_verdicts", "COLORS", "operator_table",
           "operator_summary", "operator_summary_table", "write_operator_report",
           "merge_seeds"]

#: one colour per method (both studies)
COLORS = {"dense": "k", "svd-lossless": "0.5", "hmatrix": "tab:blue",
          "hmatrix+finetune": "tab:cyan", "hmatrix-dynamic": "navy", "hmatrix-posthoc": "tab:cyan",
          "svd": "tab:purple", "svd+finetune": "violet", "prune": "tab:green",
          "prune+finetune": "lime", "lowrank-scratch": "tab:red", "lowrank": "tab:red",
          "int8": "tab:orange", "int4": "tab:brown", "fp16": "gold", "bf16": "olive",
          "oracle-hmatrix": "tab:blue", "oracle-svd": "tab:red", "oracle-prune": "tab:green"}

ORDER = ("dense", "svd-lossless", "hmatrix", "hmatrix+finetune", "hmatrix-dynamic", "svd",
         "svd+finetune", "prune", "prune+finetune", "lowrank-scratch", "int8", "int4", "fp16",
         "bf16")

#: pairs whose difference the report tests against the seed spread: (method, rival)
PAIRS = (("hmatrix", "svd"), ("hmatrix", "prune"), ("hmatrix+finetune", "svd+finetune"),
         ("hmatrix+finetune", "prune+finetune"), ("hmatrix-dynamic", "lowrank-scratch"),
         ("hmatrix-dynamic", "hmatrix+finetune"), ("hmatrix-dynamic", "dense"))


def _stats(v):
    v = [x for x in v if x is not None and math.isfinite(x)]
    if not v:
        return None
    return {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v)),
            "n": len(v), "values": [float(x) for x in v]}


def summarize(records):
    """Aggregate records over seeds.

    Returns
    -------
    dict
        Keyed by ``(pde, method, budget)``: ``n`` (records), ``feasible`` (how many),
        ``seeds``, and for each metric (``l2``, ``final_loss``, ``fraction``, ``bytes``,
        ``ntk`` (function-space relative Frobenius error), ``ntk_param``, ``alignment``,
        ``top_eig``, ``train_time``) the median, min, max and values.
    """
    groups = {}
    for r in records:
        groups.setdefault((r["pde"], r["method"], r["budget"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.get("feasible")]
        s = {"n": len(rs), "feasible": len(ok), "seeds": sorted(r["seed"] for r in ok),
             "errors": sorted({r["error"] for r in rs if "error" in r})}
        s["l2"] = _stats([r["l2"] for r in ok])
        s["final_loss"] = _stats([r.get("final_loss") for r in ok])
        s["fraction"] = _stats([r["fraction"] for r in ok])
        s["bytes"] = _stats([r["bytes"] for r in ok])
        s["ntk"] = _stats([r["ntk"]["rel_fro"] for r in ok if "ntk" in r])
        s["ntk_param"] = _stats([r["ntk_param"]["rel_fro"] for r in ok if "ntk_param" in r])
        s["alignment"] = _stats([r["ntk"]["alignment"] for r in ok if "ntk" in r])
        s["top_eig"] = _stats([r["ntk"]["top_eig_rel_err_max"] for r in ok if "ntk" in r])
        s["train_time"] = _stats([r.get("train_time") for r in ok])
        s["lr"] = ok[0].get("lr") if ok else None
        out[key] = s
    return out


def _mr(s, f="{:.2e}"):
    if s is None:
        return "–"
    if s["n"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} [{f.format(s['min'])}, {f.format(s['max'])}]"


#: metrics :func:`spread_verdicts` can judge (the per-seed values of :func:`summarize`), lower
#: is better for each, and how the report names them
VERDICT_METRICS = {"l2": "L2", "ntk": "NTK (function space)"}


def spread_verdicts(summ, pde, metric="l2"):
    """For each budget and each pair of :data:`PAIRS` with both methods measured: which has
    the smaller median ``metric`` (``"l2"``: relative L2 error; ``"ntk"``: function-space
    NTK error against the dense network) and whether the seed ranges are disjoint (the
    difference exceeds the seed-to-seed spread). Pairs without the metric (the dense
    reference has no NTK error) are left out. List of dict."""
    if metric not in VERDICT_METRICS:
        raise ValueError(f"metric must be one of {sorted(VERDICT_METRICS)}, got {metric!r}")
    out = []
    budgets = sorted({k[2] for k in summ if k[0] == pde and k[2] is not None}, reverse=True)
    for b in budgets:
        for a, c in PAIRS:
            sa = summ.get((pde, a, b)) or summ.get((pde, a, None))
            sc = summ.get((pde, c, b)) or summ.get((pde, c, None))
            if not sa or not sc or not sa[metric] or not sc[metric]:
                continue
            ma, mc = sa[metric], sc[metric]
            better = a if ma["median"] < mc["median"] else c
            n = min(ma["n"], mc["n"])
            # with one seed there is no spread to compare with: no verdict
            disjoint = None if n < 2 else (ma["max"] < mc["min"] or mc["max"] < ma["min"])
            ratio = mc["median"] / max(ma["median"], 1e-300)
            out.append({"budget": b, "method": a, "rival": c, "better": better,
                        "ratio": ratio, "disjoint": disjoint, "n": n})
    return out


def _verdict_lines(summ, name, metric):
    v = spread_verdicts(summ, name, metric)
    if not v:
        return []
    label = VERDICT_METRICS[metric]
    lines = ["", f"Differences in {label} against the seed spread ({name}): "
             "`disjoint` = the [min, max] ranges over seeds do not overlap.", "",
             f"| budget | method | rival | better (median) | rival/method median {label.split()[0]} | "
             "disjoint | seeds |", "|---|---|---|---|---|---|---|"]
    for e in v:
        lines.append(f"| {e['budget']:g} | {e['method']} | {e['rival']} | {e['better']} | "
                     f"{e['ratio']:.3g} | "
                     f"{'n/a' if e['disjoint'] is None else 'yes' if e['disjoint'] else 'no'}"
                     f" | {e['n']} |")
    return lines


def study_status(res):
    """Which units of a PINN study results dict are done and which are missing.

    Returns
    -------
    list of dict
        One per PDE of the config, in config order: ``pde``, ``seeds`` (configured),
        ``done`` / ``missing`` (seeds whose configuration unit is / is not in
        ``res["units"]``), ``sweep_missing`` (sweep parts not done; empty without a sweep),
        ``complete`` (every seed and sweep part done).
    """
    from .problems import get_problem
    from .studies.pinn_compare import SWEEP_PARTS, resolve_config

    cfg = res["config"]
    units = set(res.get("units", []))
    out = []
    for pde in cfg["pdes"]:
        name = get_problem(pde).name
        seeds = list(resolve_config(cfg, pde)["seeds"])
        done = [s for s in seeds if f"config:{name}:{s}" in units]
        sweep_missing = [] if cfg.get("lr_sweep") is None else [
            p for p in SWEEP_PARTS if f"sweep:{name}:{p}" not in units]
        out.append({"pde": name, "seeds": seeds, "done": done,
                    "missing": [s for s in seeds if s not in done],
                    "sweep_missing": sweep_missing,
                    "complete": len(done) == len(seeds) and not sweep_missing})
    return out


def _status_lines(res):
    from .studies.pinn_compare import NOT_IN_STUDY

    st = study_status(res)
    lines = ["## Status", ""]
    if all(e["complete"] for e in st):
        lines += ["Complete: every configured (PDE, seed) and sweep unit is in results.json.", ""]
    else:
        lines += ["**Partial results**: the study has not finished. Only PDEs marked "
                  "complete have every seed; a row of an incomplete PDE is over the seeds "
                  "done so far (its `seeds` column says how many).", ""]
    lines += ["| PDE | complete | seeds done | seeds missing | sweep parts missing |",
              "|---|---|---|---|---|"]
    for e in st:
        lines.append(f"| {e['pde']} | {'yes' if e['complete'] else 'no'} | "
                     f"{len(e['done'])}/{len(e['seeds'])} "
                     f"({', '.join(map(str, e['done'])) or '–'}) | "
                     f"{', '.join(map(str, e['missing'])) or '–'} | "
                     f"{', '.join(e['sweep_missing']) or '–'} |")
    lines.append("")
    notes = [f"- {v}" for k, v in NOT_IN_STUDY.items() if k not in res["config"]["pdes"]]
    if notes:
        lines += ["Not in this study:", ""] + notes + [""]
    return lines


def _provenance_lines(res):
    """Which code produced each PDE's records (``res["pde_runs"]``), when not all the same."""
    runs = res.get("pde_runs") or {}
    codes = {r["code"].get("hash") for r in runs.values()}
    if len(codes) <= 1:
        return []
    lines = ["Code per PDE (every record of a PDE comes from one version of the code):", ""]
    for name, r in runs.items():
        lines.append(f"- {name}: code hash `{r['code'].get('hash')}`, git "
                     f"`{r['code'].get('git')}`")
    return lines + [""]


def write_pinn_report(res, out, plots=True):
    """Write ``report.md`` (and plots) of a PINN study results dict to ``out``; returns the
    paths written."""
    from .problems import get_problem

    cfg = res["config"]
    summ = summarize(res["records"])
    m = res.get("machine", {})
    lines = ["# PINN compression study", "",
             f"Config: `{json.dumps({k: v for k, v in cfg.items()})}`", "",
             f"Code hash (pinn/ + hmat/ sources) of the last run: "
             f"`{res.get('code', {}).get('hash')}`"
             + (f" (git commit `{res['code']['git']}`)" if (res.get("code") or {}).get("git") else "")
             + "; command of the last run: "
             f"`{(res.get('runs') or [{}])[-1].get('command', res.get('command'))}`", ""] + \
        _provenance_lines(res) + [
             f"Machine: {m.get('platform')}, {m.get('cpu_count')} CPUs, torch {m.get('torch')}, "
             f"{m.get('workers', 1)} worker process(es) x {m.get('worker_torch_threads')} torch "
             f"thread(s); load average at start {m.get('load_average')}, at end "
             f"{m.get('load_average_end')}", "",
             f"Units done: {len(res.get('units', []))} ({', '.join(res.get('units', []))}); "
             f"wall time {res.get('wall_time', 0):.0f} s", ""] + _status_lines(res) + [
             "L2 = relative L2 error on the problem's test grid; all cells are the median "
             "[min, max] over the seeds listed. Bytes = hidden-to-hidden weight bytes under the "
             "byte rule of docs/method.md §5; fraction = of the dense float32 bytes. NTK = "
             "relative Frobenius error of the NTK w.r.t. the *effective dense weights* "
             "(function space) against the trained dense network's, on the same points "
             "(float64); the `svd-lossless` row (an exact full-rank factorization) also shows "
             "the parameter-space NTK error (`NTK param`). Train s: the method's own training "
             "(dense, dynamic, scratch: full schedule; +finetune: fine-tuning only; post-hoc: "
             "0).", ""]
    if res.get("lr"):
        lines += ["## Learning rates (Adam; chosen by the sweep's final training loss; dense: "
                  "the configured reference lr, not swept)", "",
                  "| PDE | " + " | ".join(m_ for m_ in ORDER if any(
                      m_ in v for v in res["lr"].values())) + " |"]
        cols = [m_ for m_ in ORDER if any(m_ in v for v in res["lr"].values())]
        lines.append("|" + "---|" * (len(cols) + 1))
        for pde, v in res["lr"].items():
            lines.append(f"| {pde} | " + " | ".join(f"{v[c]:g}" if c in v else "–"
                                                     for c in cols) + " |")
        lines.append("")
    if res.get("sweep"):
        lines += ["## Learning-rate sweep (Adam phase only, seed "
                  f"{cfg.get('sweep_seed')}, budget {cfg.get('sweep_budget')})", "",
                  "| PDE | method | lr | final loss | L2 | train s |", "|---|---|---|---|---|---|"]
        for r in res["sweep"]:
            used = "" if r["method"] != "dense" else " (not used)"
            lines.append(f"| {r['pde']} | {r['method']}{used} | {r['lr']:g} | "
                         f"{r['final_loss']:.3e} | "
                         f"{r['l2']:.3e} | {r['train_time']:.0f} |")
        lines.append("")
    hdr = ("| method | budget | seeds | fraction | L2 | final loss | NTK (function space) | "
           "alignment | top-10 eig. err | train s | lr |")
    for pde in cfg["pdes"]:
        name = get_problem(pde).name
        keys = [k for k in summ if k[0] == name]
        if not keys:
            continue
        lines += [f"## {name}", "", hdr, "|" + "---|" * 11]
        keys.sort(key=lambda k: (-(k[2] or 2), ORDER.index(k[1]) if k[1] in ORDER else 99))
        for k in keys:
            s = summ[k]
            b = "–" if k[2] is None else f"{k[2]:g}"
            if not s["feasible"]:
                why = "; ".join(s["errors"]) or "budget not reachable"
                lines.append(f"| {k[1]} | {b} | 0/{s['n']} | {why} | | | | | | | |")
                continue
            ntk_cell = _mr(s["ntk"])
            if s["ntk_param"]:
                ntk_cell += f" (NTK param: {_mr(s['ntk_param'])})"
            lines.append(
                f"| {k[1]} | {b} | {s['feasible']}/{s['n']} | {_mr(s['fraction'], '{:.3f}')} | "
                f"{_mr(s['l2'])} | {_mr(s['final_loss'])} | {ntk_cell} | "
                f"{_mr(s['alignment'], '{:.4f}')} | {_mr(s['top_eig'])} | "
                f"{_mr(s['train_time'], '{:.0f}')} | "
                f"{'–' if s['lr'] is None else format(s['lr'], 'g')} |")
        for metric in VERDICT_METRICS:
            lines += _verdict_lines(summ, name, metric)
        lines.append("")
    paths = []
    if plots:
        try:
            paths = _pinn_plots(res, summ, out)
        except ImportError:  # pragma: no cover
            paths = []
    if paths:
        lines += ["## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})"
                                     for p in paths] + [""]
    p = os.path.join(out, "report.md")
    write_text_atomic(p, "\n".join(lines) + "\n")
    return [p] + paths


def _pinn_plots(res, summ, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .problems import get_problem

    paths = []
    cfg = res["config"]
    for pde in cfg["pdes"]:
        name = get_problem(pde).name
        if not any(k[0] == name for k in summ):
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=80)
        for ax, metric, ylabel in ((axes[0], "l2", "relative L2 error"),
                                   (axes[1], "ntk", "NTK rel. error (function space)")):
            for meth in ORDER:
                pts = sorted((s["bytes"]["median"], s[metric]) for k, s in summ.items()
                             if k[0] == name and k[1] == meth and s.get(metric) and s["bytes"])
                if not pts:
                    continue
                x = np.array([p[0] for p in pts])
                y = np.array([max(p[1]["median"], 1e-17) for p in pts])
                lo = np.array([max(p[1]["min"], 1e-17) for p in pts])
                hi = np.array([max(p[1]["max"], 1e-17) for p in pts])
                ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-" if len(x) > 1 else "o",
                            color=COLORS.get(meth, "k"), label=meth, ms=4, lw=1, capsize=3)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("hidden-layer weight bytes")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", lw=0.3)
        axes[0].legend(fontsize=6, ncol=2)
        fig.suptitle(f"{name}: median and [min, max] over seeds")
        fig.tight_layout()
        p = os.path.join(out, f"error_vs_bytes_{name}.png")
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
        # training curves at each budget: L2 and loss vs step, median and range over seeds
        budgets = cfg["budgets"]
        fig, axes = plt.subplots(2, len(budgets), figsize=(4 * len(budgets), 6.5), dpi=80,
                                 squeeze=False)
        any_curve = False
        for j, b in enumerate(budgets):
            for meth in ORDER:
                rs = [r for r in res["records"] if r["pde"] == name and r["method"] == meth
                      and r.get("curve") and (r["budget"] == b or r["budget"] is None)]
                if not rs:
                    continue
                for i, key in enumerate(("l2", "loss")):
                    n = min(len(r["curve"]["step"]) for r in rs)
                    if n == 0:
                        continue
                    steps = np.array(rs[0]["curve"]["step"][:n])
                    Y = np.array([[max(v if v is not None else np.nan, 1e-17)
                                   for v in r["curve"][key][:n]] for r in rs])
                    ax = axes[i, j]
                    ax.plot(steps, np.median(Y, 0), color=COLORS.get(meth, "k"), lw=1,
                            label=meth)
                    ax.fill_between(steps, Y.min(0), Y.max(0), color=COLORS.get(meth, "k"),
                                    alpha=0.15, lw=0)
                    ax.set_yscale("log")
                    any_curve = True
            axes[0, j].set_title(f"budget {b:g}")
            axes[1, j].set_xlabel("step")
        axes[0, 0].set_ylabel("relative L2 error")
        axes[1, 0].set_ylabel("training loss")
        if any_curve:
            axes[0, 0].legend(fontsize=6)
            fig.suptitle(f"{name}: training curves, median and range over seeds "
                         "(+finetune: fine-tuning steps)")
            fig.tight_layout()
            p = os.path.join(out, f"curves_{name}.png")
            fig.savefig(p)
            paths.append(p)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- operator study
_OP_COLS = [("method", "method", "{}"), ("rank_param", "r", "{}"), ("params", "params", "{}"),
            ("bytes", "bytes", "{}"), ("bytes_ratio", "of dense", "{:.3f}"),
            ("rel_error", "held-out rel. error", "{:.2e}"),
            ("test_loss", "held-out loss", "{:.1e}"), ("green_error", "‖W−G‖/‖G‖", "{:.2e}"),
            ("train_time", "train s", "{:.1f}"), ("forward_s", "fwd ms (torch)", "ms"),
            ("forward_grouped_s", "fwd ms (grouped)", "ms"),
            ("forward_hmat_s", "fwd ms (hmat)", "ms")]


def _ofmt(v, f):
    if v is None:
        return "–"
    if f == "ms":
        return f"{v * 1e3:.2f}"
    return f.format(v)


def operator_table(results, columns=None):
    """The operator results' rows as markdown table lines (list of str).

    A ``seed`` column is added when the rows come from several seeds; the Green's-function
    column is left out for nonlinear networks.
    """
    cols = _OP_COLS if columns is None else [c for c in _OP_COLS if c[0] in columns]
    if len({row.get("seed") for row in results["rows"]}) > 1:
        cols = cols[:2] + [("seed", "seed", "{}")] + cols[2:]
    if results["config"].get("net", "linear") != "linear":
        cols = [c for c in cols if c[0] not in ("green_error", "forward_grouped_s",
                                                "forward_hmat_s")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['method']} | {row.get('rank_param')} | failed: {row['error']} |")
            continue
        lines.append("| " + " | ".join(_ofmt(row.get(k), f) for k, _, f in cols) + " |")
    return lines


def operator_summary(results):
    """Aggregate operator rows over seeds: per (method, r) the median, min and max of the
    held-out error and the weight error, the median training time, and the bytes.

    Returns
    -------
    list of dict
        In first-appearance order of (method, r).
    """
    groups = {}
    for row in results["rows"]:
        if "error" in row:
            continue
        groups.setdefault((row["method"], row.get("rank_param")), []).append(row)
    out = []
    for (method, r), rs in groups.items():
        d = dict(method=method, rank_param=r, seeds=len(rs), bytes=rs[0]["bytes"],
                 bytes_ratio=rs[0]["bytes_ratio"])
        for key in ("rel_error", "green_error", "train_time"):
            v = [x[key] for x in rs if x.get(key) is not None]
            if v:
                d[key] = float(np.median(v))
                d[key + "_min"], d[key + "_max"] = float(np.min(v)), float(np.max(v))
        out.append(d)
    return out


def operator_summary_table(results):
    """Markdown lines of :func:`operator_summary` (median [min, max] over seeds)."""
    rows = operator_summary(results)
    lin = results["config"].get("net", "linear") == "linear"
    head = ["method", "r", "seeds", "bytes", "of dense", "held-out rel. error, median [min, max]"]
    if lin:
        head.append("‖W−G‖/‖G‖, median [min, max]")
    head.append("train s (median)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def rng(d, key):
        if key not in d:
            return "–"
        return f"{d[key]:.2e} [{d[key + '_min']:.2e}, {d[key + '_max']:.2e}]"

    for d in rows:
        cells = [d["method"], _ofmt(d["rank_param"], "{}"), str(d["seeds"]), str(d["bytes"]),
                 f"{d['bytes_ratio']:.3f}", rng(d, "rel_error")]
        if lin:
            cells.append(rng(d, "green_error"))
        cells.append(_ofmt(d.get("train_time"), "{:.1f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def merge_seeds(results_list):
    """One operator results dict from per-seed results of the same configuration (rows
    concatenated, ``config["seeds"]`` listing the seeds)."""
    if not results_list:
        raise ValueError("results_list is empty")
    out = dict(results_list[0])
    out["config"] = dict(out["config"], seeds=[r["config"]["seed"] for r in results_list])
    out["rows"] = [row for r in results_list for row in r["rows"]]
    out["machine"] = results_list[-1]["machine"]
    return out


def write_operator_report(results, out):
    """Write ``results.json``, ``report.md`` and (if matplotlib is present) plots of an
    operator study to ``out``; returns the plot paths."""
    os.makedirs(out, exist_ok=True)
    write_json_atomic(os.path.join(out, "results.json"), results)
    cfg = results["config"]
    lines = [f"# Operator study: {results['problem']}", "",
             f"Command config: `{json.dumps({k: v for k, v in cfg.items() if k != 'methods'})}`",
             "", f"Methods: {', '.join(cfg['methods'])}", "",
             f"Machine: {results['machine']}", "",
             *operator_table(results)]
    if len(results["config"].get("seeds", [0])) > 1:
        lines += ["", "Over seeds:", "", *operator_summary_table(results)]
    lines += ["", "held-out rel. error: mean over held-out sources of ‖u − u*‖/‖u*‖ (u* = sparse "
              "direct solve); ‖W−G‖/‖G‖: Frobenius error of the learned weight against the "
              "discrete Green's function; bytes by the byte rule of docs/method.md §5. "
              "`oracle-*` rows are best approximations of the true G in each format (no "
              "training)."]
    write_text_atomic(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
    plots = []
    try:
        plots = _operator_plots(results, out)
    except ImportError:  # pragma: no cover
        pass
    return plots


def _operator_plots(results, out, prefix="operator"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = operator_summary(results)
    cfg = results["config"]
    net = cfg.get("net", "linear")
    tag = f"{prefix}_d{cfg['dim']}_n{results['n']}" + ("" if net == "linear" else f"_{net}")
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80)
    markers = {"dense": "*", "hmatrix": "o", "hmatrix-dynamic": "s", "hmatrix-posthoc": "^",
               "hmatrix+finetune": "v", "lowrank": "o", "svd": "^", "svd+finetune": "v",
               "prune": "^", "prune+finetune": "v", "oracle-hmatrix": "x", "oracle-svd": "x",
               "oracle-prune": "x"}
    second = (("green_error", "‖W − G‖_F / ‖G‖_F") if net == "linear" else
              ("train_time", "training time (s)"))
    for ax, (key, title) in zip(axes, (("rel_error", "held-out relative error"), second)):
        for meth in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["bytes"], max(r[key], 1e-17), max(r[key + "_min"], 1e-17),
                          max(r[key + "_max"], 1e-17))
                         for r in rows if r["method"] == meth and key in r)
            if not pts:
                continue
            x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
            err = np.array([[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]])
            ax.errorbar(x, y, yerr=err, fmt=markers.get(meth, ".") + "-",
                        color=COLORS.get(meth, "k"), label=meth, ms=6, lw=0.8, capsize=2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("bytes of the wide-layer weights" if net != "linear" else "bytes of the weight")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", lw=0.3)
    axes[0].legend(fontsize=6, loc="best")  # the left panel has every method
    seeds = cfg.get("seeds", [cfg.get("seed", 0)])
    fig.suptitle(f"{results['problem']}, net={net}"
                 + (f", median and range over {len(seeds)} seeds" if len(seeds) > 1 else ""),
                 fontsize=9)
    fig.tight_layout()
    p = os.path.join(out, f"{tag}_error_vs_bytes.png")
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    return paths
