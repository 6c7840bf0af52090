"""PDE problems, one per module, each with its reference solution."""
from .allen_cahn1d import AllenCahn1D
from .base import Condition, Problem, derivatives, derivatives_func, sample_box
from .custom import (DirichletBC, InitialCondition, NeumannBC, PDEProblem, PointSetBC,
                     define_problem)
from .domains import Box, Disk, Domain, Interval, Rectangle, TimeDomain, domain_from_config
from .burgers1d import Burgers1D, cole_hopf
from .heat1d import Heat1D
from .helmholtz2d import Helmholtz2D
from .poisson1d import Poisson1D
from .poisson2d import Poisson2D

PROBLEMS = {
    "poisson1d": Poisson1D,
    "poisson2d": Poisson2D,
    "burgers1d": Burgers1D,
    "helmholtz2d": Helmholtz2D,
    "allencahn1d": AllenCahn1D,
    "heat1d": Heat1D,
}


def get_problem(name, **kwargs):
    """Instantiate a problem by (case-insensitive) name, or pass a Problem through.

    Raises
    ------
    ValueError
        If ``name`` is not a known PDE.
    """
    if isinstance(name, Problem):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in PROBLEMS:
        raise ValueError(f"unknown PDE {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[key](**kwargs)


__all__ = ["Problem", "Condition", "derivatives", "derivatives_func", "sample_box",
           "define_problem", "PDEProblem", "DirichletBC", "NeumannBC", "InitialCondition",
           "PointSetBC", "Domain", "Interval", "Box", "Rectangle", "Disk", "TimeDomain",
           "domain_from_config",
           "Poisson1D", "Poisson2D", "Burgers1D", "Helmholtz2D", "AllenCahn1D", "Heat1D",
           "cole_hopf", "PROBLEMS", "get_problem"]
