"""Build provenance: one immutable record of how an H-matrix was made."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["BuildInfo"]


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """How an :class:`~hmat.HBlock` was built; passed at construction, never changed.

    Parameters
    ----------
    tol : float or None
        The tolerance the builder (or arithmetic) was asked for; None when built by hand.
    kernel_evaluations : int
        Kernel entries evaluated by the build (0 unless built from a kernel).
    error_estimate : float or None
        Relative Frobenius error: exact for ``from_dense``, sampled for ``from_kernel``,
        the achieved bound of ``truncate``/``coarsen``; None if unknown.
    compressor : str or None
        Name of the compressor that made the low-rank leaves, if any.

    Use :meth:`replace` for a modified copy.
    """

    tol: float | None = None
    kernel_evaluations: int = 0
    error_estimate: float | None = None
    compressor: str | None = None

    def __post_init__(self):
        put = object.__setattr__
        if self.tol is not None:
            t = float(self.tol)
            if not (0 < t < math.inf):
                raise ValueError(f"tol must be a finite number > 0 or None, got {self.tol!r}")
            put(self, "tol", t)
        k = self.kernel_evaluations
        if isinstance(k, bool) or not float(k) == int(k) or int(k) < 0:
            raise ValueError(f"kernel_evaluations must be an integer >= 0, got {k!r}")
        put(self, "kernel_evaluations", int(k))
        if self.error_estimate is not None:
            e = float(self.error_estimate)
            if not e >= 0:
                raise ValueError(f"error_estimate must be >= 0 or None, got {self.error_estimate!r}")
            put(self, "error_estimate", e)
        if self.compressor is not None and not isinstance(self.compressor, str):
            raise ValueError(f"compressor must be a name (str) or None, got {type(self.compressor).__name__}")

    def replace(self, **changes):
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)


#: The record of an operator built by hand (nothing known).
UNKNOWN = BuildInfo()
