"""Compatibility alias: the operator study now lives in :mod:`pinn.studies.operator`
(``python -m pinn operator``). Importing ``pinn.operator_study`` gives that module itself."""
import sys

from .studies import operator as _impl

if __name__ == "__main__":  # pragma: no cover
    sys.exit(_impl.main(prog="python -m pinn.operator_study"))
sys.modules[__name__] = _impl
