"""Dynamic, error-bounded H-compression during training (a training callback).

See ``docs/method.md`` for the exact algorithm. In short, every ``every`` Adam
steps each :class:`~pinn.HMatrixLinear` layer of the model is re-examined:

1. the dense gradient ``G`` of the loss w.r.t. the weight is measured by a
   zero probe over the last ``probe_steps`` steps (exponential average with
   Adam's ``beta1``);
2. each low-rank leaf is recompressed (QR of both factors, SVD of the core)
   to its share ``eps_b = tol ||W||_F sqrt(m_b n_b / (m n))`` of the error
   budget -- ranks shrink;
3. its error indicator ``eta_b = lr ||G_b - P_U G_b P_V||_F`` (the part of
   the accumulated gradient outside the span of its factors, scaled to one
   step) is compared with ``eps_b`` -- with ``noise_factor > 0`` only the part of
   ``||G_b - P_U G_b P_V||_F^2`` that exceeds ``noise_factor`` times the sampling
   noise expected there (estimated from the probe steps' gradient variance) counts,
   so that minibatch noise alone does not grow ranks; if larger the leaf grows ``grow_rank``
   columns from the top singular vectors of that part (new ``V`` columns are
   zero, so the network function is unchanged), or -- when its rank reaches
   ``split_fraction`` of the dense break-even rank and it is larger than
   ``min_leaf`` -- is split into 2 x 2 children (each recompressed to its
   share); a leaf at ``min_leaf`` whose rank passes the break-even becomes dense;
4. sibling leaves whose block is cheaper as one low-rank block within the
   block's budget are merged (coarsening);
5. with ``budget_bytes`` the total bytes are kept at or below it (growth in
   order of ``eta_b / eps_b``; if still above, the globally smallest
   singular values per byte are dropped).

Adam moments are carried over across every structural change (see
:func:`_map_state`); nothing is reset silently.
"""
from __future__ import annotations

import math

import torch
from hmat import LeafKind

from .layers import HMatrixLinear, partition_from_grid
from .ranks import rank_for_error

__all__ = ["DynamicHCompression"]


# ------------------------------------------------------------------ leaf records
class _Leaf:
    """A leaf during refinement: factors, Adam moments and the probed gradient block."""

    def __init__(self, kind, r0, c0, m, n, factors, moments, G, noise=0.0):
        self.kind, self.r0, self.c0, self.m, self.n = kind, r0, c0, m, n
        self.factors = [f.detach().clone() for f in factors]
        self.moments = moments  # list (per factor) of dict or None
        self.G = G  # dense gradient block (m, n) or None
        self.noise = noise  # expected squared Frobenius norm of the sampling noise in G

    @property
    def rank(self):
        return self.factors[0].shape[1] if self.kind == LeafKind.LOWRANK else min(self.m, self.n)

    @property
    def nbytes(self):
        return sum(f.numel() * f.element_size() for f in self.factors)

    def norm2(self):
        if self.kind == LeafKind.DENSE:
            return float(self.factors[0].double().pow(2).sum())
        U, V = (f.double() for f in self.factors)
        return float(((U.T @ U) * (V.T @ V)).sum())


def _transform_moments(mom, T):
    """Moments of ``X' = X T`` from those of ``X`` given grad' = grad T_other (see caller)."""
    if mom is None:
        return None
    out = {"step": mom["step"]}
    out["exp_avg"] = mom["exp_avg"].double() @ T
    out["exp_avg_sq"] = mom["exp_avg_sq"].double() @ (T * T)
    if "max_exp_avg_sq" in mom:
        out["max_exp_avg_sq"] = mom["max_exp_avg_sq"].double() @ (T * T)
    return out


def _recompress(leaf, eps, max_rank=None):
    """Truncate a low-rank leaf (in place) to ``||UV^T - U'V'^T||_F <= eps``.

    ``U' = U T_u``, ``V' = V T_v``; since ``dL/dU' = G V' = (dL/dU) T_v`` (and
    likewise for V), the first moments map exactly as ``m_U' = m_U T_v``,
    ``m_V' = m_V T_u``; second moments map with the squared entries (an
    approximation that neglects cross terms).
    """
    U, V = leaf.factors
    k = U.shape[1]
    if k == 0:
        return
    dt = U.dtype
    Ud, Vd = U.double(), V.double()
    Qu, Ru = torch.linalg.qr(Ud)
    Qv, Rv = torch.linalg.qr(Vd)
    X, s, Yh = torch.linalg.svd(Ru @ Rv.T)
    r = rank_for_error(s, eps)
    if max_rank is not None:
        r = min(r, max_rank)
    sq = s[:r].sqrt()
    Un = Qu @ (X[:, :r] * sq)
    Vn = Qv @ (Yh[:r].T * sq)
    Tu = torch.linalg.pinv(Ud) @ Un
    Tv = torch.linalg.pinv(Vd) @ Vn
    mu, mv = leaf.moments
    leaf.moments = [_cast(_transform_moments(mu, Tv), dt), _cast(_transform_moments(mv, Tu), dt)]
    leaf.factors = [Un.to(dt), Vn.to(dt)]


def _cast(mom, dt):
    if mom is None:
        return None
    return {k: (v.to(dt) if k != "step" else v) for k, v in mom.items()}


class DynamicHCompression:
    """Training callback: train in H-format with error-bounded dynamic refinement.

    Parameters
    ----------
    tol : float > 0
        Relative Frobenius error budget per layer for recompression.
    every : int
        Refinement period in Adam steps.
    probe_steps : int
        Steps before each refinement during which the dense gradient is probed.
    grow_rank : int
        Columns added to a leaf whose indicator exceeds its budget.
    split_fraction : float
        A low-rank leaf whose rank reaches this fraction of ``m n / (m + n)``
        is split (if larger than ``min_leaf``) or made dense.
    min_leaf : int
    merge : bool
        Enable coarsening of sibling leaves.
    budget_bytes : int, optional
        Upper bound on the leaf bytes of all HMatrixLinear layers together.
    stop : int, optional
        No refinement at or after this step.
    noise_factor : float >= 0
        Discount of gradient sampling noise in the growth indicator (see the module
        docstring): the probed gradient's per-entry variance over the probe steps gives the
        noise energy ``N_b`` expected in each leaf's averaged gradient; its share outside
        the leaf's factor spans, times ``noise_factor``, is subtracted from
        ``||G_b - P_U G_b P_V||_F^2`` before the comparison with the budget. ``0`` (the
        default) is the plain indicator; about 2 suits stochastic losses (random sources or
        collocation points redrawn each step). Needs ``probe_steps >= 2``.
    verbose : bool

    Attributes
    ----------
    log : list of dict
        One entry per refinement: step, bytes, ranks, counts of grown / split /
        merged / densified leaves.
    """

    def __init__(self, tol, every=100, *, probe_steps=20, grow_rank=2, split_fraction=0.5,
                 min_leaf=8, merge=True, budget_bytes=None, stop=None, noise_factor=0.0,
                 verbose=False):
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"tol must be > 0, got {tol!r}")
        if not (isinstance(noise_factor, (int, float)) and not isinstance(noise_factor, bool)
                and math.isfinite(noise_factor) and noise_factor >= 0):
            raise ValueError(f"noise_factor must be a finite number >= 0, got {noise_factor!r}")
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.tol = float(tol)
        self.every = int(every)
        self.probe_steps = max(1, min(int(probe_steps), self.every))
        self.grow_rank = int(grow_rank)
        self.split_fraction = float(split_fraction)
        self.min_leaf = int(min_leaf)
        self.merge = bool(merge)
        self.budget_bytes = budget_bytes
        self.stop = stop
        self.noise_factor = float(noise_factor)
        if self.noise_factor > 0 and self.probe_steps < 2:
            raise ValueError("noise_factor > 0 needs probe_steps >= 2 (a variance needs two samples)")
        self.verbose = verbose
        self.log = []
        self._G = {}
        self._G2 = {}
        self._nprobe = 0

    # -------------------------------------------------------------- callback API
    def _layers(self, model):
        return [m for m in model.modules() if isinstance(m, HMatrixLinear)]

    def on_train_begin(self, state):
        if not self._layers(state.model):
            raise ValueError("DynamicHCompression: model has no HMatrixLinear layers")

    def _phase_pos(self, step):
        return step % self.every

    def after_backward(self, state):
        if state.phase != "adam":
            return
        beta1 = state.optimizer.param_groups[0].get("betas", (0.9, 0.999))[0]
        for L in self._layers(state.model):
            p = L.probe
            if p is not None and p.grad is not None:
                g = p.grad.detach()
                prev = self._G.get(id(L))
                # zero-initialised EMA (as Adam's moments), so that the division by
                # 1 - beta1**k in refine() is the exact bias correction (weights sum to 1)
                self._G[id(L)] = (1 - beta1) * g if prev is None else beta1 * prev + (1 - beta1) * g
                if self.noise_factor > 0:
                    g2 = g * g
                    prev2 = self._G2.get(id(L))
                    self._G2[id(L)] = ((1 - beta1) * g2 if prev2 is None else
                                       beta1 * prev2 + (1 - beta1) * g2)
        if any(L.probe is not None for L in self._layers(state.model)):
            self._nprobe += 1

    def on_step_end(self, state):
        if state.phase != "adam":
            return
        step = state.step
        if self.stop is not None and step >= self.stop:
            for L in self._layers(state.model):
                L.stop_probe()
            return
        pos = step % self.every
        if pos == self.every - self.probe_steps or (self.probe_steps == self.every and pos == 0):
            for L in self._layers(state.model):
                L.start_probe()
            self._G.clear()
            self._G2.clear()
            self._nprobe = 0
        if pos == 0 and step > 0:
            self.refine(state.model, state.optimizer, step)
            for L in self._layers(state.model):
                if self.probe_steps < self.every:
                    L.stop_probe()
                else:
                    L.start_probe()
            self._G.clear()
            self._G2.clear()
            self._nprobe = 0

    # -------------------------------------------------------------- refinement
    def refine(self, model, optimizer, step=0):
        """Refine every HMatrixLinear layer of ``model`` now; returns the log entry."""
        lr = optimizer.param_groups[0].get("lr", 1e-3)
        beta1 = optimizer.param_groups[0].get("betas", (0.9, 0.999))[0]
        entry = {"step": int(step), "grown": 0, "split": 0, "merged": 0, "densified": 0}
        layers = self._layers(model)
        all_leaves = []
        for L in layers:
            G = self._G.get(id(L))
            noise = None
            if G is not None and self._nprobe:
                G = G / (1 - beta1 ** self._nprobe)  # bias-corrected EMA
                noise = self._noise_of_mean(L, G, beta1)
            root = self._to_records(L, optimizer, G, noise)
            all_leaves.append((L, root))
        for L, root in all_leaves:
            W2 = sum(lf.norm2() for lf in _iter_leaves(root))
            mn = L.out_features * L.in_features
            eps = lambda lf: self.tol * math.sqrt(W2 * lf.m * lf.n / mn)
            cands = []
            root = self._refine_node(root, eps, lr, entry, cands)
            if self.merge:
                root = self._merge(root, eps, entry)
            self._pending = getattr(self, "_pending", [])
            self._pending.append((L, root, cands))
        pending, self._pending = self._pending, []
        # budget: grow in order of indicator ratio while bytes allow
        cur = sum(lf.nbytes for _, root, _ in pending for lf in _iter_leaves(root))
        cands = sorted((c for _, _, cs in pending for c in cs), key=lambda c: -c[0])
        for ratio, lf, U_new in cands:
            add = U_new.shape[1] * (lf.m + lf.n) * lf.factors[0].element_size()
            if self.budget_bytes is not None and cur + add > self.budget_bytes:
                continue
            _grow(lf, U_new)
            cur += add
            entry["grown"] += 1
        if self.budget_bytes is not None and cur > self.budget_bytes:
            self._enforce_budget([root for _, root, _ in pending], cur)
        # split / densify leaves that grew past the break-even
        new_pending = []
        for L, root, _ in pending:
            W2 = sum(lf.norm2() for lf in _iter_leaves(root))
            mn = L.out_features * L.in_features
            eps = lambda lf, W2=W2, mn=mn: self.tol * math.sqrt(W2 * lf.m * lf.n / mn)
            root = self._split(root, eps, entry)
            new_pending.append((L, root))
        if self.budget_bytes is not None:  # a split may have increased the size
            cur = sum(lf.nbytes for _, root in new_pending for lf in _iter_leaves(root))
            if cur > self.budget_bytes:
                self._enforce_budget([root for _, root in new_pending], cur)
        for L, root in new_pending:
            self._install(L, root, optimizer)
        entry["bytes"] = sum(L.nbytes for L in layers)
        entry["ranks"] = [[d["rank"] for d in L.leaf_info() if d["kind"] == "lowrank"] for L in layers]
        entry["leaves"] = [L.num_leaves for L in layers]
        self.log.append(entry)
        if self.verbose:
            print(f"[dynamic] step {step}: {entry}")
        return entry

    def _noise_of_mean(self, L, M, beta1):
        """Per-entry variance (n_out, n_in) of the bias-corrected EMA ``M`` of the probed
        gradients, from their EMA second moment, or None without ``noise_factor``.

        With normalised EMA weights ``w_i`` over the ``k`` probe steps and i.i.d. per-step
        gradients of variance ``s^2``: ``Var(M) = s^2 sum w_i^2`` and
        ``E[S - M^2] = s^2 (1 - sum w_i^2)`` (``S`` the weighted mean of ``g^2``).
        """
        G2 = self._G2.get(id(L))
        k = self._nprobe
        if self.noise_factor <= 0 or G2 is None or k < 2:
            return None
        b = beta1
        sw2 = (1 - b) ** 2 * (1 - b ** (2 * k)) / ((1 - b * b) * (1 - b ** k) ** 2)
        S = G2 / (1 - b ** k)
        var = (S - M * M).clamp_min(0) / (1 - sw2)
        return var * sw2

    def _to_records(self, L, optimizer, G, noise=None):
        """Tree of _Leaf records from layer ``L`` (moments taken from ``optimizer``)."""
        Gp = None
        Np = None
        if G is not None:
            Gp, Np = G, noise
            if L.row_perm is not None:
                Gp = Gp.index_select(0, L.row_perm)
                Np = None if Np is None else Np.index_select(0, L.row_perm)
            if L.col_perm is not None:
                Gp = Gp.index_select(1, L.col_perm)
                Np = None if Np is None else Np.index_select(1, L.col_perm)

        P = L.partition
        leaf_of = {int(b): i for i, b in enumerate(P.leaf_nodes)}

        def rec(node):
            if node in leaf_of:
                i = leaf_of[node]
                r0, m, c0, n = int(P.r0[i]), int(P.m[i]), int(P.c0[i]), int(P.n[i])
                kind = LeafKind(int(P.kind[i]))
                fs = L.leaf_factors(i)
                moms = [_get_state(optimizer, p) for p in fs]
                Gb = None if Gp is None else Gp[r0:r0 + m, c0:c0 + n]
                nb = 0.0 if Np is None else float(Np[r0:r0 + m, c0:c0 + n].double().sum())
                return _Leaf(kind, r0, c0, m, n, fs, moms, Gb, nb)
            return [[rec(c) for c in row] for row in P.children(node)]

        return rec(0)

    def _refine_node(self, node, eps, lr, entry, cands):
        if isinstance(node, list):
            return [[self._refine_node(c, eps, lr, entry, cands) for c in row] for row in node]
        lf = node
        if lf.kind != LeafKind.LOWRANK:
            return lf
        e = eps(lf)
        # truncation takes at most half of the leaf's budget, the indicator the other half
        _recompress(lf, e / math.sqrt(2))
        if lf.G is not None and self.grow_rank > 0:
            U, V = (f.double() for f in lf.factors)
            G = lf.G.double()
            if U.shape[1]:
                Qu, _ = torch.linalg.qr(U)
                Qv, _ = torch.linalg.qr(V)
                R = G - Qu @ (Qu.T @ G @ Qv) @ Qv.T
            else:
                R = G
            r2 = float(R.pow(2).sum())
            if self.noise_factor > 0 and lf.noise > 0:
                # isotropic noise N: E||N - P_U N P_V||^2 = (1 - k^2 / (m n)) E||N||^2
                k = U.shape[1]
                inside = k * k / (lf.m * lf.n)
                r2 = r2 - self.noise_factor * lf.noise * max(0.0, 1.0 - inside)
            eta = lr * math.sqrt(max(r2, 0.0))
            if eta > e / math.sqrt(2) and eta > 0:
                k_new = min(self.grow_rank, min(lf.m, lf.n) - U.shape[1])
                if k_new > 0:
                    Ur, _, _ = torch.linalg.svd(R, full_matrices=False)
                    cands.append((eta / max(e, 1e-300), lf, Ur[:, :k_new]))
        return lf

    def _split(self, node, eps, entry):
        if isinstance(node, list):
            return [[self._split(c, eps, entry) for c in row] for row in node]
        lf = node
        if lf.kind != LeafKind.LOWRANK:
            return lf
        breakeven = lf.m * lf.n / (lf.m + lf.n)
        if lf.rank < self.split_fraction * breakeven:
            return lf
        if min(lf.m, lf.n) >= 2 * self.min_leaf:
            entry["split"] += 1
            return _split_leaf(lf, eps)
        if lf.rank >= breakeven:
            entry["densified"] += 1
            return _densify(lf)
        return lf

    def _merge(self, node, eps, entry):
        if not isinstance(node, list):
            return node
        node = [[self._merge(c, eps, entry) for c in row] for row in node]
        kids = [c for row in node for c in row]
        if not all(isinstance(c, _Leaf) for c in kids):
            return node
        r0, c0 = node[0][0].r0, node[0][0].c0
        m = sum(row[0].m for row in node)
        n = sum(c.n for c in node[0])
        dt = kids[0].factors[0].dtype
        dev = kids[0].factors[0].device
        B = torch.zeros(m, n, dtype=torch.float64, device=dev)
        for c in kids:
            blk = c.factors[0].double() if c.kind == LeafKind.DENSE else c.factors[0].double() @ c.factors[1].double().T
            B[c.r0 - r0:c.r0 - r0 + c.m, c.c0 - c0:c.c0 - c0 + c.n] = blk
        X, s, Yh = torch.linalg.svd(B, full_matrices=False)
        # the merged block may use half of its budget (children were within theirs)
        e = 0.5 * math.sqrt(sum(eps(c) ** 2 for c in kids))
        r = rank_for_error(s, e)
        cost = r * (m + n) * kids[0].factors[0].element_size()
        if cost >= sum(c.nbytes for c in kids) or r >= m * n / (m + n):
            return node
        sq = s[:r].sqrt()
        U, V = (X[:, :r] * sq).to(dt), (Yh[:r].T * sq).to(dt)
        G = None
        if all(c.G is not None for c in kids):
            G = kids[0].G.new_zeros(m, n)
            for c in kids:
                G[c.r0 - r0:c.r0 - r0 + c.m, c.c0 - c0:c.c0 - c0 + c.n] = c.G
        moms = _moments_from_gradient(G, U, V, kids)
        entry["merged"] += 1
        return _Leaf(LeafKind.LOWRANK, r0, c0, m, n, [U, V], moms, G)

    def _enforce_budget(self, roots, cur):
        """Drop the globally smallest singular values (per byte) until within budget."""
        leaves = [lf for root in roots for lf in _iter_leaves(root) if lf.kind == LeafKind.LOWRANK]
        while cur > self.budget_bytes:
            best, score = None, math.inf
            for lf in leaves:
                if lf.rank == 0:
                    continue
                U, V = lf.factors
                sv = float(U[:, -1].double().norm() * V[:, -1].double().norm())
                sc = sv / (lf.m + lf.n)
                if sc < score:
                    best, score = lf, sc
            if best is None:
                break
            _recompress(best, 0.0, max_rank=best.rank - 1)
            cur -= (best.m + best.n) * best.factors[0].element_size()

    def _install(self, L, root, optimizer):
        leaves, tensors, moms = [], [], []

        def walk(node):
            if isinstance(node, _Leaf):
                leaves.append((node.r0, node.m, node.c0, node.n, node.kind))
                tensors.append(tuple(node.factors))
                moms.append(node.moments)
                return len(leaves) - 1
            return [[walk(c) for c in row] for row in node]

        grid = walk(root)
        P = L.partition
        rows, cols = P.permuted
        new_p = partition_from_grid(P.shape, grid, leaves, P.row_perm if rows else None,
                                    P.col_perm if cols else None)
        old = list(L.factors)
        new = L.restructure(new_p, tensors)
        flat_m = [mm for ms in moms for mm in ms]
        _swap_params(optimizer, old, new, flat_m)


def _iter_leaves(node):
    if isinstance(node, _Leaf):
        yield node
    else:
        for row in node:
            for c in row:
                yield from _iter_leaves(c)


def _grow(lf, U_new):
    """Append columns ``U_new`` (unit vectors, scaled) to U and zero columns to V."""
    U, V = lf.factors
    dt = U.dtype
    scale = float(U.double().norm(dim=0).mean()) if U.shape[1] else 1e-2
    Un = torch.cat([U, (U_new * scale).to(dt)], 1)
    Vn = torch.cat([V, V.new_zeros(V.shape[0], U_new.shape[1])], 1)
    k = U_new.shape[1]
    mu, mv = lf.moments
    lf.moments = [_pad_moments(mu, k, U.shape[0]), _pad_moments(mv, k, V.shape[0])]
    lf.factors = [Un, Vn]


def _pad_moments(mom, k, rows):
    """New columns: first moment 0, second moment the mean of the existing ones."""
    if mom is None:
        return None
    out = {"step": mom["step"]}
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key not in mom:
            continue
        v = mom[key]
        fill = 0.0 if key == "exp_avg" or v.numel() == 0 else float(v.mean())
        out[key] = torch.cat([v, v.new_full((rows, k), fill)], 1)
    return out


def _split_leaf(lf, eps):
    """Split a low-rank leaf into 2 x 2 children (row/column subsets of U, V), recompressed."""
    U, V = lf.factors
    m1, n1 = lf.m // 2, lf.n // 2
    rows = [(0, m1), (m1, lf.m)]
    cols = [(0, n1), (n1, lf.n)]
    grid = []
    for (a, b) in rows:
        grow = []
        for (c, d) in cols:
            moms = []
            for mom, sl, share in ((lf.moments[0], slice(a, b), (d - c) / lf.n),
                                   (lf.moments[1], slice(c, d), (b - a) / lf.m)):
                if mom is None:
                    moms.append(None)
                    continue
                nm = {"step": mom["step"]}
                for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if key in mom:
                        p = 1 if key == "exp_avg" else 2
                        nm[key] = mom[key][sl] * share**p
                moms.append(nm)
            G = None if lf.G is None else lf.G[a:b, c:d]
            child = _Leaf(LeafKind.LOWRANK, lf.r0 + a, lf.c0 + c, b - a, d - c, [U[a:b], V[c:d]], moms, G)
            _recompress(child, eps(child) / math.sqrt(2))
            grow.append(child)
        grid.append(grow)
    return grid


def _moments_from_gradient(G, U, V, kids):
    """Adam moments for freshly built factors U, V (merge / densify).

    The first moment is the gradient w.r.t. the new factors of the probed
    (bias-corrected EMA of the) dense block gradient ``G``: ``m_U = G V``,
    ``m_V = G^T U``; the second moment is the mean of the children's second
    moments. The step count is the children's.
    """
    step = None
    vs = []
    for c in kids:
        for mom in c.moments:
            if mom is not None:
                step = mom["step"]
                vs.append(mom["exp_avg_sq"].reshape(-1))
    if step is None:
        return [None, None]
    vmean = float(torch.cat(vs).mean()) if vs else 0.0
    out = []
    for X, other in ((U, V), (V, U)):
        m = torch.zeros_like(X)
        if G is not None:
            m = (G.to(X.dtype) @ other) if X is U else (G.to(X.dtype).T @ other)
        out.append({"step": step.clone() if torch.is_tensor(step) else step, "exp_avg": m,
                    "exp_avg_sq": torch.full_like(X, vmean)})
    return out


def _densify(lf):
    U, V = lf.factors
    A = U @ V.T
    moms = [None]
    mu = lf.moments[0]
    if mu is not None:
        vmean = float(torch.cat([m["exp_avg_sq"].reshape(-1) for m in lf.moments]).mean())
        m = torch.zeros_like(A) if lf.G is None else lf.G.to(A.dtype).clone()
        moms = [{"step": mu["step"], "exp_avg": m, "exp_avg_sq": torch.full_like(A, vmean)}]
    return _Leaf(LeafKind.DENSE, lf.r0, lf.c0, lf.m, lf.n, [A], moms, lf.G)


def _get_state(optimizer, p):
    st = optimizer.state.get(p)
    if not st or "exp_avg" not in st:
        return None
    return {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in st.items()}


def _swap_params(optimizer, old, new, moments):
    """Replace parameters ``old`` by ``new`` in ``optimizer`` with the given Adam states."""
    old_ids = {id(p) for p in old}
    group = None
    for g in optimizer.param_groups:
        if any(id(p) in old_ids for p in g["params"]):
            group = g
            break
    if group is None:
        group = optimizer.param_groups[0]
    group["params"] = [p for p in group["params"] if id(p) not in old_ids] + list(new)
    for p in old:
        optimizer.state.pop(p, None)
    for p, mom in zip(new, moments):
        if mom is not None:
            optimizer.state[p] = {k: (v.to(p.dtype) if torch.is_tensor(v) and k != "step" else v)
                                  for k, v in mom.items()}
