"""Size and speed of ``ofa-embed map`` pages for stores of 10^4 to 10^6 tiles, and their first draw in Chromium.

    python benchmarks/map_scale.py [--sizes 10000,100000,1000000] [--browser chromium]

What is measured, and how:

1. Stores: synthetic grids of N tiles of 0.01 degrees (about 1.1 km) in one scene file each, 192-dim
   embeddings that vary smoothly over the grid (random Fourier features of the tile centre plus noise),
   written once into the fetch cache through the store's own writer. Synthetic because the point is the
   page's cost per tile, which does not depend on what the embeddings mean.
2. ``ofa_embed.map(store, page)``: wall time (reading the store, principal components fitted on 50,000
   embeddings and every tile projected, encoding, writing) and the page's size.
3. Chromium (``--headless --dump-dom``, software rendering, 1280 x 800): wall time of the whole browser
   run, and the page's own timers: ``decodeMs`` (parsing the data and decoding the arrays) and ``drawMs``
   (the first draw of every tile), read back from the rendered DOM. Skipped, and said so, without a browser.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import cache_dir  # noqa: E402
from ofa_embed import map as map_store  # noqa: E402
from ofa_embed.store import TileRecords, write_scene  # noqa: E402

DIM = 192
STEP_DEG = 0.01


def grid_store(count: int) -> Path:
    """A store of one scene of ``count`` tiles on a square grid, written once."""
    store = cache_dir() / f"bench-map-{count}"
    if (store / "grid.parquet").exists():
        return store
    side = int(np.ceil(np.sqrt(count)))
    rows, cols = np.divmod(np.arange(count), side)
    lon0, lat0 = 10.0 + cols * STEP_DEG, 45.0 - rows * STEP_DEG
    corners = np.stack([np.stack([lon0, lat0], 1), np.stack([lon0 + STEP_DEG, lat0], 1),
                        np.stack([lon0 + STEP_DEG, lat0 - STEP_DEG], 1), np.stack([lon0, lat0 - STEP_DEG], 1)], 1)
    rng = np.random.default_rng(0)
    frequencies = rng.normal(scale=3.0 / (side * STEP_DEG), size=(2, DIM))
    phases = rng.uniform(0, 2 * np.pi, DIM)
    centres = np.stack([lon0, lat0], 1) @ frequencies + phases
    embeddings = (np.cos(centres) + 0.1 * rng.normal(size=(count, DIM))).astype(np.float32)
    records = TileRecords(rows=rows * 16, cols=cols * 16, heights=np.full(count, 16), widths=np.full(count, 16),
                          padded=np.zeros(count, bool), valid_fraction=np.ones(count, np.float32), lonlat=corners,
                          embeddings=embeddings)
    store.mkdir(parents=True, exist_ok=True)
    write_scene(store, "grid", modality="sentinel2_l2a", acquired=None, tile_size=16, missing_bands=[], records=records,
                metadata={"model": {"weights_hash": "benchmapbenchmap", "weights_source": "synthetic"}},
                emb_metadata={"dimension": DIM, "weights_hash": "benchmapbenchmap"})
    return store


def browser_timings(browser: str, page: Path) -> tuple[float, str, str]:
    """Wall seconds of a headless run of ``page`` and its decodeMs / drawMs."""
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800", f"--user-data-dir={profile}",
             "--virtual-time-budget=60000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=600,
        )
        seconds = time.perf_counter() - start
    decode = re.search(r'data-decode-ms="(\d+)"', done.stdout)
    draw = re.search(r'data-draw-ms="(\d+)"', done.stdout)
    return seconds, decode.group(1) if decode else "?", draw.group(1) if draw else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="tile counts (comma-separated)")
    parser.add_argument("--browser", default="chromium", help="browser executable (default chromium)")
    args = parser.parse_args()
    browser = shutil.which(args.browser)
    print(f"{'tiles':>9} {'map() s':>8} {'page MiB':>9} {'bytes/tile':>10} {'browser s':>10} {'decode ms':>10} {'draw ms':>8}")
    for count in (int(v) for v in args.sizes.split(",")):
        store = grid_store(count)
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "map.html"
            start = time.perf_counter()
            report = map_store(store, page)
            seconds = time.perf_counter() - start
            timings = browser_timings(browser, page) if browser else None
        shown = (f"{timings[0]:10.1f} {timings[1]:>10} {timings[2]:>8}" if timings
                 else f"{'no browser (' + args.browser + ' not on PATH)':>30}")
        print(f"{count:9,d} {seconds:8.1f} {report.bytes / 2**20:9.1f} {report.bytes / count:10.1f} {shown}")


if __name__ == "__main__":
    main()
