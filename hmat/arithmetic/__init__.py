"""Formatted H-matrix arithmetic: sums, products, factorizations, triangular solves.

Public functions: :func:`add`, :func:`materialize`, :func:`multiply`, :func:`lu`,
:func:`cholesky`, :func:`solve_triangular`; operators :class:`Diagonal`,
:func:`Identity`; results :class:`LUFactorization`, :class:`CholeskyFactorization`.

All work on the permuted block structure of :class:`~hmat.HBlock` roots; operands must
share cluster trees (equal permutations). Truncation is blockwise relative Frobenius at
``tol``. BLAS is limited to one thread inside these functions (small blocks).
"""

from .add import add, materialize
from .cholesky import CholeskyFactorization, cholesky
from .diagonal import Diagonal, Identity
from .lu import LUFactorization, lu
from .multiply import multiply
from .triangular import solve_triangular

__all__ = [
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
]
