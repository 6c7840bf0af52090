"""Physics-informed neural networks with H-matrix (hmat) compressed layers."""
from . import problems
from .autograd import StructuredLinearFn
from .layers import MLP, HMatrixLinear, LowRankLinear, block_rank_penalty, hidden_layers
from .problems import get_problem

__all__ = ["problems", "get_problem", "MLP", "LowRankLinear", "HMatrixLinear",
           "StructuredLinearFn", "block_rank_penalty", "hidden_layers"]
