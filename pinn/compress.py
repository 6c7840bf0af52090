"""Compress a trained MLP (H-matrix, SVD, pruning, quantization, half precision) at a tol or a
byte budget; the byte rule and the registry of compression methods of every study.

All methods act on the hidden-to-hidden layers of a :class:`pinn.MLP`
(``model.layers[1:-1]``); input and output layers are kept dense. Sizes follow
**one byte rule** (:func:`layer_bytes`, docs/method.md §5): bytes of the compressed
weights only (biases, identical for all methods, are excluded), every stored value at
the element size of its storage format ``es`` (the parameters' dtype: 4 for float32,
8 for float64; 2 for fp16/bf16 storage), indices as int32:

* dense: ``es m n``,
* H-matrix and low rank: the leaf factors (dense leaves ``es m_b n_b``, low-rank
  ``es k (m_b + n_b)``); index permutations cost nothing because they are absorbed into
  the neighbouring layers (see :func:`reorder`) or are the identity,
* pruned (a mask): the cheapest of CSR (``es`` values + 4-byte column indices + 4-byte
  row pointers), a bitmask (``m n / 8`` bytes + ``es`` values) and dense,
* quantized to ``b`` bits: ``m n b / 8`` + one scale per output row at ``es``,
* fp16 / bf16: ``2 m n``.

:data:`REGISTRY` names every method of the studies (``python -m pinn compare`` and
``python -m pinn operator``) with its kind and how it is built.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from .layers import MLP, HMatrixLinear, LowRankLinear, hidden_layers
from .ranks import rank_for_tol

__all__ = ["compress", "METHODS", "hidden_bytes", "dense_hidden_bytes", "layer_bytes",
           "model_bytes", "sparse_bytes", "nnz_for_bytes", "rank_for_bytes", "MaskedLinear",
           "Method", "REGISTRY", "reorder", "clone_model", "quantize_weight", "dynamic_int8",
           "count_parameters", "effective_dense", "weight_error"]

METHODS = ("hmatrix", "svd", "prune", "quantize", "quantize-int8", "quantize-int4", "fp16",
           "bf16")

#: storage formats of the half-precision methods
HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Method:
    """One compression method of the studies.

    Attributes
    ----------
    name : str
    kind : {"reference", "posthoc", "finetune", "scratch", "dynamic", "control", "oracle"}
        ``posthoc``: built from the dense-trained weights, no training; ``finetune``: the
        ``base`` post-hoc network trained further; ``scratch``: the format trained from
        the initialization; ``dynamic``: H-format trained with
        :class:`pinn.DynamicHCompression`; ``control``: a lossless re-parametrization
        (checks that a metric is free of the parametrization); ``oracle``: best
        approximation of a known exact weight (operator study).
    budgeted : bool
        Built at a byte budget (otherwise its size is what the format gives).
    base : str or None
        The post-hoc method a ``finetune`` row starts from.
    compress_name : str or None
        The :func:`compress` method that builds a PINN post-hoc network.
    studies : tuple of str
        ``"pinn"`` (``python -m pinn compare``) and/or ``"operator"``.
    description : str
    """

    name: str
    kind: str
    budgeted: bool
    base: str = None
    compress_name: str = None
    studies: tuple = ("pinn",)
    description: str = ""


_P, _O, _B = ("pinn",), ("operator",), ("pinn", "operator")

_ALL = (
    Method("dense", "reference", False, studies=_B, description="nn.Linear trained"),
    Method("hmatrix", "posthoc", True, compress_name="hmatrix", studies=_P,
           description="certified H-compression of the trained weights (bisection on tol)"),
    Method("hmatrix", "scratch", True, studies=_O,
           description="operator study: geometric H-layer trained from scratch"),
    Method("hmatrix+finetune", "finetune", True, base="hmatrix", studies=_P,
           description="post-hoc H-matrix fine-tuned"),
    Method("hmatrix+finetune", "finetune", True, base="hmatrix-posthoc", studies=_O,
           description="operator study: projected H-layer fine-tuned"),
    Method("hmatrix-posthoc", "posthoc", True, studies=_O,
           description="dense weight projected onto the geometric H-structure"),
    Method("hmatrix-dynamic", "dynamic", True, studies=_B,
           description="H-format trained with DynamicHCompression"),
    Method("svd", "posthoc", True, compress_name="svd", studies=_B,
           description="truncated SVD of the trained weights"),
    Method("svd+finetune", "finetune", True, base="svd", studies=_B),
    Method("prune", "posthoc", True, compress_name="prune", studies=_B,
           description="magnitude pruning (global over the hidden layers in the PINN study)"),
    Method("prune+finetune", "finetune", True, base="prune", studies=_B,
           description="pruned network fine-tuned with the mask fixed"),
    Method("int8", "posthoc", False, compress_name="quantize-int8",
           description="symmetric per-row 8-bit fake quantization"),
    Method("int4", "posthoc", False, compress_name="quantize-int4"),
    Method("fp16", "posthoc", False, compress_name="fp16", description="float16 storage"),
    Method("bf16", "posthoc", False, compress_name="bf16", description="bfloat16 storage"),
    Method("lowrank-scratch", "scratch", True,
           description="LowRankLinear layers trained from scratch, byte-matched to the budget"),
    Method("lowrank", "scratch", True, studies=_O,
           description="operator study: U V^T trained from scratch at the same storage"),
    Method("svd-lossless", "control", False,
           description="exact full-rank SVD factorization of the trained weights (lossless)"),
    Method("oracle-hmatrix", "oracle", True, studies=_O),
    Method("oracle-svd", "oracle", True, studies=_O),
    Method("oracle-prune", "oracle", True, studies=_O),
)

#: every method of both studies: ``REGISTRY[study][name] -> Method`` with study ``"pinn"``
#: (``python -m pinn compare``) or ``"operator"`` (``python -m pinn operator``); sizes of
#: all of them by :func:`layer_bytes`
REGISTRY = {st: {m.name: m for m in _ALL if st in m.studies} for st in ("pinn", "operator")}


def clone_model(model):
    """``copy.deepcopy`` that also works for pruned models after a forward pass.

    (``torch.nn.utils.prune`` stores ``weight = weight_orig * weight_mask`` as a
    non-leaf tensor, which ``deepcopy`` refuses; it is recomputed by the
    forward pre-hook anyway, so it is detached first.)
    """
    for mod in model.modules():
        if hasattr(mod, "weight_orig") and isinstance(getattr(mod, "weight", None), torch.Tensor):
            with torch.no_grad():
                setattr(mod, "weight", (mod.weight_orig * mod.weight_mask).detach())
    return copy.deepcopy(model)


# ----------------------------------------------------------------------------- sizes
class MaskedLinear(nn.Module):
    """A dense linear layer with a fixed sparsity mask (``W * mask``).

    Parameters
    ----------
    weight : torch.Tensor (out, in)
    mask : torch.Tensor of bool (out, in)
    bias : torch.Tensor (out,) or None
    """

    def __init__(self, weight, mask, bias=None):
        super().__init__()
        if weight.shape != mask.shape:
            raise ValueError(f"mask must have the shape of weight {tuple(weight.shape)}, "
                             f"got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(torch.bool))
        self.weight_raw = nn.Parameter((weight * self.mask).detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @property
    def weight(self):
        return self.weight_raw * self.mask

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias)

    @property
    def nnz(self):
        return int(self.mask.count_nonzero())


def sparse_bytes(m, n, nnz, es):
    """Bytes of an ``m x n`` weight with ``nnz`` stored values of ``es`` bytes: the cheapest
    of CSR (values, int32 column indices, ``m + 1`` int32 row pointers), a bitmask
    (``ceil(m n / 8)`` bytes + values) and dense storage."""
    csr = (es + 4) * nnz + 4 * (m + 1)
    bitmask = int(math.ceil(m * n / 8)) + es * nnz
    return int(min(csr, bitmask, es * m * n))


def nnz_for_bytes(m, n, es, nbytes):
    """Largest ``nnz`` with ``sparse_bytes(m, n, nnz, es) <= nbytes`` (0 if none)."""
    best = 0
    for cand in (int((nbytes - 4 * (m + 1)) // (es + 4)),
                 int((nbytes - int(math.ceil(m * n / 8))) // es)):
        best = max(best, min(cand, m * n))
    if es * m * n <= nbytes:
        best = m * n
    return int(max(0, best))


def rank_for_bytes(m, n, es, nbytes):
    """Largest rank ``k <= min(m, n)`` with ``es k (m + n) <= nbytes``."""
    return int(max(0, min(nbytes // (es * (m + n)), min(m, n))))


def layer_bytes(layer):
    """Storage in bytes of one layer's weight under the byte rule (module docstring); for a
    network with ``wide_layers`` (operator nets) or an MLP, see :func:`model_bytes`."""
    if isinstance(layer, (HMatrixLinear, LowRankLinear)):
        return int(layer.nbytes)
    if isinstance(layer, MaskedLinear):
        return sparse_bytes(layer.out_features, layer.in_features, layer.nnz,
                            layer.weight_raw.element_size())
    if not isinstance(layer, nn.Linear):
        if hasattr(layer, "wide_layers") or isinstance(layer, MLP):
            return model_bytes(layer)
        raise TypeError(f"unsupported layer type {type(layer).__name__}")
    m, n = layer.out_features, layer.in_features
    es = getattr(layer, "weight_orig", layer.weight).element_size()
    bits = getattr(layer, "quant_bits", None)
    if bits is not None:
        return int(math.ceil(m * n * bits / 8) + es * m)
    fmt = getattr(layer, "storage_dtype", None)
    if fmt is not None:
        return int(m * n * torch.tensor([], dtype=getattr(torch, fmt)).element_size())
    mask = getattr(layer, "weight_mask", None)
    if mask is not None:
        return sparse_bytes(m, n, int(mask.count_nonzero()), es)
    return es * m * n


def model_bytes(model):
    """Bytes of the compressed layers of a network: the hidden-to-hidden layers of an
    :class:`pinn.MLP`, the ``wide_layers`` of an operator network."""
    if hasattr(model, "wide_layers"):
        return sum(layer_bytes(w) for w in model.wide_layers)
    return sum(layer_bytes(l) for _, l in hidden_layers(model))


def hidden_bytes(model):
    """Total bytes of the hidden-to-hidden weights of ``model``."""
    return sum(layer_bytes(l) for _, l in hidden_layers(model))


def dense_hidden_bytes(model):
    """Bytes of the hidden-to-hidden weights if stored dense (at the parameters' dtype)."""
    es = next(model.parameters()).element_size()
    return sum(es * _shape(l)[0] * _shape(l)[1] for _, l in hidden_layers(model))


def count_parameters(model):
    """Number of stored scalars of the whole model (pruned zeros excluded)."""
    total = 0
    for mod in model.modules():
        if isinstance(mod, (HMatrixLinear, LowRankLinear)):
            total += sum(p.numel() for p in mod.parameters(recurse=False))
            total += sum(p.numel() for p in mod.factors) if isinstance(mod, HMatrixLinear) else 0
        elif isinstance(mod, nn.Linear):
            mask = getattr(mod, "weight_mask", None)
            total += int(mask.count_nonzero()) if mask is not None else mod.weight.numel()
            total += 0 if mod.bias is None else mod.bias.numel()
    return int(total)


def _shape(layer):
    return (layer.out_features, layer.in_features)


def _check_tol(tol):
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool)
                                and tol > 0):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")


def _check_budget(budget):
    if budget is not None and not (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                   and 0 < budget <= 1):
        raise ValueError(f"budget must be a fraction in (0, 1], got {budget!r}")


# ----------------------------------------------------------------------------- reorder
def _spectral_order(S):
    """Spectral seriation: order by the Fiedler vector of the Laplacian of ``S`` (n, n)."""
    S = np.abs(np.asarray(S, np.float64))
    np.fill_diagonal(S, 0.0)
    d = S.sum(1)
    Lap = np.diag(d) - S
    w, v = np.linalg.eigh(Lap)
    f = v[:, 1] if S.shape[0] > 1 else np.zeros(1)
    return np.argsort(f, kind="stable")


def reorder(model, method="spectral-weight", x=None):
    """Permute hidden neurons of a dense MLP (a symmetry: outputs are unchanged).

    For each hidden layer ``l`` a permutation ``P`` is applied to the rows and
    bias of ``layers[l]`` and to the columns of ``layers[l+1]`` together.

    Parameters
    ----------
    model : MLP with nn.Linear layers
    method : {"none", "spectral-weight", "spectral-activation"}
        Similarity of neurons ``i, j``: ``|cos|`` of their concatenated
        incoming and outgoing weights, or ``|corr|`` of their activations at
        points ``x``; neurons are ordered by the Fiedler vector of the
        similarity graph's Laplacian.
    x : torch.Tensor, shape (N, d), required for "spectral-activation"

    Returns
    -------
    model : MLP (a new one)
    perms : list of numpy int64 arrays, one per hidden layer
    """
    if method not in ("none", "spectral-weight", "spectral-activation"):
        raise ValueError(f"reorder must be 'none', 'spectral-weight' or 'spectral-activation', got {method!r}")
    hidden_layers(model)
    new = clone_model(model)
    L = new.layers
    if not all(type(l) is nn.Linear for l in L):
        raise TypeError("reorder needs an MLP of plain nn.Linear layers (reorder before compressing)")
    perms = []
    if method == "spectral-activation":
        if x is None:
            raise ValueError("x is required for reorder='spectral-activation'")
        acts = []
        from .layers import ACTIVATIONS
        h = torch.as_tensor(x, dtype=L[0].weight.dtype)
        with torch.no_grad():
            for l in L[:-1]:
                h = ACTIVATIONS[new.activation](l(h))
                acts.append(h.double().numpy())
    for i in range(len(L) - 1):
        W_in = L[i].weight.detach().double().numpy()
        W_out = L[i + 1].weight.detach().double().numpy()
        if method == "none":
            p = np.arange(W_in.shape[0])
        elif method == "spectral-weight":
            F = np.concatenate([W_in, W_out.T], axis=1)
            F = F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-300)
            p = _spectral_order(F @ F.T)
        else:
            A = acts[i] - acts[i].mean(0)
            A = A / np.maximum(np.linalg.norm(A, axis=0, keepdims=True), 1e-300)
            p = _spectral_order(A.T @ A)
        pt = torch.as_tensor(p, dtype=torch.long)
        with torch.no_grad():
            L[i].weight.copy_(L[i].weight[pt])
            if L[i].bias is not None:
                L[i].bias.copy_(L[i].bias[pt])
            L[i + 1].weight.copy_(L[i + 1].weight[:, pt])
        perms.append(p)
    return new, perms


# ----------------------------------------------------------------------------- methods
def _replace(model, builder):
    new = clone_model(model)
    for i, layer in hidden_layers(new):
        new.layers[i] = builder(i, layer)
    return new


def weight_error(model_a, model_b):
    """Relative Frobenius error ``||W_b - W_a|| / ||W_a||`` of the hidden-to-hidden weights
    of ``model_b`` (any format: its effective weights) against ``model_a``, all layers
    together (float64)."""
    num = den = 0.0
    for (i, a), (_, b) in zip(hidden_layers(model_a), hidden_layers(model_b)):
        Wa = _weight(a).detach().double()
        Wb = _weight(b).detach().double()
        num += float((Wa - Wb).pow(2).sum())
        den += float(Wa.pow(2).sum())
    return math.sqrt(num / den) if den > 0 else 0.0


def _weight(layer):
    return layer.weight


def _hmatrix(model, tol, leaf_size=32, eta=2.0):
    return _replace(model, lambda i, l: HMatrixLinear.from_linear(l, tol=tol, leaf_size=leaf_size,
                                                                    eta=eta))


def _svd(model, tol=None, rank=None):
    return _replace(model, lambda i, l: LowRankLinear.from_linear(l, rank=rank, tol=tol))


def _prune(model, amount):
    new = clone_model(model)
    params = [(l, "weight") for _, l in hidden_layers(new)]
    total = sum(l.weight.numel() for l, _ in params)
    k = int(round(amount * total))
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=k)
    return new


def quantize_weight(W, bits):
    """Symmetric per-output-channel fake quantization (quantize -> dequantize).

    Parameters
    ----------
    W : torch.Tensor, shape (m, n)
    bits : int in [2, 16]

    Returns
    -------
    torch.Tensor, shape (m, n), same dtype: ``round(W / s) * s`` with
    ``s = max_j |W_ij| / (2^(bits-1) - 1)`` per row, codes clamped to
    ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``.
    """
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in [2, 16], got {bits!r}")
    qmax = 2 ** (bits - 1) - 1
    s = W.abs().amax(dim=1, keepdim=True) / qmax
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.clamp(torch.round(W / s), -qmax, qmax) * s


def _quantize(model, bits):
    def build(i, l):
        q = nn.Linear(l.in_features, l.out_features, bias=l.bias is not None, dtype=l.weight.dtype)
        with torch.no_grad():
            q.weight.copy_(quantize_weight(l.weight.detach(), bits))
            if l.bias is not None:
                q.bias.copy_(l.bias)
        q.quant_bits = int(bits)
        return q

    return _replace(model, build)


def _half(model, fmt):
    dt = HALF[fmt]

    def build(i, l):
        q = nn.Linear(l.in_features, l.out_features, bias=l.bias is not None, dtype=l.weight.dtype)
        with torch.no_grad():
            q.weight.copy_(l.weight.detach().to(dt).to(l.weight.dtype))
            if l.bias is not None:
                q.bias.copy_(l.bias)
        q.storage_dtype = str(dt).replace("torch.", "")
        return q

    return _replace(model, build)


def effective_dense(model):
    """The network with every layer replaced by a plain ``nn.Linear`` holding the layer's
    *effective* dense weight (``U V^T``, the assembled H-matrix, the masked weight, the
    dequantized weight) and bias: the same function, parametrized by dense weights.

    Parameters
    ----------
    model : pinn.MLP

    Returns
    -------
    pinn.MLP
        A new model with the dtype of ``model``'s parameters.
    """
    new = clone_model(model)
    for i, l in enumerate(new.layers):
        if isinstance(l, (HMatrixLinear, LowRankLinear)):
            lin = l.to_linear()
        else:
            w = l.weight.detach()
            lin = nn.Linear(l.in_features, l.out_features, bias=l.bias is not None,
                            dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w)
                if l.bias is not None:
                    lin.bias.copy_(l.bias.detach())
        new.layers[i] = lin
    return new


def _bisect(make, lo, hi, target, log=True, iters=30, increasing=False):
    """Smallest parameter p in [lo, hi] with bytes(make(p)) <= target (bytes non-increasing in p).

    Returns (p, model) or (None, None) when even ``hi`` does not meet the target.
    """
    m_hi = make(hi)
    if hidden_bytes(m_hi) > target:
        return None, None
    m_lo = make(lo)
    if hidden_bytes(m_lo) <= target:
        return lo, m_lo
    best = (hi, m_hi)
    a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        p = math.exp(mid) if log else mid
        mod = make(p)
        if hidden_bytes(mod) <= target:
            best, b = (p, mod), mid
        else:
            a = mid
        if (b - a) < (1e-3 if log else 1e-4):
            break
    return best


def compress(model, method, *, tol=None, budget=None, rank=None, bits=None, leaf_size=32,
             eta=2.0, reorder_method="none", x=None):
    """Compress the hidden-to-hidden layers of a trained MLP.

    Parameters
    ----------
    model : pinn.MLP with nn.Linear layers
    method : {"hmatrix", "svd", "prune", "quantize", "quantize-int8", "quantize-int4", "fp16", "bf16"}
    tol : float > 0, optional
        Relative Frobenius error per layer (hmatrix: certified by
        ``hmat.from_dense``; svd: exact; prune: of all hidden weights together;
        quantize: smallest bits meeting it).
    budget : float in (0, 1], optional
        Fraction of :func:`dense_hidden_bytes`; each method finds the setting
        with the smallest error whose size meets it (bisection on tol for
        hmatrix/svd, on the pruned amount for prune, largest bits <= 8 for
        quantize).
    rank : int, optional (svd only)
    bits : int, optional (quantize only; default 8, or from the method name)
    leaf_size : int >= 2, hmatrix option (budgets also try leaf_size/2, /4, ... >= 2)
    eta : hmatrix option
    reorder_method : {"none", "spectral-weight", "spectral-activation"}
        Permute hidden neurons first (hmatrix only; see :func:`reorder`).
    x : torch.Tensor (N, d), points for "spectral-activation"

    Returns
    -------
    model : MLP
        A new model (the input is not modified).
    info : dict
        ``method, setting, bytes, dense_bytes, fraction, weight_error``
        (relative Frobenius error of the hidden weights) and, when a budget
        cannot be met, ``feasible=False`` (model is then ``None``).

    Raises
    ------
    ValueError
        Unknown method, tol <= 0, budget outside (0, 1], inconsistent options.
    TypeError / ValueError
        Model without compressible layers.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    _check_tol(tol)
    _check_budget(budget)
    if isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer)) or leaf_size < 2:
        raise ValueError(f"leaf_size must be an integer >= 2 (smaller leaves cannot hold a "
                         f"low-rank block), got {leaf_size!r}")
    hidden_layers(model)
    for _, l in hidden_layers(model):
        if type(l) is not nn.Linear or hasattr(l, "weight_mask"):
            raise TypeError("compress expects a dense model (plain nn.Linear hidden layers)")
    dense_b = dense_hidden_bytes(model)
    target = None if budget is None else budget * dense_b
    if method.startswith("quantize-"):
        bits = int(method.split("int")[1])
        method = "quantize"
    setting = {}
    src = model
    if reorder_method != "none":
        if method != "hmatrix":
            raise ValueError("reorder_method only applies to method='hmatrix'")
        src, _ = reorder(model, reorder_method, x)
        setting["reorder"] = reorder_method
    out = None
    if method == "hmatrix":
        if target is None:
            if tol is None:
                raise ValueError("hmatrix needs tol or budget")
            out = _hmatrix(src, tol, leaf_size, eta)
            setting["tol"] = tol
            setting["leaf_size"] = leaf_size
        else:
            # bisection on tol for leaf_size, leaf_size/2, ... (>= 2); the dense diagonal
            # leaves put a floor of about leaf_size/n on the size, so smaller leaves may be
            # needed to meet small budgets. The feasible candidate with the smallest weight
            # error wins.
            best = None
            ls = int(leaf_size)
            while ls >= 2:
                p, cand = _bisect(lambda t: _hmatrix(src, t, ls, eta), 1e-7, 0.99, target)
                if cand is not None:
                    err = weight_error(src, cand)
                    if best is None or err < best[0]:
                        best = (err, p, ls, cand)
                ls //= 2
            if best is not None:
                _, p, ls, out = best
                setting.update(tol=p, leaf_size=ls)
    elif method == "svd":
        if target is None:
            if (tol is None) == (rank is None):
                raise ValueError("svd needs exactly one of tol, rank (or a budget)")
            out = _svd(src, tol=tol, rank=rank)
            setting.update(tol=tol, rank=rank)
        else:
            p, out = _bisect(lambda t: _svd(src, tol=t), 1e-7, 1.0, target)
            setting["tol"] = p
        if out is not None:
            setting["ranks"] = [l.rank for _, l in hidden_layers(out)]
    elif method == "prune":
        if target is None:
            if tol is None:
                raise ValueError("prune needs tol or budget")
            # largest amount with global relative error <= tol: the entries kept are those
            # the rank rule keeps of the magnitudes in descending order
            W = torch.cat([l.weight.detach().abs().flatten() for _, l in hidden_layers(src)]).double()
            s = torch.sort(W, descending=True).values
            k = s.numel() - rank_for_tol(s, tol)
            amount = k / s.numel()
            out = _prune(src, amount)
        else:
            amount, out = _bisect(lambda a: _prune(src, a), 0.0, 1.0, target, log=False)
        setting["amount"] = amount
    elif method in HALF:
        out = _half(src, method)
        if target is not None and hidden_bytes(out) > target:
            out = None
        setting["storage"] = method
    else:  # quantize
        if bits is not None and target is None and tol is None:
            out = _quantize(src, bits)
        elif target is not None:
            cands = [b for b in ([bits] if bits else range(8, 1, -1))]
            for b in cands:
                q = _quantize(src, b)
                if hidden_bytes(q) <= target:
                    bits, out = b, q
                    break
        elif tol is not None:
            for b in range(2, 17):
                q = _quantize(src, b)
                if weight_error(src, q) <= tol:
                    bits, out = b, q
                    break
        else:
            bits, out = 8, _quantize(src, 8)
        setting["bits"] = bits
    info = {"method": method, "setting": setting, "dense_bytes": dense_b, "feasible": out is not None}
    if out is None:
        info.update(bytes=None, fraction=None, weight_error=None)
        return None, info
    b = hidden_bytes(out)
    info.update(bytes=b, fraction=b / dense_b, weight_error=weight_error(src, out),
                parameters=count_parameters(out))
    return out, info


def dynamic_int8(model):
    """Real int8 model (``torch.ao`` dynamic quantization) -- for timing inference only.

    Its Linear layers cut the autograd graph with respect to the input, so it
    cannot compute PDE residuals.
    """
    import warnings

    m = clone_model(model).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
