"""hmat: hierarchical matrices (H-matrices) for Python.

Operators (all :class:`scipy.sparse.linalg.LinearOperator` subclasses):
:class:`Dense`, :class:`LowRank`, :class:`HBlock`; trees :class:`ClusterTree`,
:class:`BlockTree`; the block structure :class:`Partition` (leaf kinds :class:`LeafKind`),
build provenance :class:`BuildInfo`; admissibility :class:`StrongAdmissibility`, :class:`WeakAdmissibility`;
builders :func:`from_kernel`, :func:`from_dense`; compressors (:class:`Compressor` protocol,
:mod:`hmat.compressors`) :class:`ACA`, :class:`SVD`;
recompression :func:`truncate`, :func:`coarsen`; numerical toolbox :mod:`hmat.linalg`
(``rank_for_tol``, ``recompress``, ``svd_truncate``, ``permuted_apply``); arithmetic :func:`add`,
:func:`multiply`, :func:`lu`, :func:`cholesky`, :func:`solve_triangular`; I/O :func:`save`,
:func:`load`; :func:`plot`; GPU :func:`to_cupy`, :func:`to_numpy`; checks for your own
operators in :mod:`hmat.testing` (``dottest``, ``check_operator``).
"""

from . import _jit_notice, compressors, kernels, linalg, testing
from ._threads import get_num_threads, set_num_threads
from .aca import ACA
from .arithmetic import (
    CholeskyFactorization,
    Diagonal,
    Identity,
    LUFactorization,
    add,
    cholesky,
    lu,
    materialize,
    multiply,
    solve_triangular,
)
from .backend import to_cupy, to_device, to_numpy
from .admissibility import StrongAdmissibility, WeakAdmissibility
from .blocktree import BlockTree
from .build import from_dense, from_kernel
from .cluster import BBoxSplit, CardinalitySplit, ClusterNode, ClusterTree, PCASplit
from .coarsen import coarsen
from .compressors import Compressor
from .dense import Dense
from .hblock import HBlock, Leaf
from .io import load, save
from .lowrank import LowRank
from .operator import LinearOperator
from .partition import LeafKind, Partition
from .provenance import BuildInfo
from .plot import plot
from .points import sphere_points
from .svd import SVD
from .truncate import truncate

_jit_notice.install()  # one stderr line when the kernels compile (cold cache), silent when warm

__version__ = "0.1.0"

__all__ = [
    "LinearOperator",
    "Dense",
    "LowRank",
    "HBlock",
    "Leaf",
    "ClusterTree",
    "ClusterNode",
    "BBoxSplit",
    "PCASplit",
    "CardinalitySplit",
    "BlockTree",
    "Partition",
    "LeafKind",
    "BuildInfo",
    "StrongAdmissibility",
    "WeakAdmissibility",
    "kernels",
    "testing",
    "from_kernel",
    "from_dense",
    "ACA",
    "SVD",
    "Compressor",
    "compressors",
    "linalg",
    "truncate",
    "coarsen",
    "save",
    "load",
    "plot",
    "sphere_points",
    "get_num_threads",
    "set_num_threads",
    "add",
    "materialize",
    "multiply",
    "lu",
    "LUFactorization",
    "cholesky",
    "CholeskyFactorization",
    "solve_triangular",
    "Diagonal",
    "Identity",
    "to_cupy",
    "to_numpy",
    "to_device",
]
