"""Writing a file so that readers never see it half-written: a temporary name beside it, then a rename; for a
:class:`~ofa_embed.location.RemotePath`, a local temporary file uploaded whole (see :mod:`ofa_embed.location`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ofa_embed.errors import StoreError
from ofa_embed.location import AnyPath, RemotePath

__all__ = ["atomic_target"]


@contextmanager
def atomic_target(target: AnyPath, errors: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[Path]:
    """A temporary local path to write to; renamed onto ``target`` (or uploaded there, for a remote one) when
    the block completes, removed when it fails, so a reader never sees a half-written file.

    Raises:
        StoreError: writing raised one of ``errors`` (one line naming ``target``).
    """
    if isinstance(target, RemotePath):
        handle, name = tempfile.mkstemp(prefix=".ofa-embed-", suffix=f"-{target.name}")
        os.close(handle)
        tmp = Path(name)
    else:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if isinstance(target, RemotePath):
            target.upload(tmp)
        else:
            tmp.replace(target)
    except errors as exc:
        raise StoreError(f"{target}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
