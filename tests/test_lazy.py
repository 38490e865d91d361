"""Deferred heavy imports: an interrupt during the first embedding call leaves torch whole."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ofa_embed.lazy import import_whole


def test_import_whole_returns_the_module():
    assert import_whole("ofa_embed.tiling").__name__ == "ofa_embed.tiling"


@pytest.fixture(scope="module")
def first_use_s():
    """How long the first ``ofa_embed.extract`` (importing torch) takes here: 1-3 s, by machine and disk cache."""
    timing = "import time, ofa_embed; t = time.perf_counter(); ofa_embed.extract; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", timing], capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process is POSIX-only")
@pytest.mark.parametrize("fraction", [0.15, 0.45, 0.75])
def test_interrupt_during_the_first_torch_import_is_delivered_after_it_and_leaves_torch_usable(fraction, first_use_s):
    """A notebook-style session: Ctrl-C lands while ``ofa_embed.extract`` first imports torch (at a fraction of
    that import's measured time); the session gets its KeyboardInterrupt and its next call works (without
    the held interrupt, 6 of 7 such delays left torch half-initialised or crashed the child)."""
    script = textwrap.dedent("""
        import signal, sys, time
        # as in an interactive session: a shell that starts jobs in the background hands them SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import ofa_embed
        print("ready", flush=True)
        try:
            ofa_embed.extract   # first use: imports the extraction module and torch
            print("not-interrupted", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        import torch
        from ofa_embed.model import create_model
        with torch.inference_mode():
            print("forward", tuple(create_model("ofa_test")(torch.zeros(1, 3, 16, 16), "rgb").shape), flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(fraction * first_use_s)  # inside the torch import
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.split("\n")[0] == "interrupted"  # the interrupt was not swallowed
    assert "forward (1, 32)" in out
