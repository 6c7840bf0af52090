"""Physics-informed neural networks with H-matrix (hmat) compressed layers.

Main entry points: :class:`MLP`, :class:`HMatrixLinear`, :class:`LowRankLinear`,
:func:`train`, :func:`compress`, :func:`ntk`, :func:`ntk_compare`,
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
from .problems import get_problem
from .train import NonFiniteLossError, make_model, train

__all__ = ["problems", "get_problem", "MLP", "LowRankLinear", "HMatrixLinear",
           "StructuredLinearFn", "block_rank_penalty", "hidden_layers", "train", "make_model",
           "NonFiniteLossError", "compress", "reorder", "ntk", "ntk_compare",
           "DynamicHCompression", "GridNet"]
