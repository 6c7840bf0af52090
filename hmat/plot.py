"""Plot the block structure of an H-matrix, coloured by rank (matplotlib optional)."""

from __future__ import annotations

from .hblock import HBlock
from .lowrank import LowRank

__all__ = ["plot"]


def plot(H, ax=None, *, cmap="viridis", annotate=None):
    """Draw the leaves of ``H``: low-rank blocks coloured by rank, dense blocks in red.

    Parameters
    ----------
    H : HBlock
    ax : matplotlib Axes, optional
        Drawn into a new figure when omitted.
    cmap : str
        Colormap for ranks.
    annotate : bool, optional
        Write ranks into blocks (default: when there are at most 400 leaves).

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(H, HBlock):
        raise TypeError(f"H must be an HBlock, got {type(H).__name__}")
    try:
        import matplotlib.pyplot as plt
        from matplotlib.collections import PatchCollection
        from matplotlib.colors import Normalize
        from matplotlib.patches import Rectangle
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("hmat.plot needs matplotlib: pip install 'hmat-pinn[plot]'") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * H.shape[0] / max(H.shape[1], 1)))
    leaves = H.leaves()
    ranks = [lf.op.rank for lf in leaves if isinstance(lf.op, LowRank)]
    norm = Normalize(vmin=0, vmax=max(ranks) if ranks else 1)
    cm = plt.get_cmap(cmap)
    lr_patches, lr_colors, dense_patches = [], [], []
    for r0, c0, op in leaves:
        rect = Rectangle((c0, r0), op.shape[1], op.shape[0])
        if isinstance(op, LowRank):
            lr_patches.append(rect)
            lr_colors.append(cm(norm(op.rank)))
        else:
            dense_patches.append(rect)
    ax.add_collection(PatchCollection(lr_patches, facecolor=lr_colors, edgecolor="k", linewidth=0.2))
    ax.add_collection(PatchCollection(dense_patches, facecolor="tab:red", edgecolor="k", linewidth=0.2))
    if annotate is None:
        annotate = len(leaves) <= 400
    if annotate:
        for r0, c0, op in leaves:
            if isinstance(op, LowRank):
                ax.text(c0 + op.shape[1] / 2, r0 + op.shape[0] / 2, str(op.rank), ha="center", va="center", fontsize=6)
    ax.set_xlim(0, H.shape[1])
    ax.set_ylim(H.shape[0], 0)
    ax.set_aspect("equal")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cm)
    ax.figure.colorbar(sm, ax=ax, label="rank (dense blocks red)")
    s = H.stats()
    ax.set_title(f"{H.shape[0]}x{H.shape[1]}: {s['n_lowrank']} low-rank, {s['n_dense']} dense, ratio {s['compression_ratio']:.1f}")
    return ax
