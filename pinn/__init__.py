"""Physics-informed neural networks with H-matrix (hmat) compressed layers.

Main entry points: :class:`MLP`, :class:`HMatrixLinear`, :class:`LowRankLinear`,
:func:`train`, :func:`compress`, :func:`ntk`, :func:`ntk_compare`, problems without a
subclass (:func:`define_problem` with domains and conditions), :func:`predict`,
:func:`save`/:func:`load`, callbacks (:mod:`pinn.callbacks`), metrics (:mod:`pinn.metrics`),
plots (:mod:`pinn.plot`),
:class:`DynamicHCompression`, :class:`GridNet` (grid-to-grid operator network), the
problems in :mod:`pinn.problems`, and the studies ``python -m pinn compare`` and
``python -m pinn operator``.
"""
from . import problems
from .autograd import StructuredLinearFn
from .compress import compress, reorder
from .dynamic import DynamicHCompression
from .gridnet import GridNet
from .layers import MLP, HMatrixLinear, LowRankLinear, block_rank_penalty, hidden_layers
from .ntk import ntk, ntk_compare
from . import callbacks, metrics, plot
from .io import load, save
from .models import BoxDirichlet, make_model, predict
from .problems import (Box, DirichletBC, Disk, InitialCondition, Interval, NeumannBC,
                       PointSetBC, Problem, Rectangle, TimeDomain, define_problem, get_problem)
from .train import NonFiniteLossError, train

__all__ = ["problems", "get_problem", "MLP", "LowRankLinear", "HMatrixLinear",
           "StructuredLinearFn", "block_rank_penalty", "hidden_layers", "train", "make_model",
           "NonFiniteLossError", "compress", "reorder", "ntk", "ntk_compare",
           "DynamicHCompression", "GridNet", "Problem", "define_problem", "Interval", "Box",
           "Rectangle", "Disk", "TimeDomain", "DirichletBC", "NeumannBC", "InitialCondition",
           "PointSetBC", "predict", "BoxDirichlet", "save", "load", "callbacks", "metrics", "plot"]
