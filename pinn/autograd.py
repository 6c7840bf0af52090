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

A ``vmap`` rule folds a vmapped batch dimension of ``x`` into the row
dimension (one matmat), so ``torch.func.vmap``/``jacrev`` work (the NTK needs
them); if leaf factors themselves are batched it falls back to a loop.
Forward mode (``torch.func.jvp``/``jacfwd``, hence ``torch.func.hessian``) is
not implemented: use ``jacrev(jacrev(f))`` for Hessians.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LeafSpec", "Structure", "StructuredLinearFn", "structured_linear"]


@dataclass(frozen=True)
class LeafSpec:
    """Geometry of one leaf.

    Attributes
    ----------
    kind : {"dense", "lowrank"}
    r0, c0 : int
        First permuted row / column of the leaf in the (possibly adjoint) operator.
    m, n : int
        Leaf shape in the (possibly adjoint) operator.
    idx : tuple of int
        Positions of the leaf's factors in the parameter list: ``(iA,)`` or ``(iU, iV)``.
    transposed : bool
        The leaf applies the transpose of its stored factors.
    """

    kind: str
    r0: int
    c0: int
    m: int
    n: int
    idx: tuple
    transposed: bool = False

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

    def adjoint(self):
        """Structure of ``W^T`` over the same parameter list."""
        if self._adj is None:
            adj = Structure((self.shape[1], self.shape[0]), [lf.adjoint() for lf in self.leaves],
                            self.col_perm, self.row_perm)
            adj._adj = self
            self._adj = adj
        return self._adj

    def to(self, device):
        """A copy with the permutation tensors on ``device``."""
        mv = (lambda p: None if p is None else p.to(device))
        return Structure(self.shape, self.leaves, mv(self.row_perm), mv(self.col_perm))


def _factors(leaf, params):
    if leaf.kind == "dense":
        A = params[leaf.idx[0]]
        return (A.t() if leaf.transposed else A,)
    U, V = params[leaf.idx[0]], params[leaf.idx[1]]
    return (V, U) if leaf.transposed else (U, V)


def _apply(x, struct, params):
    m, n = struct.shape
    if x.shape[-1] != n:
        raise ValueError(f"x: last dimension must be {n}, got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, n)
    xp = x2 if struct.col_perm is None else x2.index_select(1, struct.col_perm)
    yp = x2.new_zeros((x2.shape[0], m))
    for lf in struct.leaves:
        xb = xp[:, lf.c0:lf.c0 + lf.n]
        f = _factors(lf, params)
        if lf.kind == "dense":
            yp[:, lf.r0:lf.r0 + lf.m] += xb @ f[0].t()
        else:
            yp[:, lf.r0:lf.r0 + lf.m] += (xb @ f[1]) @ f[0].t()
    y = yp if struct.inv_row_perm is None else yp.index_select(1, struct.inv_row_perm)
    return y.reshape(*lead, m)


def _param_grads(x, gy, struct, params, needs):
    m, n = struct.shape
    x2 = x.reshape(-1, n)
    g2 = gy.reshape(-1, m)
    xp = x2 if struct.col_perm is None else x2.index_select(1, struct.col_perm)
    gp = g2 if struct.row_perm is None else g2.index_select(1, struct.row_perm)
    grads = [None] * len(params)
    for lf in struct.leaves:
        if not any(needs[i] for i in lf.idx):
            continue
        xb = xp[:, lf.c0:lf.c0 + lf.n]
        gb = gp[:, lf.r0:lf.r0 + lf.m]
        if lf.kind == "dense":
            G = gb.t() @ xb
            grads[lf.idx[0]] = G.t() if lf.transposed else G
        else:
            U, V = _factors(lf, params)
            gU = gb.t() @ (xb @ V)
            gV = xb.t() @ (gb @ U)
            if lf.transposed:
                gU, gV = gV, gU
            grads[lf.idx[0]], grads[lf.idx[1]] = gU, gV
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
