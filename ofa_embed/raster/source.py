"""Opened raster files: the handle a scene reads each of its files through (:class:`Source`), opening and
checking a file, and GDAL's block cache for a run.

A dataset on the scene grid is read directly; band files on a coarser grid (Sentinel-2 20/60 m bands, for
instance) are resampled bilinearly onto the grid of the finest band, window by window.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from ofa_embed.errors import NoGeoreferenceError, SceneReadError, first_line
from ofa_embed.raster.resample import AlignedGrid, aligned_grid

__all__ = ["DEFAULT_GDAL_CACHE_MB", "Source", "band_source", "check_georeferenced", "gdal_block_cache", "open_dataset"]

# GDAL's block cache defaults to 5% of RAM and fills up on large scenes: that, not the pipeline, would
# set peak memory. Tiles are read in windows aligned to the file's block rows (raster/reader.py), so the
# cache only has to hold the blocks of about one window (13 bands of 512 px COG blocks, or of 1024 px
# JPEG 2000 blocks, fit well inside it).
DEFAULT_GDAL_CACHE_MB = 64
# (GTIFF_DIRECT_IO=YES, which reads uncompressed GeoTIFFs past the block cache, is cheaper but reads a
# truncated file without an error: not used)


@dataclass
class Source:
    """One opened dataset, which of its bands feed the stack, and how it maps onto the scene grid.

    A dataset on the scene grid is read directly. One on a grid an integer factor coarser and
    corner-aligned (Sentinel-2 20/60 m bands) is read at its own resolution and upsampled
    (:mod:`ofa_embed.raster.resample`); on another coarser grid of the same CRS, with a fractional source
    window and GDAL's bilinear ``out_shape`` resampling, which is what a warp would compute at a
    fraction of its cost. Windows reaching past its extent, and datasets in another CRS, go through a
    bilinear ``WarpedVRT`` onto the scene grid.
    """

    path: Path
    dataset: rasterio.io.DatasetReader
    indexes: list[int]
    grid: tuple[CRS, Affine, int, int] | None = None  # scene grid when it differs from the dataset's
    aligned: AlignedGrid | None = None
    nodata: float | None = None  # excluded from resampling
    _vrt: WarpedVRT | None = None
    _layout: tuple[object, ...] = ()  # as opened and checked: what a reopened file is compared with

    def __post_init__(self) -> None:
        if not self._layout:
            self._layout = _layout(self.dataset)

    @functools.cached_property
    def holds_floats(self) -> bool:
        """The file stores floating-point values (which may be NaN or infinite)."""
        return any(np.dtype(d).kind == "f" for d in self.dataset.dtypes)

    def read(self, window: Window, out: np.ndarray) -> None:
        """Read ``window`` of the scene grid into ``out``, ``(len(indexes), h, w)`` float32."""
        if self.grid is None:
            self.dataset.read(self.indexes, window=window, out=out)
            return
        if self.aligned is not None and self._read_aligned(window, out):
            return
        source_window = self._source_window(window)
        if source_window is not None:
            self.dataset.read(self.indexes, window=source_window, out=out, resampling=Resampling.bilinear)
            return
        if self._vrt is None:
            crs, transform, width, height = self.grid
            self._vrt = WarpedVRT(self.dataset, crs=crs, transform=transform, width=width, height=height,
                                  resampling=Resampling.bilinear)
        self._vrt.read(self.indexes, window=window, out=out)

    def _read_aligned(self, window: Window, out: np.ndarray) -> bool:
        """Upsample ``window`` from the native pixels into ``out``; False if it reaches too far past the band."""
        assert self.aligned is not None
        row, col = int(window.row_off), int(window.col_off)
        span = self.aligned.source_window(row, col, int(window.height), int(window.width))
        if span is None:
            return False
        first_row, end_row, first_col, end_col = span
        native = self.dataset.read(
            self.indexes, window=Window.from_slices(
                (max(0, first_row), min(end_row, self.dataset.height)),
                (max(0, first_col), min(end_col, self.dataset.width)),
            ), out_dtype="float32",
        )
        self.aligned.upsample(native, span, row, col, out, self.nodata, self.holds_floats)
        return True

    def _source_window(self, window: Window) -> Window | None:
        """The dataset window covering ``window`` of the scene grid, if a plain resampled read can serve it."""
        assert self.grid is not None
        crs, transform, _, _ = self.grid
        own = self.dataset.transform
        if crs != self.dataset.crs or transform.b or transform.d or own.b or own.d:
            return None
        left, top = transform @ (window.col_off, window.row_off)
        right, bottom = transform @ (window.col_off + window.width, window.row_off + window.height)
        source = from_bounds(left, bottom, right, top, own)
        eps = 1e-6
        inside = (source.col_off >= -eps and source.row_off >= -eps
                  and source.col_off + source.width <= self.dataset.width + eps
                  and source.row_off + source.height <= self.dataset.height + eps)
        return source if inside else None

    def release(self) -> None:
        """Close the file until :meth:`reopen`."""
        if not self.dataset.closed:
            self.close()

    def reopen(self) -> None:
        """Open the file again after :meth:`release`.

        Raises:
            SceneReadError: unreadable now, or no longer the raster that was opened and checked.
        """
        if not self.dataset.closed:
            return
        self.dataset, self._vrt = self._open_unchanged(), None

    def opened_again(self) -> Source:
        """This source on a file handle of its own (for a thread beside the scene's reader).

        Raises:
            SceneReadError: as :meth:`reopen`.
        """
        return dataclasses.replace(self, dataset=self._open_unchanged(), _vrt=None)

    def _open_unchanged(self) -> rasterio.io.DatasetReader:
        dataset = open_dataset(self.path)
        if _layout(dataset) != self._layout:
            dataset.close()
            raise SceneReadError(f"{self.path}: changed since it was opened and checked (size, bands, data type or "
                                 "georeferencing differ); rerun on the file as it is now")
        return dataset

    def close(self) -> None:
        """Close the file (and its warped view, if one was made)."""
        if self._vrt is not None:
            self._vrt.close()
            self._vrt = None
        self.dataset.close()


def _layout(dataset: rasterio.io.DatasetReader) -> tuple[object, ...]:
    """What must not change between opening a file and reading it."""
    return dataset.width, dataset.height, dataset.count, dataset.dtypes, dataset.crs, dataset.transform


@contextmanager
def gdal_block_cache() -> Iterator[None]:
    """GDAL's block cache held at :data:`DEFAULT_GDAL_CACHE_MB` for a run, then restored.

    A size the user chose (the ``GDAL_CACHEMAX`` environment variable, or an enclosing ``rasterio.Env``
    that sets it) is left as it is. The cache is process-wide: nothing is changed at import time.
    """
    chosen = "GDAL_CACHEMAX" in os.environ or (rasterio.env.hasenv() and "GDAL_CACHEMAX" in rasterio.env.getenv())
    if chosen:
        yield
        return
    with rasterio.Env(GDAL_CACHEMAX=DEFAULT_GDAL_CACHE_MB * 2**20):
        yield


def open_dataset(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster file, an archive member included (a GDAL ``/vsizip/`` or ``/vsitar/`` path).

    Raises:
        SceneReadError: not a readable raster.
    """
    text = str(path)
    if text.startswith(("/vsizip/", "/vsitar/")):
        # a Path folds GDAL's "/vsizip//abs/file.zip" to "/vsizip/abs/...", which GDAL reads as relative
        text = text[:8] + "/" + text[8:]
    try:
        with warnings.catch_warnings():
            # a missing geotransform is reported by check_georeferenced as an error of its own
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(text)
    except RasterioError as exc:
        raise SceneReadError(f"{path}: not a readable raster ({first_line(exc)})") from None


def check_georeferenced(path: Path, dataset: rasterio.io.DatasetReader) -> None:
    """Refuse a dataset that cannot be placed on the Earth.

    Raises:
        NoGeoreferenceError: no CRS, or no geotransform.
    """
    if dataset.crs is None or dataset.transform == Affine.identity():
        raise NoGeoreferenceError(
            f"{path}: no georeferencing (missing CRS or geotransform); tiles cannot be placed on the Earth"
        )


def band_source(
    dataset: rasterio.io.DatasetReader, reference: rasterio.io.DatasetReader, nodata: float | None
) -> Source:
    """A band file read onto the grid of ``reference`` (the finest band file)."""
    path = Path(dataset.name)
    if dataset.crs == reference.crs and dataset.transform == reference.transform and dataset.shape == reference.shape:
        return Source(path, dataset, [1])
    grid = (reference.crs, reference.transform, reference.width, reference.height)
    aligned = (
        aligned_grid(dataset.transform, dataset.width, dataset.height, reference.transform)
        if dataset.crs == reference.crs else None
    )
    return Source(path, dataset, [1], grid, aligned, nodata if nodata is not None else dataset.nodata)
