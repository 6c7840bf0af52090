"""Networks for PINNs: :func:`make_model`, output transforms (hard boundary conditions) and
:func:`predict`."""
from __future__ import annotations

import numpy as np
import torch

from .layers import MLP
from .problems import get_problem

__all__ = ["make_model", "predict", "BoxDirichlet", "TRANSFORMS", "model_config",
           "model_from_config"]


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def make_model(problem, width=None, depth=None, *, seed=0, activation="tanh", hidden_layer=None,
               dtype=torch.float32, initializer="glorot_normal", output_transform=None,
               device=None):
    """An :class:`MLP` for ``problem``.

    Parameters
    ----------
    problem : Problem or str
        Gives the input dimension and the default ``width``/``depth``.
    width : int or sequence of int, optional
        Neurons per hidden layer; a sequence gives each hidden layer's width
        (``[20, 40, 20]``), and then ``depth`` must be ``None`` or its length.
    depth : int, optional
        Number of hidden layers (with an int ``width``).
    seed : int
        Seeds the weight initialization (a private ``torch.Generator``).
    activation, initializer, output_transform
        See :class:`pinn.MLP`.
    hidden_layer : callable, optional
        Factory of the hidden-to-hidden layers (e.g. ``pinn.HMatrixLinear``).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : torch.device or str, optional

    Returns
    -------
    MLP

    Raises
    ------
    ValueError
        ``width``/``depth`` not positive integers, a width list whose length is not ``depth``.
    """
    problem = get_problem(problem)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if width is not None and not isinstance(width, (int, np.integer)) or isinstance(width, bool):
        try:
            widths = [_positive_int("width", w) for w in width]
        except TypeError:
            raise ValueError(f"width must be a positive integer or a sequence of them, got "
                             f"{width!r}") from None
        if not widths:
            raise ValueError("width must not be an empty sequence")
        if depth is not None and _positive_int("depth", depth) != len(widths):
            raise ValueError(f"depth ({depth}) must equal len(width) ({len(widths)}) or be None")
    else:
        width = problem.defaults["width"] if width is None else _positive_int("width", width)
        depth = problem.defaults["depth"] if depth is None else _positive_int("depth", depth)
        widths = [width] * depth
    g = torch.Generator().manual_seed(int(seed))
    sizes = [problem.dim] + widths + [1]
    m = MLP(sizes, activation=activation, hidden_layer=hidden_layer, generator=g,
            initializer=initializer, output_transform=output_transform).to(dtype)
    return m if device is None else m.to(device)


def predict(model, x, *, batch_size=65536):
    """Evaluate ``model`` at points ``x`` without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (N, d) to (N, k); evaluated on the device and in the dtype of its first
        parameter.
    x : array_like or torch.Tensor, shape (n, d)
    batch_size : int
        Points per forward pass (memory bound).

    Returns
    -------
    numpy.ndarray, float64, shape (n,) for a single output, else (n, k)
    """
    batch_size = _positive_int("batch_size", batch_size)
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None else torch.float32
    device = p.device if p is not None else None
    xt = torch.as_tensor(np.asarray(x.detach().cpu() if torch.is_tensor(x) else x,
                                    dtype=np.float64), dtype=dtype)
    if xt.ndim == 1:
        xt = xt[:, None]
    if xt.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(xt.shape)}")
    outs = []
    with torch.no_grad():
        for i in range(0, xt.shape[0], batch_size):
            outs.append(model(xt[i:i + batch_size].to(device)).detach().cpu().double())
    y = torch.cat(outs).numpy() if outs else np.zeros((0, 1))
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y


class BoxDirichlet(torch.nn.Module):
    """Hard Dirichlet condition on faces of a box: ``u = value + prod_i s_i(x) * y``.

    With ``s_i(x) = (x_i - lower_i) (upper_i - x_i) / ((upper_i - lower_i) / 2)^2`` over the
    coordinates ``dims`` (both faces), ``u`` equals ``value`` on those faces whatever the
    network output ``y``. For one face only, give ``side`` per dimension: ``"both"``,
    ``"lower"`` (``s_i = (x_i - lower_i) / (upper_i - lower_i)``, e.g. an initial time),
    or ``"upper"``.

    Parameters
    ----------
    lower, upper : sequence of float, shape (d,)
    dims : sequence of int, optional
        Coordinates whose faces carry the condition (default all).
    value : float
    side : str or sequence of str
    """

    def __init__(self, lower, upper, dims=None, value=0.0, side="both"):
        super().__init__()
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)
        hi = np.asarray(upper, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape or not np.all(np.isfinite(lo)) or not np.all(hi > lo):
            raise ValueError(f"lower < upper (finite, same length) required, got {lower!r}, "
                             f"{upper!r}")
        dims = list(range(lo.size)) if dims is None else [int(i) for i in dims]
        if not dims or any(not 0 <= i < lo.size for i in dims):
            raise ValueError(f"dims must be indices in [0, {lo.size}), got {dims!r}")
        sides = [side] * len(dims) if isinstance(side, str) else list(side)
        if len(sides) != len(dims) or any(s not in ("both", "lower", "upper") for s in sides):
            raise ValueError(f"side must be 'both', 'lower' or 'upper' (one per dim), got {side!r}")
        if not np.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        self.lower, self.upper = lo.tolist(), hi.tolist()
        self.dims, self.sides, self.value = dims, sides, float(value)

    def forward(self, x, y):
        s = None
        for i, side in zip(self.dims, self.sides):
            lo, hi = self.lower[i], self.upper[i]
            if side == "both":
                f = (x[:, i:i + 1] - lo) * (hi - x[:, i:i + 1]) * (4.0 / (hi - lo) ** 2)
            elif side == "lower":
                f = (x[:, i:i + 1] - lo) / (hi - lo)
            else:
                f = (hi - x[:, i:i + 1]) / (hi - lo)
            s = f if s is None else s * f
        return self.value + s * y

    def config(self):
        """JSON-serialisable constructor arguments."""
        return {"type": "BoxDirichlet", "lower": self.lower, "upper": self.upper,
                "dims": self.dims, "value": self.value, "side": self.sides}


TRANSFORMS = {"BoxDirichlet": BoxDirichlet}


def model_config(model):
    """JSON description from which :func:`pinn.io.load` rebuilds ``model``.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`MLP` of ``nn.Linear`` layers, or its output
        transform is not one of :data:`TRANSFORMS` (a user function cannot be stored).
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a pinn.MLP to be saved, got {type(model).__name__}")
    kinds = {type(l).__name__ for l in model.layers if type(l) is not torch.nn.Linear}
    if kinds:
        raise TypeError(f"model: only MLPs of nn.Linear layers can be saved (found "
                        f"{sorted(kinds)}; save a dense model, compress after loading)")
    t = model.output_transform
    if t is not None and not (type(t).__name__ in TRANSFORMS and hasattr(t, "config")):
        raise TypeError(f"model: its output_transform {t!r} is a user function that cannot be "
                        f"saved; use one of {sorted(TRANSFORMS)} or save the weights "
                        f"(state_dict) yourself")
    p = next(iter(model.parameters()))
    return {"sizes": list(model.sizes), "activation": model.activation,
            "initializer": model.initializer, "dtype": str(p.dtype).replace("torch.", ""),
            "output_transform": None if t is None else t.config()}


def model_from_config(cfg):
    """The :class:`MLP` described by :func:`model_config` (weights initialised, not loaded)."""
    t = cfg.get("output_transform")
    if t is not None:
        t = dict(t)
        kind = t.pop("type", None)
        if kind not in TRANSFORMS:
            raise ValueError(f"unknown output transform {kind!r}")
        t = TRANSFORMS[kind](**t)
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(cfg.get("dtype"))
    if dtype is None:
        raise ValueError(f"unknown dtype {cfg.get('dtype')!r}")
    return MLP(cfg["sizes"], activation=cfg["activation"], initializer=cfg["initializer"],
               output_transform=t).to(dtype)
