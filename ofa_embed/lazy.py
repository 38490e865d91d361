"""Deferred imports of heavy modules (torch, faiss, DuckDB), made whole even when interrupted.

``import ofa_embed`` and the CLI load torch only when something is embedded. The first such call then
spends seconds importing torch; a Ctrl-C in that window used to land inside torch's own import and leave it
half-initialised in ``sys.modules`` for the rest of a notebook session (every later call failed). Here
an interrupt that arrives during the import is held until the import is complete and then delivered as
usual: the caller still gets its ``KeyboardInterrupt``, a moment later, and the module is whole.
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType

__all__ = ["import_whole"]

_deferring = threading.local()


def import_whole(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with SIGINT held until the import has finished.

    Call it from function bodies, as the lazy attributes of the packages do, not at module level.
    """
    with _interrupts_held():
        return importlib.import_module(name)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    # only the main thread receives Python's signal handlers and may replace them; a handler installed
    # outside Python (embedded interpreters) reads as None and cannot be restored, so it is left alone
    if (threading.current_thread() is not threading.main_thread() or getattr(_deferring, "active", False)
            or signal.getsignal(signal.SIGINT) is None):
        yield
        return
    received: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append((signum, frame))

    previous = signal.signal(signal.SIGINT, hold)
    _deferring.active = True
    try:
        yield
    finally:
        _deferring.active = False
        signal.signal(signal.SIGINT, previous)
    if received:
        _deliver(previous, *received[0])


def _deliver(handler: Callable[[int, FrameType | None], object] | int | None, signum: int,
             frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt
