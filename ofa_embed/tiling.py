"""Tiling is pure geometry: pixel windows over a grid, no file access.

Tiles of ``tile_size`` pixels start every ``stride`` pixels along each axis. Along an axis of
``n`` pixels there are ``ceil(max(n - tile_size, 0) / stride) + 1`` tiles, starting at
``0, stride, 2 * stride, ...``; the last one may run past the edge: it is clipped to the scene for
reading and padded back to ``tile_size`` (padding is nodata, flagged ``padded``). No pixel of the
scene is left uncovered and no edge tile is dropped.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from ofa_embed.errors import TilingError

if TYPE_CHECKING:
    from pyproj import Transformer
    from rasterio.crs import CRS

DEFAULT_MIN_VALID = 0.5  # tiles with a smaller fraction of valid (not nodata) pixels are skipped

__all__ = ["TileWindow", "tile_windows", "footprints", "to_lonlat", "validate_tiling"]


@dataclass(frozen=True)
class TileWindow:
    """One tile: the pixel offset of its top-left corner and the part that lies inside the scene.

    Attributes:
        row, col: pixel offsets of the tile's top-left corner in the scene.
        height, width: extent inside the scene (< tile_size for edge tiles).
        tile_size: full tile edge in pixels.
    """

    row: int
    col: int
    height: int
    width: int
    tile_size: int

    @property
    def padded(self) -> bool:
        """Whether the tile runs past the scene edge and is padded back to ``tile_size``."""
        return self.height < self.tile_size or self.width < self.tile_size


def _starts(length: int, tile_size: int, stride: int) -> list[int]:
    count = math.ceil(max(length - tile_size, 0) / stride) + 1
    return [i * stride for i in range(count)]


def validate_tiling(tile_size: int, stride: int, patch_size: int, *, width: int, height: int, name: str,
                    whole: bool = False) -> None:
    """Raise :class:`TilingError` for parameters or a scene that cannot be tiled (``whole``: a chip that is
    one padded tile, which may be smaller than ``tile_size`` but not than one patch).
    """
    if tile_size <= 0 or tile_size % patch_size:
        raise TilingError(f"tile size {tile_size} must be a positive multiple of the model patch size {patch_size}")
    if not 0 < stride <= tile_size:
        raise TilingError(f"stride {stride} must be between 1 and the tile size {tile_size}")
    if whole:
        if min(width, height) < patch_size:
            raise TilingError(f"{name}: raster is {width} x {height} px, smaller than one {patch_size} px patch of "
                              "the model")
        return
    if width < tile_size or height < tile_size:
        raise TilingError(
            f"{name}: scene is {width} x {height} px, smaller than one {tile_size} px tile; use a smaller --tile-size"
        )


def tile_windows(width: int, height: int, tile_size: int, stride: int) -> list[TileWindow]:
    """All tiles of a ``width`` x ``height`` grid, row-major."""
    return [
        TileWindow(r, c, min(tile_size, height - r), min(tile_size, width - c), tile_size)
        for r in _starts(height, tile_size, stride)
        for c in _starts(width, tile_size, stride)
    ]


@functools.lru_cache(maxsize=32)
def _to_lonlat(crs: CRS) -> Transformer:
    """The transformer to longitude/latitude, built once per CRS (a chip collection has thousands of chips
    in a few CRSs, and building one is not free).
    """
    from pyproj import Transformer  # the CLI imports this module for its defaults: keep pyproj off its start-up

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def to_lonlat(xs: np.ndarray, ys: np.ndarray, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes (EPSG:4326) of points ``xs, ys`` in ``crs``, any shape."""
    lon, lat = _to_lonlat(crs).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)


def footprints(tiles: list[TileWindow], transform: Affine, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Corner coordinates of each tile's in-scene extent.

    Returns:
        ``(native, lonlat)``, each ``(N, 4, 2)`` float64: corners (top-left, top-right, bottom-right,
        bottom-left) in the scene CRS and in EPSG:4326 longitude/latitude.
    """
    rows = np.array([[t.row, t.row, t.row + t.height, t.row + t.height] for t in tiles], dtype=np.float64)
    cols = np.array([[t.col, t.col + t.width, t.col + t.width, t.col] for t in tiles], dtype=np.float64)
    xs = transform.c + cols * transform.a + rows * transform.b
    ys = transform.f + cols * transform.d + rows * transform.e
    lon, lat = to_lonlat(xs, ys, crs)
    return np.stack([xs, ys], axis=-1), np.stack([lon, lat], axis=-1)
