"""Custom autograd for linear layers whose weight is a structured (H- or low-rank) operator.

The weight ``W`` (shape ``(m, n)``) is stored as *leaves* in permuted
coordinates, exactly as an :class:`hmat.HBlock` stores them: leaf ``i`` covers
permuted rows ``r0:r0+m_i`` and columns ``c0:c0+n_i`` and is either dense
(``A``, shape ``(m_i, n_i)``) or low rank (``U V^T``, ``U`` shape ``(m_i, k)``,
``V`` shape ``(n_i, k)``). ``row_perm[p]`` is the original output index held at
permuted position ``p`` (likewise ``col_perm``).

:class:`StructuredLinearFn` computes ``y = x W^T`` for ``x`` of shape
``(..., n)``. Its backward

* applies the *same* Function to the adjoint structure (``W^T``), so the
  input gradient is again differentiable by this Function -- double backward
  (PDE residuals with second derivatives) works to any order;
* computes the leaf-factor gradients as bilinear forms in plain torch ops
  (``dA = G^T X``, ``dU = G^T (X V)``, ``dV = X^T (G U)``), so they are
  differentiable too.

Leaves are applied in *groups*, not one by one: the factors of the leaves of
one kind, shape, rank and orientation are stacked (``torch.stack``); working
on ``x^T`` (so leaf blocks are contiguous rows), the group's input blocks are
gathered with one ``index_select`` (the permutations folded into the indices),
multiplied with one batched matmul (``A X^T`` or ``U (V^T X^T)``) and added into
``y^T`` with one out-of-place ``index_add``; the factor gradients are batched
the same way and split per leaf with ``unbind``. A layer with hundreds of leaves
thus costs a few dozen torch ops per pass (plus the per-tensor cost of one
parameter per leaf factor). The grouping (and its index tensors, per device)
is cached on the :class:`Structure`, keyed by the parameter shapes.

A ``vmap`` rule folds a vmapped batch dimension of ``x`` into the row
dimension (one matmat), so ``torch.func.vmap``/``jacrev`` work (the NTK needs
them); if leaf factors themselves are batched it falls back to a loop.
Forward mode (``torch.func.jvp``/``jacfwd``, hence ``torch.func.hessian``) is
not implemented: use ``jacrev(jacrev(f))`` for Hessians.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from hmat import LeafKind

__all__ = ["LeafSpec", "LeafGroup", "Structure", "StructuredLinearFn", "structured_linear",
           "stack_groups", "apply_stacked"]


_KIND_OF_NAME = {"dense": LeafKind.DENSE, "lowrank": LeafKind.LOWRANK}


@dataclass(frozen=True)
class LeafSpec:
    """Geometry of one leaf.

    Attributes
    ----------
    kind : hmat.LeafKind
        ``DENSE`` or ``LOWRANK`` (the names ``"dense"`` / ``"lowrank"`` are accepted and
        converted).
    r0, c0 : int
        First permuted row / column of the leaf in the (possibly adjoint) operator.
    m, n : int
        Leaf shape in the (possibly adjoint) operator.
    idx : tuple of int
        Positions of the leaf's factors in the parameter list: ``(iA,)`` or ``(iU, iV)``.
    transposed : bool
        The leaf applies the transpose of its stored factors.
    """

    kind: LeafKind
    r0: int
    c0: int
    m: int
    n: int
    idx: tuple
    transposed: bool = False

    def __post_init__(self):
        kind = _KIND_OF_NAME.get(self.kind, self.kind)
        if kind not in (LeafKind.DENSE, LeafKind.LOWRANK):
            raise ValueError(f"kind must be LeafKind.DENSE or LeafKind.LOWRANK, got {self.kind!r}")
        object.__setattr__(self, "kind", LeafKind(kind))

    def adjoint(self):
        return LeafSpec(self.kind, self.c0, self.r0, self.n, self.m, self.idx, not self.transposed)


class Structure:
    """Leaf layout and permutations of a structured weight (no tensors of parameters).

    Parameters
    ----------
    shape : tuple (m, n)
    leaves : sequence of LeafSpec
    row_perm, col_perm : torch.LongTensor of shape (m,) / (n,), or None (identity)
    """

    def __init__(self, shape, leaves, row_perm=None, col_perm=None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.leaves = tuple(leaves)
        self.row_perm = row_perm
        self.col_perm = col_perm
        self.inv_row_perm = None if row_perm is None else torch.argsort(row_perm)
        self._adj = None
        self._groups = None  # (parameter shapes, leaf groups): see groups()

    @classmethod
    def from_partition(cls, partition, factor_index, device=None):
        """The structure of a weight with block structure ``partition``.

        Parameters
        ----------
        partition : hmat.Partition
        factor_index : sequence of tuple of int
            Per leaf (partition order), the positions of its factors in the parameter
            list: ``(iA,)`` for a ``DENSE`` leaf, ``(iU, iV)`` for a ``LOWRANK`` one.
        device : torch.device, optional
            Of the permutation tensors (None where the partition's is the identity).

        Returns
        -------
        Structure
        """
        factor_index = [tuple(ix) for ix in factor_index]
        if len(factor_index) != partition.n_leaves:
            raise ValueError(f"factor_index has {len(factor_index)} entries, the partition "
                             f"{partition.n_leaves} leaves")
        leaves = [LeafSpec(kind, r0, c0, m, n, ix)
                  for (r0, m, c0, n, kind), ix in zip(partition.leaves(), factor_index)]
        rows, cols = partition.permuted
        perm = (lambda p, on: torch.tensor(p, dtype=torch.long, device=device) if on else None)
        return cls(partition.shape, leaves, perm(partition.row_perm, rows), perm(partition.col_perm, cols))

    def adjoint(self):
        """Structure of ``W^T`` over the same parameter list."""
        if self._adj is None:
            adj = Structure((self.shape[1], self.shape[0]), [lf.adjoint() for lf in self.leaves],
                            self.col_perm, self.row_perm)
            adj._adj = self
            self._adj = adj
        return self._adj

    def groups(self, params):
        """The leaves grouped by kind, shape, rank and orientation for these parameters.

        Parameters
        ----------
        params : sequence of torch.Tensor
            The parameter list the leaves' ``idx`` point into (ranks come from the shapes).

        Returns
        -------
        tuple of LeafGroup
            Cached on the structure, keyed by the parameter shapes.
        """
        key = tuple(p.shape for p in params)
        if self._groups is not None and self._groups[0] == key:
            return self._groups[1]
        buckets = {}
        for lf in self.leaves:
            k = 0 if lf.kind == LeafKind.DENSE else int(params[lf.idx[0]].shape[1])
            buckets.setdefault((lf.kind, lf.m, lf.n, k, lf.transposed), []).append(lf)
        groups = tuple(LeafGroup(*gk, lvs, self.row_perm, self.col_perm) for gk, lvs in buckets.items())
        self._groups = (key, groups)
        return groups

    def to(self, device):
        """A copy with the permutation tensors on ``device``."""
        mv = (lambda p: None if p is None else p.to(device))
        return Structure(self.shape, self.leaves, mv(self.row_perm), mv(self.col_perm))


class LeafGroup:
    """Leaves of one kind, shape ``(m, n)``, rank ``k`` and orientation (see
    :meth:`Structure.groups`).

    ``rows`` / ``cols`` (LongTensor, shape ``(g*m,)`` / ``(g*n,)``) are the
    *original* output / input indices of the group's leaves, leaf after leaf
    (the permutations are folded in), so a gather of ``x`` and a scatter-add
    into ``y`` need no permuted copies. ``pidx[j]`` lists the parameter
    positions of the ``j``-th factor of every leaf: ``(A_1, ..., A_g)`` or
    ``(U_1, ...), (V_1, ...)`` as stored (before any transposition).
    """

    __slots__ = ("kind", "m", "n", "k", "transposed", "g", "pidx", "_index")

    def __init__(self, kind, m, n, k, transposed, leaves, row_perm, col_perm):
        self.kind, self.m, self.n, self.k, self.transposed = kind, m, n, k, transposed
        self.g = len(leaves)
        self.pidx = tuple(tuple(lf.idx[j] for lf in leaves) for j in range(len(leaves[0].idx)))
        rows = torch.cat([torch.arange(lf.r0, lf.r0 + m) for lf in leaves])
        cols = torch.cat([torch.arange(lf.c0, lf.c0 + n) for lf in leaves])
        if row_perm is not None:
            rows = row_perm.cpu()[rows]
        if col_perm is not None:
            cols = col_perm.cpu()[cols]
        self._index = {torch.device("cpu"): (rows, cols)}

    def index(self, device):
        """``(rows, cols)`` on ``device`` (moved once, then cached)."""
        out = self._index.get(device)
        if out is None:
            rows, cols = self._index[torch.device("cpu")]
            out = self._index[device] = (rows.to(device), cols.to(device))
        return out

    def factors(self, params):
        """Stacked factors as applied: ``(A,)`` with ``A`` (g, m, n), or ``(U, V)``
        with ``U`` (g, m, k), ``V`` (g, n, k) (the leaves' orientation respected)."""
        st = [torch.stack([params[i] for i in ix]) for ix in self.pidx]
        if self.kind == LeafKind.DENSE:
            return (st[0].transpose(1, 2) if self.transposed else st[0],)
        return (st[1], st[0]) if self.transposed else (st[0], st[1])


def _single_leaf(struct):
    """The leaf of a structure made of one full-size leaf without permutations (a
    :class:`pinn.LowRankLinear`), or None: such a weight is applied with plain matmuls."""
    if len(struct.leaves) != 1 or struct.row_perm is not None or struct.col_perm is not None:
        return None
    lf = struct.leaves[0]
    return lf if (lf.r0, lf.c0, lf.m, lf.n) == (0, 0) + struct.shape else None


def _leaf_factors(lf, params):
    """Factors of one leaf as applied: ``(A,)`` or ``(U, V)`` (orientation respected)."""
    if lf.kind == LeafKind.DENSE:
        A = params[lf.idx[0]]
        return (A.t() if lf.transposed else A,)
    U, V = params[lf.idx[0]], params[lf.idx[1]]
    return (V, U) if lf.transposed else (U, V)


def _gather(zt, idx, g, size):
    """Rows ``idx`` of ``zt`` (N, B) as a (g, size, B) batch."""
    return zt.index_select(0, idx).reshape(g, size, zt.shape[1])


def stack_groups(struct, params, device):
    """The groups of ``struct`` that contribute, with their factors stacked.

    Parameters
    ----------
    struct : Structure
    params : sequence of torch.Tensor
    device : torch.device
        Where the index tensors go.

    Returns
    -------
    list of tuple
        ``(group, rows, cols, factors)`` per :class:`LeafGroup` (groups of empty leaves or
        rank 0 left out): ``rows``/``cols`` as :meth:`LeafGroup.index`, ``factors`` as
        :meth:`LeafGroup.factors`.
    """
    out = []
    for grp in struct.groups(params):
        if grp.m == 0 or grp.n == 0 or (grp.kind == LeafKind.LOWRANK and grp.k == 0):
            continue  # contributes nothing
        rows, cols = grp.index(device)
        out.append((grp, rows, cols, grp.factors(params)))
    return out


def apply_stacked(x, shape, stacked):
    """``x W^T`` from :func:`stack_groups` groups: per group one gather, one batched matmul
    and one out-of-place scatter-add.

    Parameters
    ----------
    x : torch.Tensor, shape (..., n)
    shape : tuple (m, n)
    stacked : list from :func:`stack_groups`

    Returns
    -------
    torch.Tensor, shape (..., m)
    """
    m, n = shape
    lead = x.shape[:-1]
    # work on x^T (n, B): gathered leaf blocks and leaf outputs are contiguous rows
    xt = x.reshape(-1, n).t().contiguous()
    B = xt.shape[1]
    yt = xt.new_zeros((m, B))
    for grp, rows, cols, f in stacked:
        X = _gather(xt, cols, grp.g, grp.n)                      # (g, n, B)
        if grp.kind == LeafKind.DENSE:
            Y = f[0] @ X                                         # (g, m, B)
        else:
            Y = f[0] @ (f[1].transpose(1, 2) @ X)
        yt = yt.index_add(0, rows, Y.reshape(grp.g * grp.m, B))
    return yt.t().contiguous().reshape(*lead, m)


def _apply(x, struct, params):
    m, n = struct.shape
    if x.shape[-1] != n:
        raise ValueError(f"x: last dimension must be {n}, got shape {tuple(x.shape)}")
    lf = _single_leaf(struct)
    if lf is not None:  # one full-size leaf: two plain matmuls, no gather/scatter
        x2 = x.reshape(-1, n)
        f = _leaf_factors(lf, params)
        y = x2 @ f[0].t() if lf.kind == LeafKind.DENSE else (x2 @ f[1]) @ f[0].t()
        return y.reshape(*x.shape[:-1], m)
    return apply_stacked(x, struct.shape, stack_groups(struct, params, x.device))


def _param_grads(x, gy, struct, params, needs):
    m, n = struct.shape
    grads = [None] * len(params)
    lf = _single_leaf(struct)
    if lf is not None:
        x2, g2 = x.reshape(-1, n), gy.reshape(-1, m)
        if lf.kind == LeafKind.DENSE:
            dA = g2.t() @ x2  # (m, n) as applied
            grads[lf.idx[0]] = dA.t() if lf.transposed else dA
        else:
            U, V = _leaf_factors(lf, params)
            gU, gV = g2.t() @ (x2 @ V), x2.t() @ (g2 @ U)
            if lf.transposed:
                gU, gV = gV, gU
            grads[lf.idx[0]], grads[lf.idx[1]] = gU, gV
        return [g if needs[i] else None for i, g in enumerate(grads)]
    xt = x.reshape(-1, n).t().contiguous()
    gt = gy.reshape(-1, m).t().contiguous()
    for grp in struct.groups(params):
        if not any(needs[i] for ix in grp.pidx for i in ix):
            continue
        rows, cols = grp.index(xt.device)
        X = _gather(xt, cols, grp.g, grp.n)                      # (g, n, B)
        G = _gather(gt, rows, grp.g, grp.m)                      # (g, m, B)
        if grp.kind == LeafKind.DENSE:
            # dA = G^T X: stored A is (m, n), or (n, m) for a transposed leaf
            dA = X @ G.transpose(1, 2) if grp.transposed else G @ X.transpose(1, 2)
            per = (dA.unbind(0),)
        else:
            U, V = grp.factors(params)
            gU = G @ (V.transpose(1, 2) @ X).transpose(1, 2)     # G^T (X V): (g, m, k)
            gV = X @ (U.transpose(1, 2) @ G).transpose(1, 2)     # X^T (G U): (g, n, k)
            per = (gV.unbind(0), gU.unbind(0)) if grp.transposed else (gU.unbind(0), gV.unbind(0))
        for ix, gs in zip(grp.pidx, per):
            for i, gi in zip(ix, gs):
                grads[i] = gi
    return [g if needs[i] else None for i, g in enumerate(grads)]


def _needed(ctx):
    """Which inputs' gradients this backward call must compute.

    ``ctx.needs_input_grad`` only says which inputs require grad. When the
    engine runs ``torch.autograd.grad(u, x)`` -- as for every PDE residual --
    the factor gradients are not wanted, and computing them (with
    ``create_graph``) would cost more than the input gradient. The engine's
    own plan (``torch._C._will_engine_execute_node``, as used by
    ``torch.utils.checkpoint``) tells; outside a plain engine run (e.g. under
    ``torch.func``) everything that requires grad is computed.
    """
    needs = list(ctx.needs_input_grad)
    try:
        nf = ctx.next_functions
        pos = [0] + list(range(2, len(needs)))  # tensor inputs: x, then the factors
        if len(nf) == len(pos):
            for p, (fn, _) in zip(pos, nf):
                if needs[p] and fn is not None and not torch._C._will_engine_execute_node(fn):
                    needs[p] = False
    except (AttributeError, RuntimeError, TypeError):
        needs = list(ctx.needs_input_grad)
    return needs


class StructuredLinearFn(torch.autograd.Function):
    """``y = x W^T`` for a structured ``W``; see the module docstring.

    ``StructuredLinearFn.apply(x, struct, *params)`` with ``x`` of shape
    ``(..., n)`` (any float dtype matching the parameters) returns shape
    ``(..., m)``.
    """

    @staticmethod
    def forward(x, struct, *params):
        return _apply(x, struct, params)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, struct, *params = inputs
        ctx.struct = struct
        ctx.save_for_backward(x, *params)

    @staticmethod
    def backward(ctx, gy):
        x, *params = ctx.saved_tensors
        struct = ctx.struct
        needs = _needed(ctx)
        gx = None
        if needs[0]:
            gx = StructuredLinearFn.apply(gy, struct.adjoint(), *params)
        gparams = _param_grads(x, gy, struct, params, needs[2:])
        return (gx, None, *gparams)

    @staticmethod
    def vmap(info, in_dims, x, struct, *params):
        xd, pds = in_dims[0], in_dims[2:]
        if all(d is None for d in pds):
            if xd is None:  # nothing batched (cannot normally happen)
                return StructuredLinearFn.apply(x, struct, *params), None
            # batch dimension -> extra rows -> one matmat
            return StructuredLinearFn.apply(x.movedim(xd, 0), struct, *params), 0
        outs = []
        for b in range(info.batch_size):
            xb = x if xd is None else x.select(xd, b)
            pb = [p if d is None else p.select(d, b) for p, d in zip(params, pds)]
            outs.append(StructuredLinearFn.apply(xb, struct, *pb))
        return torch.stack(outs, 0), 0


def structured_linear(x, struct, params, bias=None):
    """``x W^T + bias`` through :class:`StructuredLinearFn`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., n)
    struct : Structure
    params : sequence of torch.Tensor
    bias : torch.Tensor, shape (m,), optional
    """
    y = StructuredLinearFn.apply(x, struct, *params)
    return y if bias is None else y + bias
