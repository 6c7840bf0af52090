"""Atomic file writes for reports: a reader never sees a half-written file."""
from __future__ import annotations

import json
import os
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
