"""Network layers: MLP, LowRankLinear and HMatrixLinear (weights over hmat operators)."""
from __future__ import annotations

import math

import hmat
import numpy as np
import torch
from hmat import LeafKind, Partition
from torch import nn

from .autograd import Structure, structured_linear
from .ranks import rank_for_tol

__all__ = ["MLP", "LowRankLinear", "HMatrixLinear", "block_rank_penalty", "hidden_layers",
           "partition_from_grid", "ACTIVATIONS", "INITIALIZERS"]

ACTIVATIONS = {"tanh": torch.tanh, "sin": torch.sin, "gelu": nn.functional.gelu,
               "silu": nn.functional.silu, "relu": torch.relu, "elu": nn.functional.elu,
               "softplus": nn.functional.softplus, "sigmoid": torch.sigmoid,
               "cos": torch.cos}


def _glorot_std(m, n):
    return math.sqrt(2.0 / (m + n))


def _int_arg(value, name, lo):
    """``value`` as an int >= ``lo``: TypeError for a non-integer, ValueError below ``lo``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    return int(value)


def _init_weight(w, name, generator):
    """Fill ``w`` (out, in) in place by the named initializer."""
    fan_out, fan_in = w.shape
    if name == "glorot_normal":
        w.normal_(0.0, _glorot_std(fan_in, fan_out), generator=generator)
    elif name == "glorot_uniform":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        w.uniform_(-a, a, generator=generator)
    elif name == "he_normal":
        w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
    elif name == "he_uniform":
        a = math.sqrt(6.0 / fan_in)
        w.uniform_(-a, a, generator=generator)
    elif name == "lecun_normal":
        w.normal_(0.0, math.sqrt(1.0 / fan_in), generator=generator)
    else:  # zeros
        w.zero_()


INITIALIZERS = ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
                "zeros")


# --------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output, e.g. ``[2, 64, 64, 1]`` (hidden widths
        may differ per layer, ``[2, 20, 40, 20, 1]``).
    activation : {"tanh", "sin", "cos", "gelu", "silu", "relu", "elu", "softplus", "sigmoid"}
    hidden_layer : callable, optional
        ``hidden_layer(in_features, out_features) -> nn.Module`` used for the
        hidden-to-hidden layers (``layers[1:-1]``); default ``nn.Linear``.
        Input and output layers are always ``nn.Linear``.
    generator : torch.Generator, optional
        For the random initialization (biases are zero).
    initializer : {"glorot_normal", "glorot_uniform", "he_normal", "he_uniform", \
"lecun_normal", "zeros"}
        Weight initialization of the ``nn.Linear`` layers (default Glorot normal).
    output_transform : callable, optional
        ``output_transform(x, y) -> y'`` applied to the last layer's output ``y`` (N, k)
        with the input ``x`` (N, d), e.g. to impose boundary conditions exactly
        (:class:`pinn.models.BoxDirichlet`). Must be written with torch operations.

    Notes
    -----
    Input ``(N, sizes[0])``, output ``(N, sizes[-1])``, float32 by default.
    """

    def __init__(self, sizes, activation="tanh", hidden_layer=None, generator=None, *,
                 initializer="glorot_normal", output_transform=None):
        super().__init__()
        try:
            sizes = [int(s) for s in sizes]
        except (TypeError, ValueError):
            raise ValueError(f"sizes must be a sequence of positive integers, got {sizes!r}") \
                from None
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must have >= 2 positive entries, got {sizes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if initializer not in INITIALIZERS:
            raise ValueError(f"initializer must be one of {INITIALIZERS}, got {initializer!r}")
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"output_transform must be callable, got "
                            f"{type(output_transform).__name__}")
        self.sizes = sizes
        self.activation = activation
        self.initializer = initializer
        self.output_transform = output_transform
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            hidden = 0 < i < len(sizes) - 2
            if hidden and hidden_layer is not None:
                layers.append(hidden_layer(a, b))
            else:
                lin = nn.Linear(a, b)
                with torch.no_grad():
                    _init_weight(lin.weight, initializer, generator)
                    lin.bias.zero_()
                layers.append(lin)
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        h = x
        for layer in self.layers[:-1]:
            h = act(layer(h))
        y = self.layers[-1](h)
        if self.output_transform is not None:
            y = self.output_transform(x, y)
        return y


def hidden_layers(model):
    """Indices and modules of the compressible (hidden-to-hidden) layers of an MLP.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`MLP`.
    ValueError
        If it has no hidden-to-hidden layer.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a pinn.MLP, got {type(model).__name__}")
    out = [(i, m) for i, m in enumerate(model.layers) if 0 < i < len(model.layers) - 1]
    if not out:
        raise ValueError("model has no compressible layers (needs at least two hidden layers)")
    return out


def block_rank_penalty(model):
    """``sum_b (||U_b||_F^2 + ||V_b||_F^2)`` over all low-rank leaves of ``model``.

    A variational form of the nuclear norm: ``min_{UV^T = X} (||U||^2 + ||V||^2)/2
    = ||X||_*``. Returns a scalar tensor (0 if there are no low-rank leaves).
    """
    total = None
    for mod in model.modules():
        if isinstance(mod, (LowRankLinear, HMatrixLinear)):
            p = mod.lowrank_penalty()
            total = p if total is None else total + p
    if total is None:
        total = torch.zeros(())
    return total


# ------------------------------------------------------------------ LowRankLinear
class LowRankLinear(nn.Module):
    """Linear layer with weight ``W = U V^T`` (shape (out, in)), rank ``k``.

    Parameters
    ----------
    in_features, out_features : int
        >= 1.
    rank : int
        In ``[0, min(in_features, out_features)]``.
    bias : bool
    dtype : torch.dtype, optional

    Attributes
    ----------
    U : Parameter, shape (out_features, rank)
    V : Parameter, shape (in_features, rank)
    bias : Parameter, shape (out_features,) or None
    """

    def __init__(self, in_features, out_features, rank, bias=True, dtype=None, generator=None):
        super().__init__()
        in_features = _int_arg(in_features, "in_features", 1)
        out_features = _int_arg(out_features, "out_features", 1)
        rank = _int_arg(rank, "rank", 0)
        if rank > min(in_features, out_features):
            raise ValueError(f"rank must be in [0, {min(in_features, out_features)}], got {rank!r}")
        self.in_features, self.out_features = in_features, out_features
        dtype = dtype or torch.get_default_dtype()
        s = (_glorot_std(out_features, in_features) ** 2 / max(rank, 1)) ** 0.25
        self.U = nn.Parameter(torch.randn(out_features, rank, dtype=dtype, generator=generator) * s)
        self.V = nn.Parameter(torch.randn(in_features, rank, dtype=dtype, generator=generator) * s)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None
        self._struct_cache = None

    @property
    def rank(self):
        return int(self.U.shape[1])

    @property
    def structure(self):
        """The :class:`pinn.autograd.Structure` of the weight, derived from :attr:`partition`
        (factor positions ``(0, 1)``: ``U``, ``V``)."""
        if self._struct_cache is None:
            self._struct_cache = Structure.from_partition(self.partition, [(0, 1)])
        return self._struct_cache

    @property
    def partition(self):
        """:class:`hmat.Partition` of the weight: one low-rank leaf covering it."""
        m, n = self.out_features, self.in_features
        return Partition((m, n), [0], [m], [0], [n], [LeafKind.LOWRANK])

    def forward(self, x):
        return structured_linear(x, self.structure, (self.U, self.V), self.bias)

    @property
    def weight(self):
        """Dense weight ``U V^T``, shape (out, in) (differentiable)."""
        return self.U @ self.V.t()

    @classmethod
    def from_linear(cls, linear, rank=None, tol=None):
        """Truncated SVD of ``linear.weight`` (balanced factors ``U sqrt(S)``, ``V sqrt(S)``).

        Exactly one of ``rank`` (int >= 0) or ``tol`` (relative Frobenius error,
        > 0) must be given; with ``tol`` the smallest rank with
        ``||W - U V^T||_F <= tol ||W||_F`` is used.
        """
        if (rank is None) == (tol is None):
            raise ValueError("give exactly one of rank or tol")
        W = linear.weight.detach()
        u, s, vh = torch.linalg.svd(W.double(), full_matrices=False)
        if tol is not None:
            if not tol > 0:
                raise ValueError(f"tol must be > 0, got {tol!r}")
            rank = rank_for_tol(s, tol)
        rank = int(rank)
        out = cls(W.shape[1], W.shape[0], rank, bias=linear.bias is not None, dtype=W.dtype)
        r = s[:rank].sqrt()
        with torch.no_grad():
            out.U.copy_((u[:, :rank] * r).to(W.dtype))
            out.V.copy_((vh[:rank].t() * r).to(W.dtype))
            if linear.bias is not None:
                out.bias.copy_(linear.bias.detach())
        return out

    def to_linear(self):
        """An equivalent ``nn.Linear``."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        dtype=self.U.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def operator(self):
        """The weight as an ``hmat.LowRank`` (numpy float64 copy)."""
        return hmat.LowRank(self.U.detach().double().numpy(), self.V.detach().double().numpy())

    @property
    def nbytes(self):
        """Bytes of the weight factors (bias excluded)."""
        return (self.U.numel() + self.V.numel()) * self.U.element_size()

    def lowrank_penalty(self):
        return self.U.pow(2).sum() + self.V.pow(2).sum()

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


# ----------------------------------------------------------------- HMatrixLinear
_KIND_NAME = {LeafKind.DENSE: "dense", LeafKind.LOWRANK: "lowrank"}  # the kind names of leaf_info


def partition_from_grid(shape, grid, leaves, row_perm=None, col_perm=None):
    """An :class:`hmat.Partition` from a nested children grid and a leaf table.

    Parameters
    ----------
    shape : tuple (m, n)
    grid : int or list of lists
        The root: a leaf index (a single-leaf partition), or the grid (list of rows) of its
        children, each again a leaf index or a grid, the leaves numbered ``0, 1, ...`` in
        depth-first, row-major order.
    leaves : sequence of tuple
        ``(r0, m, c0, n, kind)`` per leaf, permuted coordinates, ``kind`` an
        :class:`hmat.LeafKind`.
    row_perm, col_perm : array_like of int, optional

    Returns
    -------
    hmat.Partition

    Raises
    ------
    ValueError
        As :class:`hmat.Partition` (a grid whose leaves are not in depth-first order,
        leaves that do not tile the matrix, ...).
    """
    r0, m, c0, n, kind = (np.array(col, np.int64) for col in zip(*leaves))
    return Partition(shape, r0, m, c0, n, kind, row_perm, col_perm,
                     tree=grid if isinstance(grid, list) else None)


def _grid_of(partition, node=0, leaf_of=None):
    """The nested children grid of ``partition`` below ``node`` (leaves as leaf indices)."""
    if leaf_of is None:
        leaf_of = {int(b): i for i, b in enumerate(partition.leaf_nodes)}
    if node in leaf_of:
        return leaf_of[node]
    return [[_grid_of(partition, c, leaf_of) for c in row] for row in partition.children(node)]


def _hodlr_factors(partition, rank, dtype, generator):
    """Random leaf factors of a fresh layer (leaf order): dense leaves Glorot normal, low-rank
    leaves ``U``, ``V`` of rank ``min(rank, m, n)`` with entries of std
    ``(sd^2 / rank)^(1/4)`` (so ``U V^T`` has about Glorot variance ``sd^2``)."""
    sd = _glorot_std(*partition.shape)
    s = (sd**2 / max(rank, 1)) ** 0.25
    out = []
    for r0, m, c0, n, kind in partition.leaves():
        if kind == LeafKind.DENSE:
            out.append((torch.randn(m, n, dtype=dtype, generator=generator) * sd,))
        else:
            k = min(rank, m, n)
            out.append((torch.randn(m, k, dtype=dtype, generator=generator) * s,
                        torch.randn(n, k, dtype=dtype, generator=generator) * s))
    return out


class HMatrixLinear(nn.Module):
    """Linear layer whose weight (shape (out, in)) is a hierarchical (H-) matrix.

    The block structure is an :class:`hmat.Partition` (:attr:`partition`: leaf table in
    permuted coordinates, tree, row/column permutations); the trainable parameters are the
    leaf factors: ``A`` of dense leaves and ``U``, ``V`` of low-rank leaves (``U V^T``),
    held in ``self.factors`` in the partition's leaf order. Forward and backward go through
    :class:`pinn.autograd.StructuredLinearFn`, so second (and higher) input derivatives,
    ``torch.func.vmap`` and ``jacrev`` work.

    Constructors: ``HMatrixLinear(in_features, out_features, ...)`` (= :meth:`hodlr`, or
    :meth:`geometric` when points are given), :meth:`hodlr`, :meth:`geometric`,
    :meth:`from_partition`, :meth:`from_hblock`, :meth:`from_linear`.

    Parameters
    ----------
    in_features, out_features : int
        >= 1.
    bias : bool
    leaf_size : int
        Leaf size (>= 1) of the HODLR partition built for a fresh layer.
    rank : int
        >= 0. Initial rank of the off-diagonal low-rank leaves of a fresh layer
        (Glorot-scaled random factors; dense leaves Glorot normal).
    dtype : torch.dtype, optional
    generator : torch.Generator, optional
    in_points, out_points : array_like, shape (in_features, d) / (out_features, d), optional
        Coordinates of the input and output neurons (grid-indexed layers): the block
        structure then comes from geometric cluster trees and strong admissibility
        (``eta``) instead of the HODLR index partition (see :meth:`geometric`; the
        generator advances by a HODLR layer's draws first, as in earlier versions, so a
        seeded layer is unchanged).
    eta : float
        Strong-admissibility parameter when points are given.

    Notes
    -----
    Use :meth:`from_linear` / :meth:`from_hblock` to build one from a trained
    weight with a certified error bound; :meth:`operator` returns the current
    ``hmat.HBlock``; :meth:`to_linear` an equivalent ``nn.Linear``;
    :meth:`restructure` installs another block structure (what
    :class:`pinn.DynamicHCompression` does).
    ``state_dict`` carries the block structure (extra state), so loading works
    across structure changes (same ``(out, in)`` shape), also in the standard resume
    order (model, optimizer, ``model.load_state_dict``, ``optimizer.load_state_dict``):
    the layer's Parameter objects are reused for the new structure's factors. A
    checkpoint with more factor tensors than the layer, loaded while an optimizer
    holds the layer's parameters, is refused (load the model before building the
    optimizer); a refused or invalid load leaves the layer unchanged.
    """

    def __init__(self, in_features, out_features, bias=True, *, leaf_size=32, rank=2,
                 dtype=None, generator=None, in_points=None, out_points=None, eta=2.0):
        super().__init__()
        in_features = _int_arg(in_features, "in_features", 1)
        out_features = _int_arg(out_features, "out_features", 1)
        leaf_size = _int_arg(leaf_size, "leaf_size", 1)
        rank = _int_arg(rank, "rank", 0)
        self.in_features, self.out_features = in_features, out_features
        dtype = dtype or torch.get_default_dtype()
        p = Partition.hodlr(out_features, in_features, leaf_size)
        self.factors = nn.ParameterList()
        self.register_buffer("row_perm", None, persistent=False)
        self.register_buffer("col_perm", None, persistent=False)
        self._probe = None
        self.restructure(p, _hodlr_factors(p, rank, dtype, generator))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None
        self.tol = None
        if (in_points is None) != (out_points is None):
            raise ValueError("in_points and out_points must be given together")
        if in_points is not None:
            from .geometric import install_geometric_structure

            install_geometric_structure(self, in_points, out_points, leaf_size=leaf_size, eta=eta,
                                        rank=rank, generator=generator)

    # ------------------------------------------------------------- constructors
    @classmethod
    def hodlr(cls, in_features, out_features, *, leaf_size=32, rank=2, bias=True, dtype=None,
              generator=None):
        """A fresh layer over the HODLR partition :meth:`hmat.Partition.hodlr` of
        ``(out_features, in_features)``: random leaves as described in the class docstring.

        Parameters
        ----------
        in_features, out_features : int >= 1
        leaf_size : int >= 1
        rank : int >= 0
        bias : bool
        dtype : torch.dtype, optional
        generator : torch.Generator, optional
        """
        return cls(in_features, out_features, bias, leaf_size=leaf_size, rank=rank, dtype=dtype,
                   generator=generator)

    @classmethod
    def geometric(cls, in_points, out_points, *, leaf_size=32, eta=2.0, rank=4, init="glorot",
                  tol=None, bias=True, dtype=torch.float32, generator=None, split="bbox",
                  factor_scale=None):
        """A layer whose block structure comes from the neurons' coordinates: geometric
        cluster trees of ``out_points`` (rows) and ``in_points`` (columns), strong
        admissibility ``eta``, the partition of that block tree.

        Parameters
        ----------
        in_points : array_like, shape (in_features, d)
        out_points : array_like, shape (out_features, d)
        leaf_size, eta, rank, init, tol, bias, dtype, generator, split, factor_scale
            As for :func:`pinn.geometric.geometric_hmatrix_linear` (which this is).

        Returns
        -------
        HMatrixLinear
        """
        from .geometric import geometric_hmatrix_linear

        return geometric_hmatrix_linear(in_points, out_points, leaf_size=leaf_size, eta=eta,
                                        rank=rank, init=init, tol=tol, bias=bias, dtype=dtype,
                                        generator=generator, split=split, factor_scale=factor_scale)

    @classmethod
    def from_partition(cls, partition, factors, bias=None, dtype=None):
        """A layer with block structure ``partition`` and the given leaf factors.

        Parameters
        ----------
        partition : hmat.Partition
            Shape ``(out_features, in_features)``.
        factors : sequence of tuple of torch.Tensor
            Per leaf in the partition's order: ``(A,)`` (shape ``(m, n)``) for a ``DENSE``
            leaf, ``(U, V)`` (``(m, k)``, ``(n, k)``) for a ``LOWRANK`` one; copied.
        bias : torch.Tensor or array_like, shape (out_features,), optional
        dtype : torch.dtype, optional
            Of the parameters (default: that of the first factor).

        Returns
        -------
        HMatrixLinear
        """
        if not isinstance(partition, Partition):
            raise TypeError(f"partition must be an hmat.Partition, got {type(partition).__name__}")
        factors = [tuple(f) for f in factors]
        if dtype is None:
            dtype = factors[0][0].dtype if factors and factors[0] else torch.get_default_dtype()
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.out_features, self.in_features = partition.shape
        self.factors = nn.ParameterList()
        self.register_buffer("row_perm", None, persistent=False)
        self.register_buffer("col_perm", None, persistent=False)
        self._probe = None
        self.restructure(partition, [tuple(torch.as_tensor(t).detach().to(dtype) for t in f)
                                     for f in factors])
        self.bias = None if bias is None else nn.Parameter(
            torch.as_tensor(bias).to(dtype).detach().clone())
        self.tol = None
        return self

    @classmethod
    def from_hblock(cls, H, bias=None, dtype=torch.float32):
        """Layer with the leaves of an ``hmat.HBlock`` (or Dense/LowRank) ``H`` as parameters.

        The layer's partition is ``H.partition`` with each leaf's kind that of its operator
        (an admissible leaf that ``H`` stores dense is a dense leaf of the layer).

        Parameters
        ----------
        H : hmat.HBlock | hmat.Dense | hmat.LowRank, real, shape (out, in)
        bias : torch.Tensor, shape (out,), optional
        dtype : torch.dtype
        """
        if not isinstance(H, (hmat.HBlock, hmat.Dense, hmat.LowRank)):
            raise TypeError(f"H must be an hmat.HBlock, Dense or LowRank, got {type(H).__name__}")
        if np.iscomplexobj(np.zeros(0, dtype=H.dtype)):
            raise TypeError("H must be real")
        if isinstance(H, hmat.HBlock):
            src, ops = H.partition, [lf.op for lf in H.leaves()]
        else:
            m, n = H.shape
            src, ops = Partition((m, n), [0], [m], [0], [n], [LeafKind.DENSE]), [H]
        factors, kinds = [], []
        for op in ops:
            if isinstance(op, hmat.LowRank):
                kinds.append(int(LeafKind.LOWRANK))
                factors.append((torch.as_tensor(np.ascontiguousarray(op.U), dtype=dtype),
                                torch.as_tensor(np.ascontiguousarray(op.V), dtype=dtype)))
            elif isinstance(op, hmat.Dense):
                kinds.append(int(LeafKind.DENSE))
                factors.append((torch.as_tensor(np.ascontiguousarray(op.array), dtype=dtype),))
            else:
                raise TypeError(f"unsupported operator {type(op).__name__}")
        p = _with_kinds(src, kinds)
        out = cls.from_partition(p, factors, bias=None, dtype=dtype)
        if bias is not None:
            out.bias = nn.Parameter(torch.as_tensor(bias, dtype=dtype).clone())
        out.tol = getattr(H, "error_estimate", None)
        return out

    @classmethod
    def from_linear(cls, linear, tol=1e-3, *, leaf_size=32, eta=2.0, points=None,
                    admissibility=None):
        """Compress ``linear.weight`` with a certified error bound.

        ``||W - H||_F <= tol ||W||_F`` via ``hmat.from_dense`` (index cluster
        trees and weak admissibility unless ``points``/``admissibility`` are
        given).

        Parameters
        ----------
        linear : nn.Linear (or anything with ``weight`` (out, in) and ``bias``)
        tol : float > 0
        leaf_size : int
        eta : float
        points : array_like, optional
            Passed to ``hmat.from_dense``.
        admissibility : optional
            Passed to ``hmat.from_dense``.
        """
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"tol must be > 0, got {tol!r}")
        W = linear.weight.detach().cpu().double().numpy()
        # the layer stores its own factors in the weight's dtype: hmat's storage options
        # (float32 parts, symmetric storage) would only spend part of the tolerance
        kw = dict(tol=float(tol), eta=eta, leaf_size=int(leaf_size), precision="full", symmetric=False)
        if points is not None:
            kw["points"] = points
        if admissibility is not None:
            kw["admissibility"] = admissibility
        H = hmat.from_dense(W, **kw)
        b = None if linear.bias is None else linear.bias.detach()
        out = cls.from_hblock(H, bias=b, dtype=linear.weight.dtype)
        out.tol = float(tol)
        return out

    # ------------------------------------------------------------- structure
    @property
    def partition(self):
        """:class:`hmat.Partition`: the block structure (immutable; change it with
        :meth:`restructure`)."""
        return self._partition

    def restructure(self, partition, factors):
        """Install the block structure ``partition`` with leaf factors ``factors``.

        Parameters
        ----------
        partition : hmat.Partition
            Of shape ``(out_features, in_features)``.
        factors : sequence of tuple of torch.Tensor
            Per leaf in the partition's order: ``(A,)`` of shape ``(m, n)`` (``DENSE``) or
            ``(U, V)`` of shapes ``(m, k)``, ``(n, k)`` (``LOWRANK``), one dtype and device.
            A ``nn.Parameter`` is kept as the very object (an optimizer holding it keeps
            training it); any other tensor is copied into a new Parameter.

        Returns
        -------
        list of nn.Parameter
            The layer's new factor parameters, in order (as ``list(self.factors)``).

        Raises
        ------
        TypeError
            ``partition`` is not an :class:`hmat.Partition`.
        ValueError
            Another shape, a factor count or shape that does not match its leaf.

        Notes
        -----
        The bias, ``tol`` and the probe are kept; the permutation buffers follow the
        partition (None where it is the identity), on the factors' device.
        """
        if not isinstance(partition, Partition):
            raise TypeError(f"partition must be an hmat.Partition, got {type(partition).__name__}")
        if tuple(partition.shape) != (self.out_features, self.in_features):
            raise ValueError(f"partition has shape {tuple(partition.shape)}, the layer "
                             f"{(self.out_features, self.in_features)} (out, in)")
        factors = [tuple(f) for f in factors]
        if len(factors) != partition.n_leaves:
            raise ValueError(f"factors has {len(factors)} entries, the partition {partition.n_leaves} leaves")
        params, leaf_idx = [], []
        for i, ((r0, m, c0, n, kind), ts) in enumerate(zip(partition.leaves(), factors)):
            shapes = [tuple(t.shape) for t in ts]
            ok = shapes == [(m, n)] if kind == LeafKind.DENSE else (
                len(shapes) == 2 and len(shapes[0]) == len(shapes[1]) == 2
                and shapes[0][0] == m and shapes[1][0] == n and shapes[0][1] == shapes[1][1])
            if not ok:
                raise ValueError(f"factors[{i}]: leaf {i} ({_KIND_NAME[int(kind)]}, {m}x{n}) "
                                 f"has factor shapes {shapes}")
            idx = []
            for t in ts:
                idx.append(len(params))
                params.append(t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach().clone()))
            leaf_idx.append(tuple(idx))
        self._partition = partition
        self._leaf_idx = leaf_idx
        self.factors = nn.ParameterList(params)
        dev = params[0].device if params else torch.device("cpu")
        rows, cols = partition.permuted
        self.row_perm = torch.tensor(partition.row_perm, dtype=torch.long, device=dev) if rows else None
        self.col_perm = torch.tensor(partition.col_perm, dtype=torch.long, device=dev) if cols else None
        self._struct_cache = None
        return params

    def leaf_factors(self, i):
        """Factors of leaf ``i``: ``(A,)`` or ``(U, V)`` (Parameters)."""
        return tuple(self.factors[j] for j in self._leaf_idx[i])

    @property
    def num_leaves(self):
        return self._partition.n_leaves

    def leaf_info(self):
        """List of dicts ``kind, r0, c0, m, n, rank`` (permuted coordinates; ``kind`` is
        ``"dense"`` or ``"lowrank"``)."""
        out = []
        for i, (r0, m, c0, n, kind) in enumerate(self._partition.leaves()):
            f = self.leaf_factors(i)
            out.append(dict(kind=_KIND_NAME[int(kind)], r0=r0, c0=c0, m=m, n=n,
                            rank=(min(m, n) if kind == LeafKind.DENSE else int(f[0].shape[1]))))
        return out

    @property
    def structure(self):
        """The :class:`pinn.autograd.Structure` of the layer (permutations on the factors'
        device), derived from :attr:`partition`; cached until the structure or device changes."""
        dev = self.factors[0].device if len(self.factors) else torch.device("cpu")
        if self._struct_cache is None or self._struct_cache[0] != dev:
            self._struct_cache = (dev, Structure.from_partition(self._partition, self._leaf_idx, dev))
        return self._struct_cache[1]

    def forward(self, x):
        # ParameterList iteration costs ~1 us per parameter (thousands of leaves); the
        # underlying dict holds the same Parameters in order
        y = structured_linear(x, self.structure, list(self.factors._parameters.values()), self.bias)
        probe = self._probe
        if probe is not None:
            # zero dense perturbation: after backward, probe.grad = dL/dW exactly
            y = y + x @ probe.t()
        return y

    @property
    def probe(self):
        """The zero dense perturbation of :meth:`start_probe` (shape (out, in)), or None."""
        return self._probe

    def start_probe(self):
        """Attach a zero dense perturbation ``P`` (out, in): ``W_eff = H + P``.

        After a backward pass ``self.probe.grad`` is the gradient of the loss
        with respect to the dense weight (all autograd paths included). Costs
        one dense matmul per forward; remove it with :meth:`stop_probe`.
        """
        p = self.factors[0]
        self._probe = torch.zeros(self.out_features, self.in_features, dtype=p.dtype,
                                  device=p.device, requires_grad=True)
        return self._probe

    def stop_probe(self):
        self._probe = None

    # ----------------------------------------------------------- conversions
    def operator(self):
        """The current weight as an ``hmat.HBlock`` (numpy float64 copies of the factors)."""
        ops = []
        for i in range(self.num_leaves):
            f = [t.detach().cpu().double().numpy() for t in self.leaf_factors(i)]
            ops.append(hmat.Dense(f[0]) if len(f) == 1 else hmat.LowRank(f[0], f[1]))
        return hmat.HBlock.from_partition(self._partition, ops)

    @property
    def weight(self):
        """Dense weight, shape (out, in), assembled with torch ops (differentiable).

        One batched product and one scatter per group of equal-shape leaves (see
        :mod:`pinn.autograd`), in the original (unpermuted) coordinates.
        """
        struct = self.structure
        params = list(self.factors._parameters.values())
        p0 = params[0]
        W = p0.new_zeros(self.out_features, self.in_features)
        for grp in struct.groups(params):
            if grp.m == 0 or grp.n == 0 or (grp.kind == LeafKind.LOWRANK and grp.k == 0):
                continue
            rows, cols = grp.index(p0.device)
            f = grp.factors(params)
            B = f[0] if grp.kind == LeafKind.DENSE else f[0] @ f[1].transpose(1, 2)  # (g, m, n)
            r = rows.view(grp.g, grp.m, 1).expand(grp.g, grp.m, grp.n).reshape(-1)
            c = cols.view(grp.g, 1, grp.n).expand(grp.g, grp.m, grp.n).reshape(-1)
            W = W.index_put((r, c), B.reshape(-1), accumulate=True)
        return W

    def to_linear(self):
        """An equivalent ``nn.Linear``."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        dtype=self.factors[0].dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    @property
    def nbytes(self):
        """Bytes of the leaf factors (bias and index permutations excluded)."""
        return sum(p.numel() * p.element_size() for p in self.factors)

    def lowrank_penalty(self):
        tot = self.factors[0].new_zeros(())
        for i, kind in enumerate(self._partition.kind):
            if kind == LeafKind.LOWRANK:
                U, V = self.leaf_factors(i)
                tot = tot + U.pow(2).sum() + V.pow(2).sum()
        return tot

    def extra_repr(self):
        ranks = [d["rank"] for d in self.leaf_info() if d["kind"] == "lowrank"]
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"leaves={self.num_leaves}, max_rank={max(ranks) if ranks else 0}, "
                f"bytes={self.nbytes}")

    # ------------------------------------------------------------ state_dict
    # Checkpoint format (unchanged since before the Partition): "tree" is the nested form
    # ("leaf", i) / ("block", [[child, ...], ...]) with i the depth-first leaf number, "geo"
    # the leaf table [kind, r0, c0, m, n] (kind "dense"/"lowrank", permuted coordinates).
    def get_extra_state(self):
        P = self._partition
        rows, cols = P.permuted
        return {"shape": (self.out_features, self.in_features), "tree": _tree_of(_grid_of(P)),
                "geo": [[_KIND_NAME[int(k)], r0, c0, m, n] for r0, m, c0, n, k in P.leaves()],
                "factor_shapes": [[tuple(t.shape) for t in self.leaf_factors(i)]
                                  for i in range(self.num_leaves)],
                "row_perm": P.row_perm.tolist() if rows else None,
                "col_perm": P.col_perm.tolist() if cols else None,
                "tol": self.tol}

    def set_extra_state(self, state):
        """Install the block structure described by ``state`` (from :meth:`get_extra_state`).

        The factor values become zeros (``load_state_dict`` fills them right after). The
        layer's existing factor Parameters are reused, in order, as the new structure's
        factors (their data is replaced, the objects stay): an optimizer built before the
        load keeps training them. See :meth:`_load_from_state_dict` for the checks.
        """
        plan = self._plan_structure(state)
        if plan is not None:
            self._install_plan(plan)
        self.tol = state.get("tol")

    def _plan_structure(self, state):
        """The structure change ``state`` asks for (None if none), after validating it.

        Raises ValueError (nothing changed) for a malformed state or another layer shape.
        """
        try:
            shape = tuple(int(v) for v in state["shape"])
            tree = _as_tree(state["tree"])
            geo = [[str(g[0])] + [int(v) for v in g[1:]] for g in state["geo"]]
            fshapes = [[tuple(int(v) for v in t) for t in shapes] for shapes in state["factor_shapes"]]
            row_perm, col_perm = state["row_perm"], state["col_perm"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed HMatrixLinear extra state ({type(exc).__name__}: {exc})") from None
        if shape != (self.out_features, self.in_features):
            raise ValueError(f"checkpoint layer has shape {shape} (out, in), this layer "
                             f"{(self.out_features, self.in_features)}")
        if len(geo) != len(fshapes):
            raise ValueError(f"malformed HMatrixLinear extra state: {len(geo)} leaves, "
                             f"{len(fshapes)} factor shape lists")
        codes = {name: code for code, name in _KIND_NAME.items()}
        for i, (g, fs) in enumerate(zip(geo, fshapes)):
            kind, m, n = g[0], g[3], g[4]
            ok = (kind == "dense" and fs == [(m, n)]) or (
                kind == "lowrank" and len(fs) == 2 and fs[0][0] == m and fs[1][0] == n
                and len(fs[0]) == len(fs[1]) == 2 and fs[0][1] == fs[1][1] >= 0)
            if not ok:
                raise ValueError(f"malformed HMatrixLinear extra state: leaf {i} ({kind}, {m}x{n}) "
                                 f"has factor shapes {fs}")
        for name, p, n in (("row_perm", row_perm, shape[0]), ("col_perm", col_perm, shape[1])):
            if p is not None and sorted(int(v) for v in p) != list(range(n)):
                raise ValueError(f"malformed HMatrixLinear extra state: {name} is not a permutation of 0..{n - 1}")
        try:
            partition = partition_from_grid(
                shape, _grid_from_tree(tree), [(g[1], g[3], g[2], g[4], codes[g[0]]) for g in geo],
                None if row_perm is None else [int(v) for v in row_perm],
                None if col_perm is None else [int(v) for v in col_perm])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed HMatrixLinear extra state: {exc}") from None
        cur = [[tuple(t.shape) for t in self.leaf_factors(i)] for i in range(self.num_leaves)]
        if partition == self._partition and cur == fshapes:
            return None
        return {"partition": partition, "factor_shapes": fshapes}

    def _install_plan(self, plan):
        old = list(self.factors._parameters.values())
        dtype = old[0].dtype if old else torch.get_default_dtype()
        device = old[0].device if old else torch.device("cpu")
        flat = [s for shapes in plan["factor_shapes"] for s in shapes]
        params = []
        for j, s in enumerate(flat):
            if j < len(old):  # keep the Parameter object (an optimizer may hold it)
                p = old[j]
                p.data = torch.zeros(s, dtype=dtype, device=device)
                p.grad = None
            else:
                p = nn.Parameter(torch.zeros(s, dtype=dtype, device=device))
            params.append(p)
        it = iter(params)
        tensors = [tuple(next(it) for _ in shapes) for shapes in plan["factor_shapes"]]
        self.restructure(plan["partition"], tensors)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Rebuild the structure from the checkpoint's extra state, then load the values.

        Works in the standard resume order (model, optimizer, ``model.load_state_dict``,
        ``optimizer.load_state_dict``) when the checkpoint's structure has no more factor
        tensors than this layer: existing Parameters are reused. When it has more and an
        optimizer already holds this layer's parameters, the extra factors would never be
        trained: the load is refused (this layer unchanged) with a message saying to load
        the model before building the optimizer. Any invalid entry (malformed structure,
        missing factor, wrong shape) also leaves the layer unchanged.
        """
        key = prefix + "_extra_state"
        if key in state_dict:
            try:
                plan = self._plan_structure(state_dict[key])
                if plan is not None:
                    self._check_values(plan, state_dict, prefix)
            except ValueError as exc:
                error_msgs.append(f"{prefix or 'HMatrixLinear'}: {exc}")
                return  # nothing changed
            if plan is not None:
                self._install_plan(plan)  # rebuild structure before loading values
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_values(self, plan, state_dict, prefix):
        flat = [s for shapes in plan["factor_shapes"] for s in shapes]
        for j, s in enumerate(flat):
            k = f"{prefix}factors.{j}"
            if k not in state_dict:
                raise ValueError(f"checkpoint has a new block structure but no value for {k!r}")
            if tuple(state_dict[k].shape) != s:
                raise ValueError(f"{k!r} has shape {tuple(state_dict[k].shape)}, the structure says {s}")
        extra = f"{prefix}factors.{len(flat)}"
        if extra in state_dict:
            raise ValueError(f"checkpoint has more factor tensors ({extra!r}) than its structure")
        old = list(self.factors._parameters.values())
        if len(flat) > len(old) and _held_by_optimizer(old):
            raise ValueError(
                f"the checkpoint's block structure has {len(flat)} factor tensors, this layer "
                f"{len(old)}, and an optimizer already holds this layer's parameters: it would "
                f"never train the {len(flat) - len(old)} new ones. Load the model state first, "
                f"then build the optimizer, then load the optimizer state.")


def _with_kinds(partition, kinds):
    """``partition`` with leaf kinds ``kinds`` (same tiling and tree)."""
    kinds = np.asarray(kinds, np.int64)
    if np.array_equal(kinds, partition.kind):
        return partition
    nk = np.array(partition.node_kind, np.int64)
    nk[partition.leaf_nodes] = kinds
    rows, cols = partition.permuted
    return Partition(partition.shape, partition.r0, partition.m, partition.c0, partition.n, kinds,
                          partition.row_perm if rows else None, partition.col_perm if cols else None,
                          tree=(nk, partition.node_first, partition.node_nr, partition.node_nc))


def _tree_of(grid):
    """The checkpoint tree form of a nested grid."""
    if isinstance(grid, list):
        return ("block", [[_tree_of(c) for c in row] for row in grid])
    return ("leaf", int(grid))


def _grid_from_tree(node):
    """The nested grid of a checkpoint tree."""
    if node[0] == "leaf":
        return int(node[1])
    return [[_grid_from_tree(c) for c in row] for row in node[1]]


def _held_by_optimizer(params):
    """Whether a live ``torch.optim.Optimizer`` has one of ``params`` in a parameter group."""
    import gc

    ids = {id(p) for p in params}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.optim.Optimizer):  # type(): no __class__ lookups
            for group in obj.param_groups:
                if any(id(p) in ids for p in group["params"]):
                    return True
    return False


def _as_tree(node):
    if node[0] == "leaf":
        return ("leaf", int(node[1]))
    if node[0] != "block":
        raise ValueError(f"unknown tree node {node[0]!r}")
    return ("block", [[_as_tree(c) for c in row] for row in node[1]])
