"""One stderr line when hmat's Numba kernels compile (a cold on-disk cache), never when warm.

Numba compiles lazily, on a kernel's first call, and caches the machine code on disk
(``cache=True``). A cache hit loads the kernel without compiling; a miss fires Numba's
``numba:compile`` event (documented in the Numba event API) just before compiling. A
listener on that event is therefore an exact, free detector of a cold cache: it costs
nothing while every kernel loads from the cache, and prints at most one line per process
when one of hmat's own kernels (a dispatcher defined in an ``hmat`` module) compiles.
"""

from __future__ import annotations

import sys

from numba.core import event as _event

MESSAGE = "hmat: compiling kernels, first run only (about 30 s)"

_state = {"printed": False, "installed": False}


def _is_hmat_dispatcher(dispatcher):
    func = getattr(dispatcher, "py_func", None)
    module = getattr(func, "__module__", None) or ""
    return module == "hmat" or module.startswith(("hmat.", "hmat_kernel_"))  # hmat_kernel_: see _kernel_jit


class _CompileNotice(_event.Listener):
    """Prints :data:`MESSAGE` on the first compile (cache miss) of an hmat kernel."""

    def on_start(self, event):
        if _state["printed"]:
            return
        data = event.data or {}
        if _is_hmat_dispatcher(data.get("dispatcher")):
            _state["printed"] = True
            print(MESSAGE, file=sys.stderr, flush=True)

    def on_end(self, event):
        pass


def install():
    """Register the listener once per process."""
    if not _state["installed"]:
        _event.register("numba:compile", _CompileNotice())
        _state["installed"] = True
