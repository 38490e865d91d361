"""Pixel products (AEF, TESSERA) pooled to tiles: windows on the product's own grid, means of valid pixels, footprints.

Tiles are ``tile`` x ``tile`` pixels of the product, anchored at its pixel (0, 0) so that the same tile of the same
file always gets the same id whatever bbox selected it; the last row and column of tiles may be smaller (their
``width``/``height`` say so). A tile's vector is the mean of its valid pixels' de-quantised vectors (AEF then scales
it back to unit length, as its own overviews are made); tiles with fewer valid pixels than ``min_valid`` are
skipped.

A pixel product file is read as :class:`DensePart` objects (one per georeferenced raster of a year: an AEF COG, a
TESSERA tile, a UTM zone's year in TESSERA's Zarr store): found and checked first, read strip by strip after, so
that bad input stops an import before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pyproj import CRS, Transformer

from ofa_embed.interop.product import Product, Rows, Selection

__all__ = ["DensePart", "Grid", "ReadStrip", "pool_strip", "pooled_rows", "tile_range"]

# ``read(r0, r1, c0, c1)``: ``(h, w, D)`` float32 de-quantised values (0 where invalid) and ``(h, w)`` validity
ReadStrip = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]


class Grid:
    """A product file's pixel grid: size, affine terms ``(a, b, c, d, e, f)`` and CRS (any, north-up or bottom-up)."""

    def __init__(self, width: int, height: int, transform: tuple[float, ...], crs: CRS) -> None:
        self.width, self.height = width, height
        self.a, self.b, self.c, self.d, self.e, self.f = transform[:6]
        self.crs = crs
        self._to_lonlat = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
        self._from_lonlat = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)

    def xy(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native coordinates of pixel corners ``(col, row)``."""
        return self.a * cols + self.b * rows + self.c, self.d * cols + self.e * rows + self.f

    def corners(self, rows: np.ndarray, cols: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """``(N, 4, 2)`` lon/lat corners of pixel windows, clockwise from the north-west one (a bottom-up grid,
        positive ``e``, has its row 0 in the south, as the AEF copy on Source Cooperative does).
        """
        r0, r1, c0, c1 = rows, rows + heights, cols, cols + widths
        order = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)] if self.a * self.e - self.b * self.d < 0 else \
            [(c0, r1), (c1, r1), (c1, r0), (c0, r0)]
        out = np.empty((len(rows), 4, 2))
        for k, (c, r) in enumerate(order):
            x, y = self.xy(np.asarray(c, np.float64), np.asarray(r, np.float64))
            out[:, k, 0], out[:, k, 1] = self._to_lonlat.transform(x, y)
        return out

    def window_of(self, selection: Selection) -> tuple[int, int, int, int] | None:
        """Pixel rows and columns ``(r0, r1, c0, c1)`` meeting the selection's bbox (the whole grid without one);
        None when the grid does not meet it.
        """
        if selection.bbox is None:
            return 0, self.height, 0, self.width
        west, south, east, north = selection.bbox
        spans = [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]
        best: tuple[int, int, int, int] | None = None
        for lo, hi in spans:
            lon = np.concatenate([np.linspace(lo, hi, 21)] * 2 + [np.full(21, lo), np.full(21, hi)])
            lat = np.concatenate([np.full(21, south), np.full(21, north)] + [np.linspace(south, north, 21)] * 2)
            x, y = self._from_lonlat.transform(lon, lat)
            det = self.a * self.e - self.b * self.d
            col = (self.e * (x - self.c) - self.b * (y - self.f)) / det
            row = (-self.d * (x - self.c) + self.a * (y - self.f)) / det
            finite = np.isfinite(col) & np.isfinite(row)
            if not finite.any():
                continue
            r0, r1 = max(0, int(np.floor(row[finite].min()))), min(self.height, int(np.ceil(row[finite].max())))
            c0, c1 = max(0, int(np.floor(col[finite].min()))), min(self.width, int(np.ceil(col[finite].max())))
            if r0 < r1 and c0 < c1:
                best = (r0, r1, c0, c1) if best is None else (min(best[0], r0), max(best[1], r1), min(best[2], c0),
                                                               max(best[3], c1))
        return best


def tile_range(window: tuple[int, int, int, int], tile: int, height: int, width: int) -> tuple[int, int, int, int]:
    """``window`` widened to whole tiles of the grid anchored at pixel (0, 0)."""
    r0, r1, c0, c1 = window
    return (r0 // tile * tile, min(height, -(-r1 // tile) * tile), c0 // tile * tile, min(width, -(-c1 // tile) * tile))


def pool_strip(values: np.ndarray, valid: np.ndarray, row0: int, col0: int, tile: int, min_valid: float,
               unit_length: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pool one strip of tiles.

    Args:
        values: ``(h, w, D)`` float32 de-quantised vectors of a strip ``h <= tile`` rows high starting at grid row
            ``row0`` and column ``col0`` (a multiple of ``tile``).
        valid: ``(h, w)`` bool.
        row0: the strip's first row in the grid.
        col0: the strip's first column in the grid.
        tile: tile side in pixels.
        min_valid: least valid fraction of a kept tile.
        unit_length: scale each tile's mean to length 1.

    Returns:
        ``rows, cols, heights, widths, valid_fraction, embeddings`` of the kept tiles.
    """
    h, w, dim = values.shape
    n = -(-w // tile)
    pad = n * tile - w
    weights = valid.astype(np.float32)
    summed = np.einsum("hw,hwd->wd", weights, np.where(valid[..., None], values, 0.0).astype(np.float32))
    counts = weights.sum(axis=0)
    if pad:
        summed = np.concatenate([summed, np.zeros((pad, dim), np.float32)])
        counts = np.concatenate([counts, np.zeros(pad, np.float32)])
    summed, counts = summed.reshape(n, tile, dim).sum(axis=1), counts.reshape(n, tile).sum(axis=1)
    widths = np.minimum(tile, w - np.arange(n) * tile)
    fraction = counts / (widths * h)
    keep = (counts > 0) & (fraction >= min_valid)
    means = summed[keep] / counts[keep, None]
    if unit_length:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    k = int(keep.sum())
    return (np.full(k, row0, np.int32), (col0 + np.flatnonzero(keep) * tile).astype(np.int32), np.full(k, h, np.int32),
            widths[keep].astype(np.int32), fraction[keep].astype(np.float32), means.astype(np.float32))


def pooled_rows(grid: Grid, window: tuple[int, int, int, int], tile: int, min_valid: float, unit_length: bool,
                read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]], name: str,
                acquired: datetime | None) -> Iterator[Rows]:
    """Rows of every tile row of ``window`` (whole tiles), reading one strip at a time with ``read(r0, r1, c0, c1)``
    (returning ``(h, w, D)`` float32 values and ``(h, w)`` validity).
    """
    r0, r1, c0, c1 = tile_range(window, tile, grid.height, grid.width)
    for top in range(r0, r1, tile):
        bottom = min(top + tile, grid.height)
        values, valid = read(top, bottom, c0, c1)
        rows, cols, heights, widths, fraction, vectors = pool_strip(values, valid, top, c0, tile, min_valid, unit_length)
        if not len(rows):
            continue
        yield Rows([name] * len(rows), rows, cols, heights, widths, fraction, grid.corners(rows, cols, heights, widths),
                   [acquired] * len(rows), vectors)


@dataclass(frozen=True)
class DensePart:
    """One georeferenced raster of a pixel product meeting a selection, not read yet.

    Attributes:
        product: the product it belongs to.
        name: its scene name: the rows' ``scene``, the store file's stem and the field's name.
        source: what is read (a file, or a store's group and year), as recorded in the store.
        grid: the raster's pixel grid.
        crs: the grid's CRS as a string (the rows' ``crs`` column).
        window: the pixel rows and columns ``(r0, r1, c0, c1)`` meeting the selection.
        acquired: the start of the period it stands for.
        unit_length: tiles' means are rescaled to unit length (AEF's own rule).
        open: a context manager giving the :data:`ReadStrip` of the raster while it is open.
    """

    product: Product
    name: str
    source: str
    grid: Grid
    crs: str
    window: tuple[int, int, int, int]
    acquired: datetime
    unit_length: bool
    open: Callable[[], AbstractContextManager[ReadStrip]]
