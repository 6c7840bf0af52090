"""Progress bars (tqdm) that can be switched off."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_bar(total, desc, unit="it", disable=False):
    """A tqdm bar, or a no-op object with ``update`` when disabled or tqdm is missing."""
    if disable:
        yield _Null()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        yield _Null()
        return
    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar
    finally:
        bar.close()


class _Null:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass
