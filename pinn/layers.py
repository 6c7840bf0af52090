"""Network layers: MLP, LowRankLinear and HMatrixLinear (weights over hmat operators)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .autograd import LeafSpec, Structure, structured_linear
from .autograd import _groups as _leaf_groups

__all__ = ["MLP", "LowRankLinear", "HMatrixLinear", "block_rank_penalty", "hidden_layers",
           "ACTIVATIONS", "INITIALIZERS"]

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

    def _struct(self):
        k = self.rank
        key = k
        if self._struct_cache is None or self._struct_cache[0] != key:
            st = Structure((self.out_features, self.in_features),
                           [LeafSpec("lowrank", 0, 0, self.out_features, self.in_features, (0, 1))])
            self._struct_cache = (key, st)
        return self._struct_cache[1]

    def forward(self, x):
        return structured_linear(x, self._struct(), (self.U, self.V), self.bias)

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
            rank = _rank_for_tol(s.numpy(), tol)
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
        import hmat

        return hmat.LowRank(self.U.detach().double().numpy(), self.V.detach().double().numpy())

    @property
    def nbytes(self):
        """Bytes of the weight factors (bias excluded)."""
        return (self.U.numel() + self.V.numel()) * self.U.element_size()

    def lowrank_penalty(self):
        return self.U.pow(2).sum() + self.V.pow(2).sum()

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def _rank_for_tol(s, tol):
    """Smallest k with sqrt(sum_{i>=k} s_i^2) <= tol * ||s||."""
    s = np.asarray(s, np.float64)
    tail = np.sqrt(np.maximum(np.cumsum((s**2)[::-1])[::-1], 0.0))  # tail[k] = ||s[k:]||
    total = tail[0] if s.size else 0.0
    ok = np.nonzero(np.append(tail, 0.0) <= tol * total)[0]
    return int(ok[0])


# ----------------------------------------------------------------- HMatrixLinear
# Tree format (plain python, serializable): ("leaf", i) or ("block", [[child, ...], ...]).
# Leaf geometry: [kind, r0, c0, m, n] in permuted coordinates.


def _hodlr_tree(m, n, leaf_size, r0=0, c0=0, geo=None):
    """Weak-admissibility (HODLR) partition over index bisection trees."""
    if geo is None:
        geo = []
    if m <= leaf_size or n <= leaf_size:
        geo.append(["dense", r0, c0, m, n])
        return ("leaf", len(geo) - 1), geo
    m1, n1 = m // 2, n // 2
    grid = [[None, None], [None, None]]
    grid[0][0], _ = _hodlr_tree(m1, n1, leaf_size, r0, c0, geo)
    geo.append(["lowrank", r0, c0 + n1, m1, n - n1])
    grid[0][1] = ("leaf", len(geo) - 1)
    geo.append(["lowrank", r0 + m1, c0, m - m1, n1])
    grid[1][0] = ("leaf", len(geo) - 1)
    grid[1][1], _ = _hodlr_tree(m - m1, n - n1, leaf_size, r0 + m1, c0 + n1, geo)
    return ("block", grid), geo


class HMatrixLinear(nn.Module):
    """Linear layer whose weight (shape (out, in)) is a hierarchical (H-) matrix.

    The trainable parameters are the leaf factors: ``A`` of dense leaves and
    ``U``, ``V`` of low-rank leaves (``U V^T``), held in ``self.factors`` in the
    leaf order of :meth:`hmat.HBlock.leaves`. Forward and backward go through
    :class:`pinn.autograd.StructuredLinearFn`, so second (and higher) input
    derivatives, ``torch.func.vmap`` and ``jacrev`` work.

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
        (``eta``) instead of the HODLR index partition (see :mod:`pinn.geometric`).
    eta : float
        Strong-admissibility parameter when points are given.

    Notes
    -----
    Use :meth:`from_linear` / :meth:`from_hblock` to build one from a trained
    weight with a certified error bound; :meth:`operator` returns the current
    ``hmat.HBlock``; :meth:`to_linear` an equivalent ``nn.Linear``.
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
        tree, geo = _hodlr_tree(out_features, in_features, leaf_size)
        sd = _glorot_std(out_features, in_features)
        tensors = []
        for kind, r0, c0, m, n in geo:
            if kind == "dense":
                tensors.append((torch.randn(m, n, dtype=dtype, generator=generator) * sd,))
            else:
                s = (sd**2 / max(rank, 1)) ** 0.25
                k = min(rank, m, n)
                tensors.append((torch.randn(m, k, dtype=dtype, generator=generator) * s,
                                torch.randn(n, k, dtype=dtype, generator=generator) * s))
        self.factors = nn.ParameterList()
        self.register_buffer("row_perm", None, persistent=False)
        self.register_buffer("col_perm", None, persistent=False)
        self._set_structure(tree, geo, tensors, None, None)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None
        self.tol = None
        if (in_points is None) != (out_points is None):
            raise ValueError("in_points and out_points must be given together")
        if in_points is not None:
            from .geometric import install_geometric_structure

            install_geometric_structure(self, in_points, out_points, leaf_size=leaf_size, eta=eta,
                                        rank=rank, generator=generator)

    # ------------------------------------------------------------- structure
    def _set_structure(self, tree, geo, tensors, row_perm, col_perm):
        """Install a new leaf structure; ``tensors[i]`` = factors of leaf ``i``.

        Returns the new list of Parameters (leaf order).
        """
        self._tree = tree
        self._geo = [list(g) for g in geo]
        params = []
        leaf_idx = []
        for g, ts in zip(self._geo, tensors):
            idx = []
            for t in ts:
                idx.append(len(params))
                params.append(t if isinstance(t, nn.Parameter) else nn.Parameter(t.detach().clone()))
            leaf_idx.append(tuple(idx))
        self._leaf_idx = leaf_idx
        self.factors = nn.ParameterList(params)
        self.row_perm = None if row_perm is None else torch.as_tensor(row_perm, dtype=torch.long)
        self.col_perm = None if col_perm is None else torch.as_tensor(col_perm, dtype=torch.long)
        self._struct_cache = None
        return params

    def leaf_factors(self, i):
        """Factors of leaf ``i``: ``(A,)`` or ``(U, V)`` (Parameters)."""
        return tuple(self.factors[j] for j in self._leaf_idx[i])

    @property
    def num_leaves(self):
        return len(self._geo)

    def leaf_info(self):
        """List of dicts ``kind, r0, c0, m, n, rank`` (permuted coordinates)."""
        out = []
        for i, (kind, r0, c0, m, n) in enumerate(self._geo):
            f = self.leaf_factors(i)
            out.append(dict(kind=kind, r0=r0, c0=c0, m=m, n=n,
                            rank=(min(m, n) if kind == "dense" else int(f[0].shape[1]))))
        return out

    def _struct(self):
        dev = self.factors[0].device if len(self.factors) else torch.device("cpu")
        if self._struct_cache is None or self._struct_cache[0] != dev:
            leaves = [LeafSpec(kind, r0, c0, m, n, self._leaf_idx[i])
                      for i, (kind, r0, c0, m, n) in enumerate(self._geo)]
            st = Structure((self.out_features, self.in_features), leaves,
                           None if self.row_perm is None else self.row_perm.to(dev),
                           None if self.col_perm is None else self.col_perm.to(dev))
            self._struct_cache = (dev, st)
        return self._struct_cache[1]

    def forward(self, x):
        # ParameterList iteration costs ~1 us per parameter (thousands of leaves); the
        # underlying dict holds the same Parameters in order
        y = structured_linear(x, self._struct(), list(self.factors._parameters.values()), self.bias)
        probe = getattr(self, "_probe", None)
        if probe is not None:
            # zero dense perturbation: after backward, probe.grad = dL/dW exactly
            y = y + x @ probe.t()
        return y

    def start_probe(self):
        """Attach a zero dense perturbation ``P`` (out, in): ``W_eff = H + P``.

        After a backward pass ``self._probe.grad`` is the gradient of the loss
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
    @classmethod
    def from_hblock(cls, H, bias=None, dtype=torch.float32):
        """Layer with the leaves of an ``hmat.HBlock`` (or Dense/LowRank) ``H`` as parameters.

        Parameters
        ----------
        H : hmat.HBlock | hmat.Dense | hmat.LowRank, real, shape (out, in)
        bias : torch.Tensor, shape (out,), optional
        dtype : torch.dtype
        """
        import hmat

        m, n = H.shape
        if np.iscomplexobj(np.zeros(0, dtype=H.dtype)):
            raise TypeError("H must be real")
        geo, tensors = [], []

        def walk(op, r0, c0):
            if isinstance(op, hmat.HBlock):
                grid = []
                rr = r0
                for i, row in enumerate(op.blocks):
                    cc = c0
                    grow = []
                    for j, child in enumerate(row):
                        grow.append(walk(child, rr, cc))
                        cc += child.shape[1]
                    grid.append(grow)
                    rr += row[0].shape[0]
                return ("block", grid)
            if isinstance(op, hmat.LowRank):
                geo.append(["lowrank", r0, c0, op.shape[0], op.shape[1]])
                tensors.append((torch.as_tensor(np.ascontiguousarray(op.U), dtype=dtype),
                                torch.as_tensor(np.ascontiguousarray(op.V), dtype=dtype)))
            elif isinstance(op, hmat.Dense):
                geo.append(["dense", r0, c0, op.shape[0], op.shape[1]])
                tensors.append((torch.as_tensor(np.ascontiguousarray(op.array), dtype=dtype),))
            else:
                raise TypeError(f"unsupported operator {type(op).__name__}")
            return ("leaf", len(geo) - 1)

        tree = walk(H, 0, 0)
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features, self.out_features = int(n), int(m)
        self.factors = nn.ParameterList()
        self.register_buffer("row_perm", None, persistent=False)
        self.register_buffer("col_perm", None, persistent=False)
        rp = getattr(H, "row_perm", None)
        cp = getattr(H, "col_perm", None)
        rp = None if rp is None or np.array_equal(rp, np.arange(m)) else np.asarray(rp)
        cp = None if cp is None or np.array_equal(cp, np.arange(n)) else np.asarray(cp)
        self._set_structure(tree, geo, tensors, rp, cp)
        self.bias = None if bias is None else nn.Parameter(torch.as_tensor(bias, dtype=dtype).clone())
        self.tol = getattr(H, "error_estimate", None)
        return self

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
        import hmat

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

    def operator(self):
        """The current weight as an ``hmat.HBlock`` (numpy float64 copies of the factors)."""
        import hmat

        def build(node):
            if node[0] == "leaf":
                i = node[1]
                f = [t.detach().cpu().double().numpy() for t in self.leaf_factors(i)]
                return hmat.Dense(f[0]) if len(f) == 1 else hmat.LowRank(f[0], f[1])
            return hmat.HBlock([[build(c) for c in row] for row in node[1]])

        root = build(self._tree)
        blocks = root.blocks if isinstance(root, hmat.HBlock) else [[root]]
        rp = None if self.row_perm is None else self.row_perm.cpu().numpy()
        cp = None if self.col_perm is None else self.col_perm.cpu().numpy()
        return hmat.HBlock(blocks, rp, cp)

    @property
    def weight(self):
        """Dense weight, shape (out, in), assembled with torch ops (differentiable).

        One batched product and one scatter per group of equal-shape leaves (see
        :mod:`pinn.autograd`), in the original (unpermuted) coordinates.
        """
        struct = self._struct()
        params = list(self.factors._parameters.values())
        p0 = params[0]
        W = p0.new_zeros(self.out_features, self.in_features)
        for grp in _leaf_groups(struct, params):
            if grp.m == 0 or grp.n == 0 or (grp.kind == "lowrank" and grp.k == 0):
                continue
            rows, cols = grp.index(p0.device)
            f = grp.factors(params)
            B = f[0] if grp.kind == "dense" else f[0] @ f[1].transpose(1, 2)  # (g, m, n)
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
        for i, g in enumerate(self._geo):
            if g[0] == "lowrank":
                U, V = self.leaf_factors(i)
                tot = tot + U.pow(2).sum() + V.pow(2).sum()
        return tot

    def extra_repr(self):
        ranks = [d["rank"] for d in self.leaf_info() if d["kind"] == "lowrank"]
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"leaves={self.num_leaves}, max_rank={max(ranks) if ranks else 0}, "
                f"bytes={self.nbytes}")

    # ------------------------------------------------------------ state_dict
    def get_extra_state(self):
        return {"shape": (self.out_features, self.in_features), "tree": self._tree,
                "geo": [list(g) for g in self._geo],
                "factor_shapes": [[tuple(t.shape) for t in self.leaf_factors(i)]
                                  for i in range(self.num_leaves)],
                "row_perm": None if self.row_perm is None else self.row_perm.tolist(),
                "col_perm": None if self.col_perm is None else self.col_perm.tolist(),
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
        for i, (g, fs) in enumerate(zip(geo, fshapes)):
            kind, m, n = g[0], g[3], g[4]
            ok = (kind == "dense" and fs == [(m, n)]) or (
                kind == "lowrank" and len(fs) == 2 and fs[0][0] == m and fs[1][0] == n
                and len(fs[0]) == len(fs[1]) == 2 and fs[0][1] == fs[1][1] >= 0)
            if not ok:
                raise ValueError(f"malformed HMatrixLinear extra state: leaf {i} ({kind}, {m}x{n}) "
                                 f"has factor shapes {fs}")
        leaves = []
        _tree_leaves(tree, leaves)
        if sorted(leaves) != list(range(len(geo))):
            raise ValueError("malformed HMatrixLinear extra state: the tree's leaves are not 0..n_leaves-1")
        for name, p, n in (("row_perm", row_perm, shape[0]), ("col_perm", col_perm, shape[1])):
            if p is not None and sorted(int(v) for v in p) != list(range(n)):
                raise ValueError(f"malformed HMatrixLinear extra state: {name} is not a permutation of 0..{n - 1}")
        cur = self.get_extra_state()
        new = {"shape": shape, "tree": tree, "geo": geo, "factor_shapes": fshapes,
               "row_perm": None if row_perm is None else [int(v) for v in row_perm],
               "col_perm": None if col_perm is None else [int(v) for v in col_perm]}
        if all(_plain(cur[k]) == _plain(new[k]) for k in new):
            return None
        return new

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
        self._set_structure(plan["tree"], plan["geo"], tensors, plan["row_perm"], plan["col_perm"])

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


def _tree_leaves(node, out):
    if node[0] == "leaf":
        out.append(node[1])
    else:
        for row in node[1]:
            for c in row:
                _tree_leaves(c, out)


def _plain(v):
    """Structure values as plain nested lists (tuples vs lists, numpy ints) for comparison."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


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
    return ("block", [[_as_tree(c) for c in row] for row in node[1]])
