"""Waiting for threads through Ctrl-C: the wait completes, then the interrupt is delivered."""

import threading

import pytest

from ofa_embed.threads import wait_through_interrupts


def test_an_interrupted_wait_is_resumed_until_done_and_the_interrupt_delivered_after():
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    calls = []

    def wait() -> None:
        calls.append(1)
        if len(calls) == 1:  # a second Ctrl-C arriving in the join
            release.set()
            raise KeyboardInterrupt
        worker.join()

    with pytest.raises(KeyboardInterrupt):
        wait_through_interrupts(wait, lambda: not worker.is_alive())
    assert not worker.is_alive() and len(calls) == 2


def test_an_uninterrupted_wait_returns_quietly():
    worker = threading.Thread(target=lambda: None)
    worker.start()
    wait_through_interrupts(worker.join, lambda: not worker.is_alive())
    assert not worker.is_alive()
