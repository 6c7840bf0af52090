"""Atomic file writes for reports: a reader never sees a half-written file."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile


def write_text_atomic(path, text):
    """Write ``text`` (str) to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pinn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj):
    """``json.dump(obj)`` (indent 1; numpy scalars as floats) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, default=float))


@contextlib.contextmanager
def atomic_target(path, suffix=".tmp"):
    """Context manager for an atomic write by any writer (``torch.save``, ``savefig``).

    Yields a temporary path (``suffix`` kept, e.g. a plot format) in the directory of
    ``path``'s real target (a symlink is followed: its target is updated); on success it
    gets the permissions of an existing target and replaces it (``os.replace``), on any
    error it is removed.

    Raises
    ------
    ValueError
        If the target directory does not exist.
    """
    path = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ValueError(f"path: directory {directory!r} does not exist")
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
    fd, tmp = tempfile.mkstemp(prefix=".pinn-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
