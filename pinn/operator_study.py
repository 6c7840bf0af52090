"""Compatibility module: the operator study now lives in :mod:`pinn.studies.operator`
(``python -m pinn operator``); every public name is re-exported here."""
from .studies.operator import *  # noqa: F401,F403
from .studies.operator import __all__  # noqa: F401
from .studies.operator import main

if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(prog="python -m pinn.operator_study"))
