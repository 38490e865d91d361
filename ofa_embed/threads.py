"""Waiting for worker threads to finish, even through Ctrl-C.

A scene's reader and model workers must be stopped and joined before the scene's files close: a thread
still inside ``Scene.read`` when GDAL closes the dataset crashes the interpreter. A second Ctrl-C that
lands in that join must therefore not cut it short; it is delivered once the threads are done.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["wait_through_interrupts"]


def wait_through_interrupts(wait: Callable[[], None], done: Callable[[], bool]) -> None:
    """Call ``wait`` until ``done()``, retrying when Ctrl-C interrupts it; then re-raise that interrupt.

    Args:
        wait: blocks until the threads have finished (``thread.join``, ``pool.shutdown``).
        done: whether they have.

    Raises:
        KeyboardInterrupt: one arrived while waiting (after the wait is complete).
    """
    interrupted = False
    while True:
        try:
            wait()
        except KeyboardInterrupt:
            interrupted = True
        if done():
            break
    if interrupted:
        raise KeyboardInterrupt
