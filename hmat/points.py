"""Standard point sets for examples and benchmarks."""

from __future__ import annotations

import numpy as np

from ._validate import check_positive

__all__ = ["sphere_points"]


def sphere_points(n):
    """``n`` Fibonacci points on the unit sphere (the sphere-1/r benchmark, docs/sphere_benchmark.md).

    For ``i = 0..n-1``: ``z = 1 - (2i+1)/n``, ``r = sqrt(1 - z^2)``, ``phi = i pi (3 - sqrt 5)``,
    point ``(r cos phi, r sin phi, z)``.

    Returns
    -------
    ndarray, shape (n, 3), float64, C-contiguous
    """
    n = check_positive(n, "n", integer=True)
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    r = np.sqrt(1.0 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.ascontiguousarray(np.column_stack([r * np.cos(phi), r * np.sin(phi), z]))
