"""Opened raster files: the handle a scene reads each of its files through (:class:`Source`), opening and
checking a file, and GDAL's block cache for a run.

A dataset on the scene grid is read directly; band files on a coarser grid (Sentinel-2 20/60 m bands, for
instance) are resampled bilinearly onto the grid of the finest band, window by window.

A file's validity mask, where it has one (an alpha band, a GDAL mask: internal or a ``.msk`` sidecar), is
found once when the file is opened (:attr:`Source.mask`) and read for the same windows as its bands
(:meth:`Source.read_mask`); an alpha band is a mask, never a band (:func:`image_bands`). A file without a
mask reads nothing more.
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
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from ofa_embed.errors import NoGeoreferenceError, SceneReadError, first_line
from ofa_embed.raster.resample import AlignedGrid, aligned_grid

__all__ = ["ALPHA_SHARE", "DEFAULT_GDAL_CACHE_MB", "Source", "band_source", "check_georeferenced", "gdal_block_cache",
           "image_bands", "open_dataset", "sample_windows"]

# GDAL's block cache defaults to 5% of RAM and fills up on large scenes: that, not the pipeline, would
# set peak memory. Tiles are read in windows aligned to the file's block rows (raster/reader.py), so the
# cache only has to hold the blocks of about one window (13 bands of 512 px COG blocks, or of 1024 px
# JPEG 2000 blocks, fit well inside it).
DEFAULT_GDAL_CACHE_MB = 64
# (GTIFF_DIRECT_IO=YES, which reads uncompressed GeoTIFFs past the block cache, is cheaper but reads a
# truncated file without an error: not used)

# A band tagged alpha is a mask when at least this share of its sampled values are 0 (transparent) or opaque
# (1, 255, or its data type's largest value); image values are spread (see image_bands)
ALPHA_SHARE = 0.99
# edge of the 3 x 3 windows that sample a band tagged alpha
_ALPHA_SAMPLE_EDGE = 128


@dataclass
class Source:
    """One opened dataset, which of its bands feed the stack, and how it maps onto the scene grid.

    A dataset on the scene grid is read directly. One on a grid an integer factor coarser and
    corner-aligned (Sentinel-2 20/60 m bands) is read at its own resolution and upsampled
    (:mod:`ofa_embed.raster.resample`); on another coarser grid of the same CRS, with a fractional source
    window and GDAL's bilinear ``out_shape`` resampling, which is what a warp would compute at a
    fraction of its cost. Windows reaching past its extent, and datasets in another CRS, go through a
    bilinear ``WarpedVRT`` onto the scene grid.

    Its validity mask (:attr:`mask`) is decided when it is made, from the file's colour interpretations and
    GDAL mask flags: the file's alpha band (read as it is: 0 invalid), else a GDAL mask shared by its bands
    (internal or a ``.msk`` sidecar) or one per band; a nodata mask is not one (the scene compares values
    with its nodata itself), nor is "all valid". On another grid the mask's pixel under each scene pixel
    centre is taken (nearest), and scene pixels past the file's extent are invalid.
    """

    path: Path
    dataset: rasterio.io.DatasetReader
    indexes: list[int]
    grid: tuple[CRS, Affine, int, int] | None = None  # scene grid when it differs from the dataset's
    aligned: AlignedGrid | None = None
    nodata: float | None = None  # excluded from resampling
    _vrt: WarpedVRT | None = None
    _layout: tuple[object, ...] = ()  # as opened and checked: what a reopened file is compared with
    # what masks the file's pixels, e.g. "alpha band 4", "internal mask", ".msk sidecar"; None: no mask
    mask: str | None = dataclasses.field(default=None, init=False)
    _mask_read: tuple[str, int] | None = dataclasses.field(default=None, init=False, repr=False)
    _mask_vrt: WarpedVRT | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self._layout:
            self._layout = _layout(self.dataset)
        found = _find_mask(self.dataset, self.indexes)
        if found is not None:
            self.mask, how, band = found
            self._mask_read = (how, band)

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
        covering = self._covering_window(window)
        return covering[0] if covering is not None and covering[1] else None

    def _covering_window(self, window: Window) -> tuple[Window, bool] | None:
        """The (fractional) dataset window covering ``window`` of the scene grid and whether it lies inside the
        dataset; None in another CRS or a rotated grid.
        """
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
        return source, inside

    def read_mask(self, window: Window, valid: np.ndarray) -> None:
        """Clear ``valid``, ``(h, w)`` bool for ``window`` of the scene grid, where the file's mask marks its pixels
        invalid; nothing is read for a file without a mask.
        """
        if self._mask_read is None:
            return
        if self.grid is None:
            mask = self.native_mask(window)
        elif (covering := self._covering_window(window)) is not None:
            source_window, inside = covering
            mask = self.native_mask(source_window, valid.shape, boundless=not inside)
        else:
            if self._mask_vrt is None:
                crs, transform, width, height = self.grid
                # the warper carries the file's mask (or alpha) over to the added alpha band
                self._mask_vrt = WarpedVRT(self.dataset, crs=crs, transform=transform, width=width, height=height,
                                           resampling=Resampling.nearest, add_alpha=True)
            mask = self._mask_vrt.read_masks(1, window=window)
        np.logical_and(valid, mask, out=valid)

    def native_mask(self, window: Window, out_shape: tuple[int, ...] | None = None,
                    boundless: bool = False) -> np.ndarray:
        """The file's mask over ``window`` of its own pixels, ``(h, w)``, 0 where invalid (all valid for a file
        without a mask); ``out_shape``: resampled to that shape (nearest), ``boundless``: past the file, 0.
        """
        if self._mask_read is None:
            shape = out_shape or (int(round(window.height)), int(round(window.width)))
            return np.ones(shape, np.uint8)
        how, band = self._mask_read
        args: dict[str, object] = {"window": window, "out_shape": out_shape, "boundless": boundless,
                                   "resampling": Resampling.nearest}
        if how == "alpha":
            return self.dataset.read(band, **args)
        if how == "dataset":
            return self.dataset.read_masks(band, **args)
        masks = self.dataset.read_masks(self.indexes, **args)
        return masks.min(axis=0)

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
        self.dataset, self._vrt, self._mask_vrt = self._open_unchanged(), None, None

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
        for vrt in (self._vrt, self._mask_vrt):
            if vrt is not None:
                vrt.close()
        self._vrt = self._mask_vrt = None
        self.dataset.close()


def _layout(dataset: rasterio.io.DatasetReader) -> tuple[object, ...]:
    """What must not change between opening a file and reading it (its mask included)."""
    return (dataset.width, dataset.height, dataset.count, dataset.dtypes, dataset.crs, dataset.transform,
            dataset.colorinterp, dataset.mask_flag_enums)


def image_bands(dataset: rasterio.io.DatasetReader) -> tuple[list[int], str | None]:
    """The dataset's bands that hold an image (1-based), and the line to record when a band tagged alpha is one.

    A band whose colour interpretation is ``alpha`` is the file's validity mask (:attr:`Source.mask`), not a band,
    when its values are a mask's: at least :data:`ALPHA_SHARE` of a sample of 3 x 3 windows 0 or opaque (1, 255,
    or the data type's largest value; a file all transparent is a mask too). GDAL tags the fourth band of a
    4-band 8-bit GeoTIFF written with its defaults ``alpha``, the near-infrared band of an RGB-NIR file included:
    a band so tagged whose values are spread is read as a band, and the line says so (it overrules the tag).
    """
    everything = list(range(1, dataset.count + 1))
    alpha = [i for i, meaning in enumerate(dataset.colorinterp, start=1) if meaning == ColorInterp.alpha]
    if not alpha or len(alpha) == dataset.count:
        return everything, None
    band = alpha[0]
    values = np.concatenate([dataset.read(band, window=w).reshape(-1)
                             for w in sample_windows(dataset.height, dataset.width, _ALPHA_SAMPLE_EDGE)])
    kind = np.dtype(dataset.dtypes[band - 1])
    opaque = [1, 255] + ([np.iinfo(kind).max] if kind.kind in "iu" else [])
    if not values.size or np.isin(values, [0, *opaque]).mean() >= ALPHA_SHARE:
        return [i for i in everything if i != band], None
    kinds = len(np.unique(values))
    return everything, (f"{dataset.name}: band {band} is tagged alpha but holds image values ({kinds} distinct in a "
                        "sample, not transparent and opaque), as GDAL tags the 4th band of a 4-band 8-bit file "
                        "written with its defaults: read as a band; name the bands with --bands if it is not one")


def sample_windows(height: int, width: int, edge: int) -> Iterator[Window]:
    """The 3 x 3 windows of at most ``edge`` px spread evenly over a ``height`` x ``width`` px grid, corners
    included (fewer where the grid is too small for 3 apart).
    """
    h, w = min(edge, height), min(edge, width)
    for row in sorted(set(np.linspace(0, height - h, 3).astype(int))):
        for col in sorted(set(np.linspace(0, width - w, 3).astype(int))):
            yield Window(col, row, w, h)


def _find_mask(dataset: rasterio.io.DatasetReader, indexes: list[int]) -> tuple[str, str, int] | None:
    """What masks the pixels of the bands ``indexes``: ``(what, how to read, band)``, how being ``alpha`` (read
    that band), ``dataset`` (a GDAL mask shared by the bands: read band's mask) or ``bands`` (a mask per band);
    None when only nodata values (compared by the scene itself) or nothing does.
    """
    alpha = next((i for i, meaning in enumerate(dataset.colorinterp, start=1) if meaning == ColorInterp.alpha), None)
    if alpha is not None:
        # one fed as a band (image values, image_bands) masks nothing, whatever GDAL's mask flags say
        return None if alpha in indexes else (f"alpha band {alpha}", "alpha", alpha)
    flags = [dataset.mask_flag_enums[i - 1] for i in indexes]
    if any(MaskFlags.per_dataset in f for f in flags):
        if any(MaskFlags.alpha in f for f in flags):
            what = "alpha mask"
        elif any(str(name).lower().endswith(".msk") for name in dataset.files):
            what = ".msk sidecar"
        else:
            what = "internal mask"
        return what, "dataset", indexes[0]
    if any(not f for f in flags):  # no flag: a mask band of the band's own
        return "per-band masks", "bands", indexes[0]
    return None


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
