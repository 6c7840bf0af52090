"""Plots of a trained PINN (matplotlib, optional): the solution, the reference, the
pointwise error (:func:`plot_solution`) and the loss/error history (:func:`plot_history`).

Both return the matplotlib ``Figure``; with ``path`` the figure is also written atomically
(temporary file + ``os.replace``) and closed.
"""
from __future__ import annotations

import os

import numpy as np
from hmat.io import write_atomic

from ._files import check_directory

__all__ = ["plot_solution", "plot_history", "have_matplotlib"]


def have_matplotlib():
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("pinn.plot needs matplotlib (pip install matplotlib)") from None
    return plt


def _save(fig, path):
    plt = _plt()
    try:
        check_directory(path)
        fmt = os.path.splitext(os.fspath(path))[1][1:] or "png"
        write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_solution(model, problem, path=None, n_per_axis=None):
    """Prediction, reference and pointwise error on the problem's test points.

    Parameters
    ----------
    model : torch.nn.Module
    problem : Problem or str
        1-D or 2-D input (2-D: ``(x, y)`` or ``(x, t)``); without a reference only the
        prediction is drawn.
    path : str or path-like, optional
        Write the figure there (format from the extension).
    n_per_axis : int, optional
        Test-grid resolution (default the problem's test grid).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .models import predict
    from .problems import get_problem

    plt = _plt()
    problem = get_problem(problem)
    if problem.dim > 2:
        raise ValueError(f"problem: plot_solution draws 1-D and 2-D problems, {problem!r} "
                         f"has {problem.dim} inputs")
    if problem.has_reference():
        x, ref = problem.test_grid(n_per_axis)
    else:
        x = problem.domain.test_points(n_per_axis) if hasattr(problem, "domain") else \
            problem.test_grid(n_per_axis)[0]
        ref = None
    pred = predict(model, x)
    names = ["x", "t"] if problem.time_dependent else ["x", "y"]
    if problem.dim == 1:
        fig, axes = plt.subplots(1, 2 if ref is not None else 1, figsize=(10, 3.6),
                                 squeeze=False)
        o = np.argsort(x[:, 0])
        ax = axes[0, 0]
        ax.plot(x[o, 0], pred[o], label="PINN")
        if ref is not None:
            ax.plot(x[o, 0], ref[o], "--", label="reference")
            axes[0, 1].semilogy(x[o, 0], np.abs(pred - ref)[o] + 1e-300)
            axes[0, 1].set_title("|error|")
            axes[0, 1].set_xlabel("x")
        ax.set_xlabel("x")
        ax.legend()
        ax.set_title(repr(problem))
    else:
        panels = [("PINN", pred)]
        if ref is not None:
            panels += [("reference", ref), ("|error|", np.abs(pred - ref))]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8),
                                 squeeze=False)
        both = np.concatenate([pred] + ([] if ref is None else [ref]))
        lo, hi = float(both.min()), float(both.max())
        shared = np.linspace(lo, hi if hi > lo else lo + 1.0, 65)  # PINN and reference
        for ax, (title, v) in zip(axes[0], panels):
            err = title == "|error|"
            im = ax.tricontourf(x[:, 0], x[:, 1], v, levels=64 if err else shared,
                                cmap="magma" if err else "RdBu_r")
            fig.colorbar(im, ax=ax)
            ax.set_title(title)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
        fig.suptitle(repr(problem))
    fig.tight_layout()
    if path is not None:
        _save(fig, path)
    return fig


def plot_history(history, path=None):
    """Loss terms (and the test error, when recorded) against the step, log scale.

    Parameters
    ----------
    history : dict
        As returned by :func:`pinn.train` (``step``, ``loss``, per-term lists,
        ``l2_step``, ``l2``).
    path : str or path-like, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    if "step" not in history or "loss" not in history:
        raise ValueError("history must hold 'step' and 'loss' lists (from pinn.train)")
    step = np.asarray(history["step"])
    skip = {"step", "phase", "time", "l2_step", "l2", "loss"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.semilogy(step, np.asarray(history["loss"]), "k", lw=1.5, label="total")
    for k, v in history.items():
        if k in skip or not isinstance(v, list) or len(v) != len(step):
            continue
        ax.semilogy(step, np.asarray(v, dtype=np.float64), lw=1, label=k)
    ax.set_xlabel("step")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    ax = axes[1]
    if history.get("l2"):
        l2 = np.asarray(history["l2"], dtype=np.float64)
        if np.any(np.isfinite(l2)):
            ax.semilogy(history["l2_step"], l2, "o-", ms=3)
    ax.set_xlabel("step")
    ax.set_title("relative L2 test error")
    fig.tight_layout()
    if path is not None:
        _save(fig, path)
    return fig
