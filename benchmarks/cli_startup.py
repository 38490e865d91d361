"""Start-up cost of the command line: ``ofa-embed extract --sample`` end to end, against its floors.

Measured in one run, interleaved round by round (this VM's speed drifts), as wall time of fresh processes:

* ``python -c pass``: the interpreter alone;
* ``import ofa_embed.cli.main``: what every command pays before it does anything (no torch);
* ``import torch``: the floor of any command that embeds (the pinned CUDA build of torch loads its
  libraries even without a GPU);
* ``ofa-embed extract --sample``: 16 tiles of the bundled Sentinel-2 sample into a fresh store.

Prints the median and range of each over ``--rounds`` rounds, and the target (< 3 s for the sample).

    python benchmarks/cli_startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 3.0


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cli = Path(sys.executable).with_name("ofa-embed")
    work = Path(tempfile.mkdtemp(prefix="ofa-startup-"))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import ofa_embed.cli.main": [sys.executable, "-c", "import ofa_embed.cli.main"],
        "import torch (floor of embedding)": [sys.executable, "-c", "import torch"],
        "ofa-embed extract --sample": [str(cli), "extract", "--sample", "--out", str(work / "store"), "--quiet",
                                       "--overwrite"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    try:
        _wall(commands["ofa-embed extract --sample"])  # warm the page cache once, not counted
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(_wall(command))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"CLI start-up, {args.rounds} rounds interleaved, wall seconds of fresh processes")
    print(f"{'what':40s} {'median':>8s} {'min':>8s} {'max':>8s}")
    for name, values in times.items():
        print(f"{name:40s} {statistics.median(values):8.2f} {min(values):8.2f} {max(values):8.2f}")
    sample = statistics.median(times["ofa-embed extract --sample"])
    floor = statistics.median(times["import torch (floor of embedding)"])
    verdict = "met" if sample < TARGET_S else "missed"
    print(f"extract --sample: {sample:.2f} s median (target < {TARGET_S:.0f} s: {verdict}); "
          f"{sample - floor:.2f} s above the torch import alone")


if __name__ == "__main__":
    main()
