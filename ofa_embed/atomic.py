"""Writing a file so that readers never see it half-written: a temporary name beside it, then a rename."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ofa_embed.errors import StoreError

__all__ = ["atomic_target"]


@contextmanager
def atomic_target(target: Path, errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed onto ``target`` when the block completes,
    removed when it fails, so a reader never sees a half-written file.

    Raises:
        StoreError: writing raised one of ``errors`` (one line naming ``target``).
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(target)
    except errors as exc:
        raise StoreError(f"{target}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
