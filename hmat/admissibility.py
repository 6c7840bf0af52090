"""Admissibility conditions: which blocks are stored low-rank.

An admissibility condition is any callable ``(row_node, col_node) -> bool`` taking two
:class:`~hmat.ClusterNode`. The two built-in ones are also understood by the compiled
block-tree builder.
"""

from __future__ import annotations

from ._validate import check_positive

__all__ = ["StrongAdmissibility", "WeakAdmissibility"]


class StrongAdmissibility:
    """Standard (strong) admissibility on bounding boxes.

    A block ``(s, t)`` is admissible when ``min(diam s, diam t) <= eta * dist(s, t)`` and
    ``dist(s, t) > 0``, where ``diam`` is the Euclidean diameter of a cluster's axis-aligned
    bounding box and ``dist`` the Euclidean distance between the two boxes.

    Parameters
    ----------
    eta : float, default 2.0
        Larger eta admits more (and larger) blocks; must be > 0.
    """

    code = 1

    def __init__(self, eta=2.0):
        self.eta = check_positive(eta, "eta")

    def __call__(self, s, t):
        d = s.distance(t)
        return d > 0 and min(s.diameter, t.diameter) <= self.eta * d

    def __repr__(self):
        return f"StrongAdmissibility(eta={self.eta})"


class WeakAdmissibility:
    """Weak admissibility (HODLR): every block off the diagonal is admissible.

    With the same tree for rows and columns this is ``s != t``. In general, a block is
    admissible when the index ranges, scaled to [0, 1) by the number of rows and columns,
    do not overlap: ``[s.start/m, s.stop/m)`` and ``[t.start/n, t.stop/n)``.
    """

    code = 0
    eta = 0.0

    def __call__(self, s, t):
        m, n = s.tree.n, t.tree.n
        return s.stop * n <= t.start * m or t.stop * m <= s.start * n

    def __repr__(self):
        return "WeakAdmissibility()"
