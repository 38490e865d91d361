"""Dense embedding fields made in an extraction run: the patch tokens of every tile, cropped and mosaicked
into one pixel per patch over the whole scene (written by :mod:`ofa_embed.field_files`).

One forward pass per tile gives both outputs: the tile's patch tokens go to the field, their pooling
(the backbone's own ``pool``) to the tile row, so a dense run embeds no more tiles than its tiling has.

Seams. A token sees only its own tile; near a tile's edge it lacks the context it would have further in.
A dense run therefore tiles with overlap (default stride: the tile less a margin of ``ceil(tile / 8)``
px, rounded up to whole patches, on each side: 128 px tiles of 16 px patches every 96 px) and takes every
field pixel from the tile in which its patch lies farthest from a tile edge, edges on the scene's border not
counting (:class:`FieldBuilder`). With a regular stride that is each tile's central ``stride`` x ``stride``
crop (the border tiles reaching out to the scene's edge). Each field pixel is exactly the token of the one
tile it came from; where neighbouring tiles meet, both had at least the margin of context around it.

Off the run's critical path. The run's consumer only hands each batch's tokens (fresh arrays from the model
workers) and the reader's per-patch valid fractions to a :class:`FieldWriter`, whose one thread places them
into the scene's field and, once the scene is complete, writes its COG and its store file, while the
consumer goes on with the next scene's batches. The queue between them is bounded (a field being written
holds back at most ``depth`` batches of tokens, then the consumer waits); the thread is stopped and joined
on every exit path and its error re-raised in the consumer.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from ofa_embed.errors import TilingError
from ofa_embed.field_files import FieldGrid
from ofa_embed.threads import wait_through_interrupts
from ofa_embed.tiling import TileWindow

__all__ = ["FieldBuilder", "FieldWriter", "check_field_tiling", "field_stride", "pixel_rule"]


def field_stride(tile_size: int, patch: int) -> int:
    """The default stride of a dense run: ``tile_size`` less a margin of ``ceil(tile_size / 8)`` px, rounded up
    to whole patches, on each side (at least one patch; a tile of one or two patches is not overlapped).
    """
    patches = tile_size // patch
    margin = max(1, math.ceil(math.ceil(tile_size / 8) / patch))
    if patches - 2 * margin < 1:
        return tile_size
    return tile_size - 2 * margin * patch


def check_field_tiling(tile_size: int, stride: int, patch: int, name: str) -> None:
    """Refuse a tiling whose tiles do not start on patch edges (their tokens would fall between field pixels).

    Raises:
        TilingError: ``stride`` is not a multiple of ``patch``.
    """
    if stride % patch:
        raise TilingError(f"{name}: a dense run needs a stride that is a multiple of the model's {patch} px patch "
                          f"(got --stride {stride}); use e.g. --stride {max(patch, stride // patch * patch)}")


def pixel_rule(tile_size: int, stride: int, patch: int, min_valid: float) -> str:
    """How each field pixel was made, in words, for the field's record."""
    return (f"the final patch token of the {tile_size} px tile (tiles every {stride} px) in which the pixel's "
            f"{patch} px patch lies farthest from a tile edge, edges on the scene's border not counting; "
            f"nodata where fewer than {min_valid:.0%} of the patch's pixels are valid")


class FieldBuilder:
    """A scene's field, filled as its tiles' tokens arrive (any order; tiles below ``min_valid`` may never come).

    Every pixel keeps the token of the tile where its patch has the largest margin to a tile edge (scene
    borders not counting), ties to the tile that came first: a strict ``>`` against the margin it holds.

    Args:
        grid: the field's grid (:meth:`FieldGrid.of_scene`).
        scene_size: the scene's ``(height, width)`` in pixels.
        dim: token width.
        min_valid: a pixel whose patch has a smaller fraction of valid pixels is nodata (NaN).
    """

    def __init__(self, grid: FieldGrid, scene_size: tuple[int, int], dim: int, min_valid: float) -> None:
        self.grid = grid
        self.scene_height, self.scene_width = scene_size
        self.min_valid = min_valid
        self.values = np.full((dim, grid.height, grid.width), np.nan, np.float32)
        self.margin = np.full((grid.height, grid.width), -1, np.int64)

    def _margins(self, start: int, count: int, extent: int) -> np.ndarray:
        """Per patch of a tile along one axis: patches to the nearer tile edge that is not the scene's border."""
        index = np.arange(count)
        before = np.where(start == 0, count, index)
        after = np.where(start + count * self.grid.patch >= extent, count, count - 1 - index)
        return np.minimum(before, after)

    def add(self, tiles: list[TileWindow], patch_valid: np.ndarray, tokens: np.ndarray) -> None:
        """Add a batch: ``tiles``, the fraction of valid pixels of each of their patches ``patch_valid``
        ``(B, T / P, T / P)`` (the reader's ``TileBatch.patch_valid``) and their tokens ``(B, N, D)``,
        N = (T / P)², row-major.
        """
        patch = self.grid.patch
        if not tiles:
            return
        size = tiles[0].tile_size
        n = size // patch
        fraction = patch_valid
        for k, tile in enumerate(tiles):
            r0, c0 = tile.row // patch, tile.col // patch
            rows = min(n, self.grid.height - r0)
            cols = min(n, self.grid.width - c0)
            margin = np.minimum(self._margins(tile.row, n, self.scene_height)[:rows, None],
                                self._margins(tile.col, n, self.scene_width)[None, :cols])
            held = self.margin[r0 : r0 + rows, c0 : c0 + cols]
            better = margin > held
            if not better.any():
                continue
            held[better] = margin[better]
            grid = tokens[k].reshape(n, n, -1)[:rows, :cols].transpose(2, 0, 1)
            grid = np.where((fraction[k, :rows, :cols] >= self.min_valid)[None], grid, np.nan)
            target = self.values[:, r0 : r0 + rows, c0 : c0 + cols]
            target[:, better] = grid[:, better]

    def record(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` with the grid's terms added (what a field's record says of its pixels)."""
        t = self.grid.transform
        return base | {"width": self.grid.width, "height": self.grid.height, "transform": list(t)[:6],
                       "crs": self.grid.crs, "patch_px": self.grid.patch, "dimension": int(self.values.shape[0])}


# a scene complete: called in the writer's thread with the scene's field (None: no batch of it had tiles)
SceneTask = Callable[[FieldBuilder | None], None]


class FieldWriter:
    """The fields of a dense run, placed and written in one background thread (see the module docstring).

    Use as ``with FieldWriter(new_builder) as writer:``; :meth:`add` each batch's tokens, then :meth:`finish`
    each scene, in the run's order. Leaving the block normally waits for every task and re-raises the
    thread's error; leaving it by an exception (an interrupt) drops the tasks not begun, waits for the one
    under way (its files are written whole or not at all) and lets the exception through.

    Args:
        new_builder: the empty field of a scene, by its number in the run.
        depth: items the queue holds before :meth:`add` waits.
    """

    def __init__(self, new_builder: Callable[[int], FieldBuilder], depth: int = 8) -> None:
        self._new_builder = new_builder
        self._queue: queue.Queue[tuple[int, Any] | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._builders: dict[int, FieldBuilder] = {}
        self._thread = threading.Thread(target=self._run, name="ofa-embed-fields", daemon=True)

    def __enter__(self) -> FieldWriter:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            try:
                self._put(None)
            finally:
                self._join()
            self._raise_failure()
        else:
            self._stop.set()
            self._join()

    def add(self, number: int, tiles: list[TileWindow], patch_valid: np.ndarray, tokens: np.ndarray) -> None:
        """Queue a batch of scene ``number`` for :meth:`FieldBuilder.add` (arrays that nobody changes later)."""
        self._put((number, (tiles, patch_valid, tokens)))

    def finish(self, number: int, task: SceneTask) -> None:
        """Queue ``task`` (write the scene's files), called with the field of scene ``number`` once its batches
        before are placed; the field is dropped after.
        """
        self._put((number, task))

    def _put(self, item: tuple[int, Any] | None) -> None:
        while True:  # never block for good: the thread may have failed
            self._raise_failure()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _join(self) -> None:
        wait_through_interrupts(lambda: self._thread.join(), lambda: not self._thread.is_alive())

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                number, work = item
                if callable(work):
                    work(self._builders.pop(number, None))
                else:
                    if number not in self._builders:
                        self._builders[number] = self._new_builder(number)
                    self._builders[number].add(*work)
        except BaseException as exc:  # re-raised in the consumer
            self._failure = exc
            self._stop.set()
