"""A small nonlinear operator network whose wide layers are grid-indexed.

Maps a function sampled on a grid to a function on the same grid, ``f (k, n)
-> u (k, n)``. The *wide* layers are ``n -> n`` linear maps between grid
functions -- exactly the layers whose weights play the role of a discrete
Green's function and can be H-matrices (``pinn.HMatrixLinear`` with
``in_points``/``out_points``), low rank, pruned or dense. Everything else is
pointwise and tiny (a few numbers per channel), in the spirit of multiscale
operator networks built on hierarchical matrices (MNN-H) and of neural
operators with channel mixing:

.. math::

    v_0 &= a f + \\beta \\quad (c \\text{ channels, pointwise}) \\\\
    v_{l+1} &= \\sigma\\bigl(K_l v_l + C_l v_l + d_l\\bigr), \\quad l = 0, \\dots, L-2 \\\\
    u &= q^T \\bigl(K_{L-1} v_{L-1} + C_{L-1} v_{L-1} + d_{L-1}\\bigr) + e

where ``K_l`` is the ``l``-th wide layer applied to every channel (shared
across channels, with its own per-grid-point bias), ``C_l`` a ``c x c``
channel mixing and ``sigma`` a pointwise activation (not applied after the
last wide layer, as in an MLP's output layer).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .layers import ACTIVATIONS

__all__ = ["GridNet"]


def _grid_features(layer):
    """(in_features, out_features) of a wide layer, or raise TypeError naming it."""
    try:
        return int(layer.in_features), int(layer.out_features)
    except AttributeError:
        raise TypeError(f"wide layers must be nn.Modules with in_features/out_features, "
                        f"got {type(layer).__name__}") from None


class GridNet(nn.Module):
    """Nonlinear grid-to-grid network with grid-indexed wide layers.

    Parameters
    ----------
    wide_layers : sequence of nn.Module
        ``L >= 1`` layers mapping ``(..., n) -> (..., n)`` (``nn.Linear``,
        :class:`pinn.HMatrixLinear`, :class:`pinn.LowRankLinear`, ...), all with
        ``in_features == out_features == n``.
    channels : int >= 1
        Number of channels ``c`` carried between the wide layers.
    activation : {"tanh", "sin", "gelu", "silu"}
    dtype : torch.dtype, optional
        Of the pointwise parameters (default: the wide layers' dtype).
    generator : torch.Generator, optional
        For the random pointwise parameters: ``a ~ N(0, 1)``, ``C_l, q ~ N(0, 1/c)``;
        biases start at zero.

    Notes
    -----
    Input ``(k, n)`` or ``(n,)``, output of the same shape. :attr:`wide_layers`
    lists the grid-indexed layers; :meth:`replace_wide` returns a copy with
    some of them replaced (compression). ``parameters()`` includes both the
    wide layers' and the pointwise parameters; :meth:`pointwise_parameters`
    only the latter.
    """

    def __init__(self, wide_layers, channels=4, activation="tanh", dtype=None, generator=None):
        super().__init__()
        layers = list(wide_layers)
        if not layers:
            raise ValueError("wide_layers must hold at least one layer")
        n = None
        for i, lay in enumerate(layers):
            if not isinstance(lay, nn.Module):
                raise TypeError(f"wide_layers[{i}] must be an nn.Module, got {type(lay).__name__}")
            fin, fout = _grid_features(lay)
            if fin != fout or (n is not None and fin != n):
                raise ValueError(f"wide_layers[{i}] must map n -> n with one n for all layers; "
                                 f"got {fin} -> {fout}" + ("" if n is None else f" (n = {n})"))
            n = fin
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if dtype is None:
            dtype = next((p.dtype for lay in layers for p in lay.parameters()),
                         torch.get_default_dtype())
        self.n, self.channels, self.activation = n, channels, activation
        self.wide_layers = nn.ModuleList(layers)
        c, L = channels, len(layers)
        g = generator
        self.lift_weight = nn.Parameter(torch.randn(c, dtype=dtype, generator=g))
        self.lift_bias = nn.Parameter(torch.zeros(c, dtype=dtype))
        s = 1.0 / math.sqrt(c)
        self.mix = nn.Parameter(torch.randn(L, c, c, dtype=dtype, generator=g) * s)
        self.mix_bias = nn.Parameter(torch.zeros(L, c, dtype=dtype))
        self.proj_weight = nn.Parameter(torch.randn(c, dtype=dtype, generator=g) * s)
        self.proj_bias = nn.Parameter(torch.zeros((), dtype=dtype))

    @property
    def in_features(self):
        return self.n

    @property
    def out_features(self):
        return self.n

    def pointwise_parameters(self):
        """The parameters that are not in a wide layer (list)."""
        return [self.lift_weight, self.lift_bias, self.mix, self.mix_bias, self.proj_weight,
                self.proj_bias]

    def forward(self, f):
        if f.shape[-1] != self.n:
            raise ValueError(f"f: last dimension must be {self.n}, got shape {tuple(f.shape)}")
        act = ACTIVATIONS[self.activation]
        lead = f.shape[:-1]
        f2 = f.reshape(-1, self.n)
        v = f2[:, None, :] * self.lift_weight[:, None] + self.lift_bias[:, None]  # (k, c, n)
        last = len(self.wide_layers) - 1
        for i, (layer, C, d) in enumerate(zip(self.wide_layers, self.mix, self.mix_bias)):
            v = layer(v) + torch.einsum("ij,kjn->kin", C, v) + d[:, None]
            if i < last:
                v = act(v)
        u = torch.einsum("c,kcn->kn", self.proj_weight, v) + self.proj_bias
        return u.reshape(*lead, self.n)

    def replace_wide(self, fn):
        """A deep copy whose wide layer ``i`` is ``fn(i, layer)`` (``layer`` is the copy's).

        Parameters
        ----------
        fn : callable ``(int, nn.Module) -> nn.Module``
            Must return an ``n -> n`` layer of the same dtype.
        """
        new = copy.deepcopy(self)
        layers = [fn(i, lay) for i, lay in enumerate(new.wide_layers)]
        for i, lay in enumerate(layers):
            fin, fout = _grid_features(lay)
            if fin != self.n or fout != self.n:
                raise ValueError(f"replacement wide layer {i} must map {self.n} -> {self.n}, "
                                 f"got {fin} -> {fout}")
        new.wide_layers = nn.ModuleList(layers)
        return new

    def extra_repr(self):
        return f"n={self.n}, channels={self.channels}, activation={self.activation!r}"
