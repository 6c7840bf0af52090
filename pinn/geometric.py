"""Grid-indexed (geometry-aware) H-layers.

A layer that maps a function sampled at points ``in_points`` to a function
sampled at ``out_points`` has a weight that plays the role of a discrete
integral kernel (e.g. a Green's function). Its natural H-matrix structure comes
from *geometric* cluster trees of the two point sets and *strong*
admissibility: a block ``(s, t)`` is low rank when
``min(diam s, diam t) <= eta * dist(s, t)``. This module builds
:class:`pinn.HMatrixLinear` layers with that structure, following the data flow
of the library: points -> :class:`hmat.ClusterTree` -> :class:`hmat.BlockTree`
-> :class:`hmat.Partition` -> leaf factors -> :meth:`HMatrixLinear.from_partition`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import hmat

from .autograd import apply_stacked, stack_groups
from .layers import HMatrixLinear

__all__ = ["geometric_hmatrix_linear", "geometric_block_tree", "GroupedHForward",
           "install_geometric_structure",
           "project_to_structure", "INITS"]

INITS = ("glorot", "zeros")


def _as_points(p, name):
    if isinstance(p, torch.Tensor):
        p = p.detach().cpu().numpy()
    try:
        a = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of point coordinates") from e
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape (k, d) with k, d >= 1, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _check_int(v, name, lo):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def geometric_block_tree(in_points, out_points, *, leaf_size=32, eta=2.0, split="bbox"):
    """Block tree of a grid-indexed weight (rows = ``out_points``, columns = ``in_points``).

    Parameters
    ----------
    in_points : array_like, shape (n_in, d)
    out_points : array_like, shape (n_out, d)
    leaf_size : int >= 1
    eta : float > 0
        Strong-admissibility parameter.
    split : {"bbox", "pca", "cardinality"}
        Cluster splitting rule (see :class:`hmat.ClusterTree`).

    Returns
    -------
    hmat.BlockTree
    """
    xin = _as_points(in_points, "in_points")
    xout = _as_points(out_points, "out_points")
    if xin.shape[1] != xout.shape[1]:
        raise ValueError(f"in_points and out_points must have the same dimension, got "
                         f"{xin.shape[1]} and {xout.shape[1]}")
    leaf_size = _check_int(leaf_size, "leaf_size", 1)
    if not (isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta > 0):
        raise ValueError(f"eta must be a number > 0, got {eta!r}")
    row = hmat.ClusterTree(xout, leaf_size=leaf_size, split=split)
    col = row if (xin.shape == xout.shape and np.array_equal(xin, xout)) else \
        hmat.ClusterTree(xin, leaf_size=leaf_size, split=split)
    return hmat.BlockTree(row, col, hmat.StrongAdmissibility(float(eta)))


def project_to_structure(W, bt, rank):
    """Best approximation of a dense ``W`` (out, in) in the structure of ``bt``.

    Non-admissible leaves keep their block of ``W``; admissible leaves get the
    truncated SVD of rank ``min(rank, m, n)`` (balanced factors
    ``U sqrt(S)``, ``V sqrt(S)``), which is the Frobenius-optimal choice per
    leaf, hence for the whole matrix in this structure.

    Returns
    -------
    list of hmat.Dense / hmat.LowRank in leaf order.
    """
    W = np.asarray(W, dtype=np.float64)
    R, C = bt.row_tree, bt.col_tree
    if W.shape != (R.n, C.n):
        raise ValueError(f"W must have shape ({R.n}, {C.n}), got {W.shape}")
    Wp = W[np.ix_(R.perm, C.perm)]
    ops = []
    for r0, m, c0, n, kind in bt.partition().leaves():
        B = Wp[r0:r0 + m, c0:c0 + n]
        if kind == hmat.LeafKind.DENSE:
            ops.append(hmat.Dense(np.array(B)))
            continue
        k = min(int(rank), m, n)
        u, s, vh = np.linalg.svd(B, full_matrices=False)
        sq = np.sqrt(s[:k])
        ops.append(hmat.LowRank(np.ascontiguousarray(u[:, :k] * sq), np.ascontiguousarray(vh[:k].T * sq)))
    return ops


def geometric_hmatrix_linear(in_points, out_points, *, leaf_size=32, eta=2.0, rank=4, init="glorot",
                             tol=None, bias=True, dtype=torch.float32, generator=None, split="bbox",
                             factor_scale=None):
    """A :class:`pinn.HMatrixLinear` whose block structure comes from the neurons' coordinates.

    Parameters
    ----------
    in_points : array_like, shape (in_features, d)
        Coordinates of the input neurons (e.g. grid nodes of the input function).
    out_points : array_like, shape (out_features, d)
        Coordinates of the output neurons.
    leaf_size : int
        Cluster-tree leaf size (dense diagonal/near-field blocks are at most this big).
    eta : float > 0
        Strong-admissibility parameter.
    rank : int >= 0
        Rank of every admissible (low-rank) leaf for ``init="glorot"``/``"zeros"``
        or an array ``init`` without ``tol``.
    init : {"glorot", "zeros"} or array_like (out_features, in_features)
        * ``"glorot"``: dense leaves Glorot normal, low-rank factors random with
          ``U V^T`` of Glorot variance;
        * ``"zeros"``: the weight is exactly zero, yet trainable: dense leaves and
          ``V`` are zero, ``U`` random (so ``dL/dV = G^T U`` is not zero);
        * an array ``W``: with ``tol`` the certified compression
          ``hmat.from_dense(W, tol=tol, points=(out_points, in_points), ...)``
          (``||W - H||_F <= tol ||W||_F``, adaptive ranks); without ``tol`` the
          Frobenius-best approximation with admissible leaves of rank ``rank``
          (:func:`project_to_structure`).
    tol : float > 0, optional
        Only with an array ``init``.
    bias : bool or array_like (out_features,)
        ``True``: a zero bias; ``False``: none; an array: its values.
    dtype : torch.dtype
    generator : torch.Generator, optional
        For the random initialisations.
    split : {"bbox", "pca", "cardinality"}
    factor_scale : float > 0, optional
        Standard deviation of the entries of the random low-rank factors
        (default: Glorot-derived, ``(2 / (in + out) / rank)^(1/4)``).

    Returns
    -------
    pinn.HMatrixLinear
        ``forward(x)`` takes ``x[..., j]`` = value at ``in_points[j]`` and
        returns values at ``out_points`` in their given order (the cluster-tree
        permutations are internal).

    Examples
    --------
    >>> x = np.linspace(0, 1, 256)[:, None]
    >>> layer = geometric_hmatrix_linear(x, x, leaf_size=16, eta=1.0, rank=2)
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    rank = _check_int(rank, "rank", 0)
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    xin = _as_points(in_points, "in_points")
    xout = _as_points(out_points, "out_points")
    n_in, n_out = xin.shape[0], xout.shape[0]
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or an array, got {init!r}")
        if tol is not None:
            raise ValueError("tol is only used with an array init")
        W = None
    else:
        W = np.asarray(init.detach().cpu().numpy() if isinstance(init, torch.Tensor) else init,
                       dtype=np.float64)
        if W.shape != (n_out, n_in):
            raise ValueError(f"init must have shape (out_features, in_features) = ({n_out}, {n_in}), "
                             f"got {W.shape}")
        if not np.all(np.isfinite(W)):
            raise ValueError("init must be finite")
    if isinstance(bias, bool):
        b = torch.zeros(n_out, dtype=dtype) if bias else None
    else:
        b = torch.as_tensor(np.asarray(bias, dtype=np.float64), dtype=dtype)
        if b.shape != (n_out,):
            raise ValueError(f"bias must be a bool or have shape ({n_out},), got {tuple(b.shape)}")

    if W is not None and tol is not None:
        H = hmat.from_dense(W, tol=float(tol), points=(xout, xin), eta=float(eta),
                            leaf_size=_check_int(leaf_size, "leaf_size", 1), split=split,
                            precision="full", symmetric=False)  # the layer stores its own factors
        layer = HMatrixLinear.from_hblock(H, bias=b, dtype=dtype)
        layer.tol = float(tol)
        return layer

    bt = geometric_block_tree(xin, xout, leaf_size=leaf_size, eta=eta, split=split)
    if W is not None:
        factors = [(torch.as_tensor(op.array),) if isinstance(op, hmat.Dense) else
                   (torch.as_tensor(op.U), torch.as_tensor(op.V))
                   for op in project_to_structure(W, bt, rank)]
    else:
        if factor_scale is not None and not (isinstance(factor_scale, (int, float))
                                             and not isinstance(factor_scale, bool) and factor_scale > 0):
            raise ValueError(f"factor_scale must be a number > 0, got {factor_scale!r}")
        factors = _random_leaves(bt.partition(), rank, init, generator, factor_scale)
    layer = HMatrixLinear.from_partition(bt.partition(), factors, dtype=dtype)
    if b is not None:
        layer.bias = torch.nn.Parameter(b.clone())
    return layer


def _random_leaves(partition, rank, init, generator, factor_scale=None):
    """Random float64 leaf factors (leaf order) for ``init`` "glorot" / "zeros"."""
    n_out, n_in = partition.shape
    sd = math.sqrt(2.0 / (n_out + n_in))
    factors = []
    for _, mi, _, ni, kind in partition.leaves():
        if kind == hmat.LeafKind.DENSE:
            A = torch.zeros(mi, ni, dtype=torch.float64) if init == "zeros" else \
                torch.randn(mi, ni, dtype=torch.float64, generator=generator) * sd
            factors.append((A,))
            continue
        k = min(rank, mi, ni)
        s = (sd**2 / max(k, 1)) ** 0.25 if factor_scale is None else float(factor_scale)
        U = torch.randn(mi, k, dtype=torch.float64, generator=generator) * s
        if init == "zeros":
            V = torch.zeros(ni, k, dtype=torch.float64)
        else:
            V = torch.randn(ni, k, dtype=torch.float64, generator=generator) * s
        factors.append((U, V))
    return factors


class GroupedHForward:
    """Fast inference snapshot of an :class:`pinn.HMatrixLinear`: leaves batched by shape.

    The layer's forward already applies its leaves in groups of equal
    ``(kind, m, n, rank)`` (:mod:`pinn.autograd`), but stacks each group's
    factors anew on every call and goes through autograd. This snapshot stacks
    them once (detached) and applies the same grouped product: one gather, one
    batched matmul and one scatter-add per group.

    Parameters
    ----------
    layer : pinn.HMatrixLinear
        Its current factors are copied (detached): rebuild the snapshot after
        the layer changes.

    Notes
    -----
    ``snapshot(x)`` for ``x`` of shape ``(..., in_features)`` equals
    ``layer(x)`` up to rounding; it is meant for inference timing and
    evaluation (no gradients w.r.t. the factors).
    """

    def __init__(self, layer):
        if not isinstance(layer, HMatrixLinear):
            raise TypeError(f"layer must be a pinn.HMatrixLinear, got {type(layer).__name__}")
        self.in_features, self.out_features = layer.in_features, layer.out_features
        params = [p.detach() for p in layer.factors]
        dev = params[0].device if params else torch.device("cpu")
        # the training layer's own grouping (pinn.autograd), factors stacked once here
        self.groups = stack_groups(layer.structure, params, dev)
        self.bias = None if layer.bias is None else layer.bias.detach()
        self.dtype = params[0].dtype if params else torch.get_default_dtype()

    @property
    def num_groups(self):
        return len(self.groups)

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: last dimension must be {self.in_features}, got shape {tuple(x.shape)}")
        y = apply_stacked(x, (self.out_features, self.in_features), self.groups)
        return y if self.bias is None else y + self.bias


def install_geometric_structure(layer, in_points, out_points, *, leaf_size=32, eta=2.0, rank=2,
                                generator=None, split="bbox"):
    """Give an existing :class:`pinn.HMatrixLinear` the geometric block structure (in place).

    The leaves are re-initialised as for ``geometric_hmatrix_linear(...,
    init="glorot")``; the bias is kept. This is what
    ``HMatrixLinear(in_features, out_features, in_points=..., out_points=...)``
    calls.

    Parameters
    ----------
    layer : pinn.HMatrixLinear
    in_points : array_like, shape (layer.in_features, d)
    out_points : array_like, shape (layer.out_features, d)
    leaf_size, eta, rank, generator, split
        As for :func:`geometric_hmatrix_linear`.

    Returns
    -------
    layer
    """
    if not isinstance(layer, HMatrixLinear):
        raise TypeError(f"layer must be a pinn.HMatrixLinear, got {type(layer).__name__}")
    xin = _as_points(in_points, "in_points")
    xout = _as_points(out_points, "out_points")
    if xin.shape[0] != layer.in_features:
        raise ValueError(f"in_points must have in_features = {layer.in_features} rows, got {xin.shape[0]}")
    if xout.shape[0] != layer.out_features:
        raise ValueError(f"out_points must have out_features = {layer.out_features} rows, "
                         f"got {xout.shape[0]}")
    dtype = layer.factors[0].dtype if len(layer.factors) else torch.get_default_dtype()
    src = geometric_hmatrix_linear(xin, xout, leaf_size=leaf_size, eta=eta, rank=rank, init="glorot",
                                   bias=False, dtype=dtype, generator=generator, split=split)
    layer.restructure(src.partition, [src.leaf_factors(i) for i in range(src.num_leaves)])
    return layer
