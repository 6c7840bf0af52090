"""Atomic file writes for reports and models: a reader never sees a half-written file.

All of them go through the one atomic writer of the library, :func:`hmat.io.write_atomic`
(temporary file next to the target, fsync, ``os.replace``; an existing target keeps its
permissions, a symbolic link is followed).
"""
from __future__ import annotations

import json
import os

from hmat.io import write_atomic

__all__ = ["write_text_atomic", "write_json_atomic", "write_bytes_atomic", "check_directory"]


def check_directory(path):
    """Raise ValueError naming ``path`` when the directory of its (real) target does not exist."""
    directory = os.path.dirname(os.path.realpath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise ValueError(f"path: directory {directory!r} does not exist")


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically.

    Raises
    ------
    ValueError
        If the target directory does not exist.
    """
    check_directory(path)
    write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path, text):
    """Write ``text`` (str, UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
    """``json.dump(obj)`` (indent 1; numpy scalars as floats) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, default=float))
