"""Reading a scene as batches of normalised tiles, in a background thread ahead of the consumer.

Shared by ``extract`` (tiles to the model) and ``curate`` (tiles to a pre-training corpus). Tiles are
read as runs of one tile row, one window each, so memory depends on the batch size, not the scene.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ofa_embed.scene import Scene
from ofa_embed.tiling import TileWindow, tile_windows, validate_tiling

__all__ = ["TilePlan", "TileBatch", "plan_tiles", "read_tile_batches", "prefetched"]


@dataclass
class TilePlan:
    scene: Scene
    tiles: list[TileWindow]
    tile_size: int
    stride: int


def plan_tiles(scene: Scene, tile_size: int | None, stride: int | None, patch_size: int) -> TilePlan:
    size = tile_size or scene.modality.default_tile_size
    step = stride or size
    validate_tiling(size, step, patch_size, width=scene.width, height=scene.height, name=str(scene.path))
    return TilePlan(scene, tile_windows(scene.width, scene.height, size, step), size, step)


@dataclass
class TileBatch:
    tiles: list[TileWindow]
    data: np.ndarray  # (B, C, T, T) float32
    valid_fraction: np.ndarray  # (B,)
    skipped: int


def _chunks(tiles: list[TileWindow], limit: int) -> Iterator[list[TileWindow]]:
    """Runs of at most ``limit`` consecutive tiles of one tile row: each is read as one window."""
    run: list[TileWindow] = []
    for tile in tiles:
        if run and (tile.row != run[0].row or len(run) == limit):
            yield run
            run = []
        run.append(tile)
    if run:
        yield run


def read_tile_batches(plan: TilePlan, batch_size: int, min_valid: float, stop: threading.Event) -> Iterator[TileBatch]:
    scene, size = plan.scene, plan.tile_size
    channels = scene.modality.num_bands
    kept: list[TileWindow] = []
    fractions: list[float] = []
    buffer = np.empty((batch_size, channels, size, size), np.float32)
    skipped = 0
    for run in _chunks(plan.tiles, batch_size):
        if stop.is_set():
            return
        left, top = run[0].col, run[0].row
        window = Window(left, top, run[-1].col + run[-1].width - left, max(t.height for t in run))
        data, valid = scene.read(window)
        for tile in run:
            c0 = tile.col - left
            tile_valid = valid[: tile.height, c0 : c0 + tile.width]
            fraction = float(tile_valid.mean())
            if fraction < min_valid:
                skipped += 1
                continue
            slot = buffer[len(kept)]
            if tile.padded:
                slot.fill(0.0)
            slot[:, : tile.height, : tile.width] = data[:, : tile.height, c0 : c0 + tile.width]
            kept.append(tile)
            fractions.append(fraction)
            if len(kept) == batch_size:
                yield TileBatch(kept, buffer, np.array(fractions), skipped)
                buffer = np.empty_like(buffer)  # the yielded one now belongs to the consumer
                kept, fractions, skipped = [], [], 0
    if kept or skipped:
        yield TileBatch(kept, buffer[: len(kept)], np.array(fractions), skipped)


def prefetched(batches: Iterator[TileBatch], stop: threading.Event, depth: int = 2) -> Iterator[TileBatch]:
    """Run ``batches`` in a background thread, ``depth`` batches ahead; re-raise its errors here."""
    slots: queue.Queue[TileBatch | BaseException | None] = queue.Queue(maxsize=depth)

    def offer(item: TileBatch | BaseException | None) -> None:
        # never block for good: the consumer may have stopped listening (error, interrupt)
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for batch in batches:
                offer(batch)
            offer(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(exc)

    thread = threading.Thread(target=produce, name="ofa-embed-reader", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
