"""Opening scenes: one multi-band raster, or a folder/list of single-band files, as one band stack.

A :class:`Scene` knows its grid (CRS, transform, size), its modality and which canonical band each of
its source bands is, and reads any pixel window as normalised float32 in the model's band order.
Reads are windowed, so memory depends on the window, never on the scene size. Band files on a coarser
grid (Sentinel-2 20/60 m bands, for instance) are resampled bilinearly onto the grid of the finest band,
window by window (see :class:`_Source`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import tarfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from ofa_embed.errors import ModalityError, NoGeoreferenceError, SceneNotFoundError, SceneReadError, first_line
from ofa_embed.raster.resample import AlignedGrid, aligned_grid
from ofa_embed.sensors import (
    CUSTOM,
    Modality,
    band_name_from_filename,
    custom_modality,
    detect_modality,
    generic_descriptions,
    get_modality,
)
from ofa_embed.threads import wait_through_interrupts

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_GDAL_CACHE_MB", "KEPT_OPEN_FILES", "RASTER_SUFFIXES", "SAR_SCALES", "Scene", "ValueChecks",
           "check_value_range", "gdal_block_cache", "group_band_files", "open_like", "open_scene", "open_scenes",
           "sample_statistics"]

# GDAL's block cache defaults to 5% of RAM and fills up on large scenes: that, not the pipeline, would
# set peak memory. Tiles are read in windows aligned to the file's block rows (raster/reader.py), so the
# cache only has to hold the blocks of about one window: 13 bands of 512 px blocks of a COG take 14 MB,
# of 1024 px JPEG 2000 blocks 26-52 MB.
DEFAULT_GDAL_CACHE_MB = 64
# (GTIFF_DIRECT_IO=YES, which reads uncompressed GeoTIFFs past the block cache, made a scene's reading 7 % cheaper
# but reads a truncated file without an error: not used)
# scenes of a run stay open once opened and checked, up to this many files (a Sentinel-2 scene is 13; 1024 open
# files is a common limit); the scenes past it are released and reopened when read (13 files: 18 ms a scene)
KEPT_OPEN_FILES = 128
# Edge of the 9 windows Scene.sample_raw and Scene.value_sample read (in scene pixels; value_sample reads a
# coarser band's own pixels under them). Where they lie sets how well the sample stands for the
# scene; their size hardly does: 147k pixels give percentiles and band means to well under the
# differences between regions of a scene. Read time is mostly per window and band file (a striped file
# reads whole rows): 20 ms for a 13-file Sentinel-2 scene at 128 px, 47 ms at 256 px.
SAMPLE_WINDOW = 128
# the value check's percentiles are taken of at most about this many of the sampled values
VALUE_CHECK_VALUES = 1 << 18

# SAR file values -> dB: the factor on log10 (dB files are read as they are)
SAR_SCALES = {"db": 1.0, "power": 10.0, "amplitude": 20.0}
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
# Sentinel-2 L1C TCI/preview images and Landsat quality bands sit beside the band files: not bands.
_NOT_BANDS = re.compile(r"(preview|tci|_bqa|_qa_|_qa$|_pvi|_scl|_aot|_wvp)", re.IGNORECASE)
_DATE_PATTERNS = (
    (re.compile(r"(20\d{2})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})"), True),  # Sentinel: 20170613T101031
    (re.compile(r"_(\d{3})(\d{3})_((?:19|20)\d{6})_"), False),  # Landsat: _PPPRRR_YYYYMMDD_
)
_SENSOR_TAGS = {"SPACECRAFT_NAME", "SPACECRAFT_ID", "PRODUCT_TYPE", "SENSOR", "SENSOR_ID", "PLATFORM", "MISSION"}
_DATE_TAGS = ("DATATAKE_1_DATATAKE_SENSING_START", "SENSING_TIME", "DATE_ACQUIRED", "ACQUISITION_DATE",
              "TIFFTAG_DATETIME", "datetime")


@dataclass
class _Source:
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

    def opened_again(self) -> _Source:
        """This source on a file handle of its own (for a thread beside the scene's reader).

        Raises:
            SceneReadError: as :meth:`reopen`.
        """
        return dataclasses.replace(self, dataset=self._open_unchanged(), _vrt=None)

    def _open_unchanged(self) -> rasterio.io.DatasetReader:
        dataset = _open_dataset(self.path)
        if _layout(dataset) != self._layout:
            dataset.close()
            raise SceneReadError(f"{self.path}: changed since it was opened and checked (size, bands, data type or "
                                 "georeferencing differ); rerun on the file as it is now")
        return dataset

    def close(self) -> None:
        if self._vrt is not None:
            self._vrt.close()
            self._vrt = None
        self.dataset.close()


def _layout(dataset: rasterio.io.DatasetReader) -> tuple[object, ...]:
    """What must not change between opening a file and reading it."""
    return dataset.width, dataset.height, dataset.count, dataset.dtypes, dataset.crs, dataset.transform


@dataclass
class Scene:
    """An opened scene. Use as a context manager, or call :meth:`close`. Between being checked and being read
    in a run of many scenes it may be released (:meth:`release`: files closed) and reopened (:meth:`reading`).

    Attributes:
        path: the file or folder given.
        name: scene name used in ids and store file names (file stem or folder name).
        modality: the registered modality the bands are mapped onto.
        crs, transform, width, height: the pixel grid (of the finest band).
        band_positions: canonical band index of each source band, in source order.
        source_labels: what each source band was called (description, file token or ``--bands``).
        nodata: the nodata value, or None.
        acquired: acquisition time (UTC) from metadata or file name, or None.
        spectral_matrix: hyperspectral only, ``(canonical_bands, source_bands)`` linear resampling.
        sar_scale: what SAR file values are: ``db`` (as the modality expects), or linear ``power`` /
            ``amplitude``, converted to dB on reading (``10 log10`` / ``20 log10``; values <= 0 invalid).
        input_values: what the value-range check of :func:`open_scene` found (dtype, percentiles of the
            file values, the SAR scale, any warning), recorded in the store.
    """

    path: Path
    name: str
    modality: Modality
    crs: CRS
    transform: Affine
    width: int
    height: int
    band_positions: list[int]
    source_labels: list[str]
    nodata: float | None
    acquired: datetime | None
    spectral_matrix: np.ndarray | None = None
    _sources: list[_Source] = field(default_factory=list, repr=False)
    sar_scale: str = "db"
    input_values: dict[str, object] = field(default_factory=dict)
    _sample: np.ndarray | None = field(default=None, repr=False)
    _moments: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def missing_bands(self) -> tuple[str, ...]:
        """Canonical bands the scene does not provide (filled with the band mean)."""
        if self.spectral_matrix is not None:
            present = self.spectral_matrix.sum(axis=1) > 0
        else:
            present = np.zeros(self.modality.num_bands, bool)
            present[self.band_positions] = True
        return tuple(b.name for b, ok in zip(self.modality.bands, present, strict=True) if not ok)

    def read(self, window: Window, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read a window (inside the scene) in the model's band order, normalised.

        Args:
            window: the pixel window.
            out: ``(C, h, w)`` float32 array to read into, of any strides (a view into a caller's larger
                buffer: reused memory, or tiles laid out for the model); data is then ``out``.

        Returns:
            ``(data, valid)``: data ``(C, h, w)`` float32, C = modality bands, normalised with the
            modality's scale/offset and mean/std, missing bands and invalid pixels set to 0 (the mean);
            valid ``(h, w)`` bool, False where any source band is nodata or not finite.

        Raises:
            SceneReadError: the file cannot be read (truncated, corrupt).
        """
        modality = self.modality
        shape = (modality.num_bands, int(window.height), int(window.width))
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out is {out.dtype} {out.shape}; window {window} needs float32 {shape}")
        if self.spectral_matrix is not None:
            raw = self.read_raw(window)
            valid = self._valid(raw, raw.shape[1:])
            physical = raw * np.float32(modality.scale) + np.float32(modality.offset)
            out[...] = np.tensordot(self.spectral_matrix.astype(np.float32), physical, axes=1)
            out -= modality.mean[:, None, None]
            out /= modality.std[:, None, None]
            out[self.spectral_matrix.sum(axis=1) == 0] = 0.0
        else:
            # read straight into the model's band order, normalised in place: no copy of the window
            if self.missing_bands:
                out.fill(0.0)
            valid = np.ones(shape[1:], bool)
            check_finite = self._holds_floats()
            gain, bias = modality.normalising_affine()
            factor = np.float32(SAR_SCALES[self.sar_scale])

            import torch  # as the resampling does: only once a pixel is read

            biases = torch.from_numpy(bias)

            def finish(rows: Sequence[int]) -> None:
                # each source's bands as soon as they are read, while still in cache: a 13-band window
                # (13 MB) is past a core's 2 MB L2 by the time the last band is in
                for p in rows:
                    band = out[p]
                    self._mark_invalid(band, valid, check_finite)
                    if self.sar_scale != "db":
                        positive = band > 0
                        np.logical_and(valid, positive, out=valid)
                        np.log10(band, out=band, where=positive)
                        band *= factor
                    # bias + gain * band in one pass (numpy's in-place multiply, then add, took twice as long)
                    values = torch.from_numpy(band)
                    torch.add(biases[p], values, alpha=float(gain[p]), out=values)

            self._read_into(window, out, self.band_positions, finish)
        if not valid.all():
            out[:, ~valid] = 0.0
        return out, valid

    def _valid(self, bands: Iterable[np.ndarray], shape: tuple[int, ...], check_finite: bool | None = None) -> np.ndarray:
        """``shape`` bool: no band is nodata or (``check_finite``, default: the scene has float files) not finite."""
        valid = np.ones(shape, bool)
        check_finite = self._holds_floats() if check_finite is None else check_finite
        for band in bands:
            self._mark_invalid(band, valid, check_finite)
        return valid

    def _holds_floats(self) -> bool:
        """Some source file stores floating-point values (which may be NaN or infinite)."""
        return any(source.holds_floats for source in self._sources)

    def _mark_invalid(self, band: np.ndarray, valid: np.ndarray, check_finite: bool) -> None:
        """Clear ``valid`` where ``band`` (file values) is nodata or (``check_finite``: read from float files)
        not finite.
        """
        if check_finite:
            valid &= np.isfinite(band)
        if self.nodata is not None:
            valid &= band != self.nodata

    def read_raw(self, window: Window) -> np.ndarray:
        """Raw file values of a window, ``(source_bands, h, w)`` float32, in source band order."""
        raw = np.empty((len(self.band_positions), int(window.height), int(window.width)), np.float32)
        self._read_into(window, raw, list(range(len(raw))))
        return raw

    def _read_into(self, window: Window, out: np.ndarray, rows: Sequence[int],
                   then: Callable[[Sequence[int]], None] | None = None) -> None:
        """Read every source band into ``out[rows[i]]``, ``i`` in source band order; ``then(rows of a source)``
        after each source is read.
        """
        first = 0
        for source in self._sources:
            targets = rows[first : first + len(source.indexes)]
            first += len(source.indexes)
            consecutive = list(targets) == list(range(targets[0], targets[0] + len(targets)))
            part = out[targets[0] : targets[0] + len(targets)] if consecutive else np.empty(
                (len(targets), *out.shape[1:]), np.float32
            )
            try:
                source.read(window, part)
            except RasterioError as exc:
                raise SceneReadError(f"{source.path}: read failed ({first_line(exc)})") from None
            if not consecutive:
                out[list(targets)] = part
            if then is not None:
                then(targets)

    def sample_raw(self) -> np.ndarray:
        """Raw values of the valid pixels of 3 x 3 windows of at most :data:`SAMPLE_WINDOW` px spread evenly
        over the scene, ``(source_bands, n)`` float32, every band on the scene grid: a cheap sample for the
        statistics of a sensor given by wavelengths, whatever the scene's size. Read once per scene.
        """
        if self._sample is None:
            parts = []
            for window in _sample_windows(self.height, self.width, SAMPLE_WINDOW):
                raw = self.read_raw(window)
                valid = self._valid(raw, raw.shape[1:])
                parts.append(raw.reshape(len(raw), -1) if valid.all() else raw[:, valid])
            self._sample = np.concatenate(parts, axis=1)
        return self._sample

    def value_sample(self) -> np.ndarray:
        """File values of every band at its own resolution, none resampled: 3 x 3 windows spread evenly over each
        file, each about :data:`SAMPLE_WINDOW` scene px on a side (21 px of a 60 m band of a 10 m scene), pixels
        where a band of the file is nodata or not finite left out; flat float32. What the value check judges:
        the scene-grid sample of :meth:`sample_raw` upsamples the coarse bands, which made the check of a
        Sentinel-2 scene cost 0.077 core-s instead of 0.027 and gives it no value to judge by that the file
        does not hold.

        Raises:
            SceneReadError: a file cannot be read.
        """
        parts = []
        for source in self._sources:
            dataset = source.dataset
            edge = max(1, SAMPLE_WINDOW // source.aligned.factor) if source.aligned is not None else SAMPLE_WINDOW
            for window in _sample_windows(dataset.height, dataset.width, edge):
                try:
                    values = dataset.read(source.indexes, window=window, out_dtype="float32")
                except RasterioError as exc:
                    raise SceneReadError(f"{source.path}: read failed ({first_line(exc)})") from None
                valid = self._valid(values, values.shape[1:], source.holds_floats)
                parts.append(values.reshape(-1) if valid.all() else values[:, valid].reshape(-1))
        return np.concatenate(parts)

    def sample_moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(n, mean, m2)`` of :meth:`sample_raw` per source band, float64 (m2: the sum of squared deviations
        from the mean): what pooled statistics need, kept after :meth:`release` drops the sample itself.
        """
        if self._moments is None:
            sample = self.sample_raw().astype(np.float64)
            mean = sample.mean(axis=1) if sample.shape[1] else np.zeros(len(sample))
            self._moments = (sample.shape[1], mean, np.square(sample - mean[:, None]).sum(axis=1))
        return self._moments

    @property
    def block_height(self) -> int:
        """Rows of one compressed block of the finest source (1 for striped files), in scene pixels."""
        first = self._sources[0]
        return first.dataset.block_shapes[0][0] if first.grid is None else 1

    def footprint_bounds(self) -> tuple[float, float, float, float]:
        """Scene bounds ``(left, bottom, right, top)`` in the scene CRS."""
        return _bounds(self.transform, self.width, self.height)

    def release(self) -> None:
        """Close the scene's files and drop its value sample until :meth:`reopen`: a run of many scenes, all
        opened and checked before the first is read, holds a bounded number of them open (:func:`open_scenes`).
        """
        for source in self._sources:
            source.release()
        self._sample = None

    def reopen(self) -> None:
        """Open the files of a released scene again (no-op for an open one).

        Raises:
            SceneReadError: a file is unreadable now, or changed since the scene was opened.
        """
        try:
            for source in self._sources:
                source.reopen()
        except BaseException:
            self.release()
            raise

    @contextmanager
    def reading(self) -> Iterator[Scene]:
        """The scene's files open for the block (reopened if released), released after it, on every path."""
        self.reopen()
        try:
            yield self
        finally:
            self.release()

    @contextmanager
    def own_handles(self) -> Iterator[Scene]:
        """This scene for the block, read through file handles of its own, closed after it: a thread beside the
        scene's reader can read it while the reader holds the scene's own.

        Raises:
            SceneReadError: as :meth:`reopen`.
        """
        twin = dataclasses.replace(self, _sources=[], _sample=None, _moments=None)
        try:
            for source in self._sources:
                twin._sources.append(source.opened_again())
            yield twin
        finally:
            twin.close()

    def close(self) -> None:
        """Close the scene's source files; the scene cannot be read afterwards."""
        for source in self._sources:
            source.close()
        self._sources.clear()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _sample_windows(height: int, width: int, edge: int) -> Iterator[Window]:
    """The 3 x 3 windows of at most ``edge`` px spread evenly over a ``height`` x ``width`` px grid, corners
    included (fewer where the grid is too small for 3 apart).
    """
    h, w = min(edge, height), min(edge, width)
    for row in sorted(set(np.linspace(0, height - h, 3).astype(int))):
        for col in sorted(set(np.linspace(0, width - w, 3).astype(int))):
            yield Window(col, row, w, h)


def _bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs = [transform.c, transform.c + transform.a * width]
    ys = [transform.f, transform.f + transform.e * height]
    return min(xs), min(ys), max(xs), max(ys)


ARCHIVE_SUFFIXES = {".zip": "/vsizip", ".tar": "/vsitar", ".tgz": "/vsitar", ".tar.gz": "/vsitar"}


def _archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((vsi for suffix, vsi in ARCHIVE_SUFFIXES.items() if name.endswith(suffix)), None)


def _archive_members(archive: Path) -> list[Path]:
    """The files of a ``.zip``/``.tar`` archive as GDAL virtual paths, sorted."""
    vsi = _archive_kind(archive)
    try:
        if vsi == "/vsizip":
            with zipfile.ZipFile(archive) as handle:
                names = [n for n in handle.namelist() if not n.endswith("/")]
        else:
            with tarfile.open(archive) as handle:
                names = [m.name for m in handle.getmembers() if m.isfile()]
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise SceneReadError(f"{archive}: not a readable archive ({first_line(exc)})") from None
    return [Path(f"{vsi}{archive.resolve()}/{name}") for name in sorted(names)]


def _open_dataset(path: Path) -> rasterio.io.DatasetReader:
    text = str(path)
    if text.startswith(("/vsizip/", "/vsitar/")):
        # a Path folds GDAL's "/vsizip//abs/file.zip" to "/vsizip/abs/...", which GDAL reads as relative
        text = text[:8] + "/" + text[8:]
    try:
        with warnings.catch_warnings():
            # a missing geotransform is reported by _check_georeferenced as an error of its own
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(text)
    except RasterioError as exc:
        raise SceneReadError(f"{path}: not a readable raster ({first_line(exc)})") from None


def _check_georeferenced(path: Path, dataset: rasterio.io.DatasetReader) -> None:
    if dataset.crs is None or dataset.transform == Affine.identity():
        raise NoGeoreferenceError(
            f"{path}: no georeferencing (missing CRS or geotransform); tiles cannot be placed on the Earth"
        )


def _band_files(folder: Path) -> list[Path]:
    """Band files below a folder, or inside a ``.zip``/``.tar`` archive (SAFE ``GRANULE/*/IMG_DATA`` included).

    Previews, quality and auxiliary rasters (no ``_B<n>`` in the name) are left out; a band found at
    several resolutions (L2A ``R10m/R20m/R60m``) is taken at the finest. A folder holding a single
    raster yields that raster (a multi-band file). Archive members are read in place through GDAL's
    ``/vsizip/`` and ``/vsitar/`` (their paths here carry the prefix, see :func:`_open_dataset`).
    """
    if folder.is_dir():
        candidates = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        what = "folder"
    else:
        candidates = _archive_members(folder)
        what = "archive"
    rasters = [p for p in candidates if p.suffix.lower() in RASTER_SUFFIXES and not _NOT_BANDS.search(p.stem)]
    if not rasters:
        raise SceneReadError(f"{folder}: {what} holds no raster band files ({', '.join(RASTER_SUFFIXES)})")
    finest: dict[str, tuple[int, Path]] = {}
    for path in rasters:
        band = band_name_from_filename(path.stem)
        if band is None:
            continue
        match = re.search(r"_(\d+)m$", path.stem)
        resolution = int(match.group(1)) if match else 0
        if band not in finest or resolution < finest[band][0]:
            finest[band] = (resolution, path)
    return [path for _, path in finest.values()] or rasters


def _parse_datetime(text: str) -> datetime | None:
    for pattern, has_time in _DATE_PATTERNS:
        match = pattern.search(text)
        if match:
            try:
                if has_time:
                    year, month, day, hour, minute, second = map(int, match.groups())
                    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
                return datetime.strptime(match.group(3), "%Y%m%d").replace(tzinfo=UTC)
            except ValueError:
                continue
    return None


def _acquired(name: str, tags: dict[str, str]) -> datetime | None:
    for key in _DATE_TAGS:
        if key in tags:
            value = tags[key].strip()
            for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y:%m:%d %H:%M:%S",
                        "%Y-%m-%d"):
                try:
                    return datetime.strptime(value, fmt).replace(tzinfo=UTC)
                except ValueError:
                    continue
    return _parse_datetime(name)


def _wavelengths(dataset: rasterio.io.DatasetReader) -> list[float] | None:
    """Per-band centre wavelengths in µm from band tags (``wavelength`` + ``wavelength_units``, ENVI
    style) or from a dataset-level ``wavelength`` list; None if any band lacks one.
    """
    values: list[float] = []
    for i in range(1, dataset.count + 1):
        tags = {k.lower(): v for k, v in dataset.tags(i).items()}
        if "wavelength" not in tags:
            break
        value = float(tags["wavelength"])
        units = tags.get("wavelength_units", "micrometers").lower()
        values.append(value / 1000 if units.startswith("nano") or value > 100 else value)
    if len(values) == dataset.count:
        return values
    listed = {k.lower(): v for k, v in dataset.tags().items()}.get("wavelength")
    if listed:
        numbers = [float(v) for v in re.findall(r"[\d.]+", listed)]
        if len(numbers) == dataset.count:
            return [v / 1000 if v > 100 else v for v in numbers]
    return None


def _spectral_matrix(modality: Modality, wavelengths: Sequence[float]) -> np.ndarray:
    """Linear interpolation in wavelength from source bands onto the modality's grid.

    Grid wavelengths outside the source's range get an all-zero row (a missing band).
    """
    source = np.asarray(wavelengths, dtype=np.float64)
    order = np.argsort(source)
    source = source[order]
    matrix = np.zeros((modality.num_bands, len(source)))
    for row, target in enumerate(modality.wavelengths_um):
        if target < source[0] or target > source[-1]:
            continue
        right = int(np.searchsorted(source, target))
        if source[min(right, len(source) - 1)] == target:
            matrix[row, order[right]] = 1.0
            continue
        left = right - 1
        frac = (target - source[left]) / (source[right] - source[left])
        matrix[row, order[left]] = 1 - frac
        matrix[row, order[right]] = frac
    return matrix


def open_scene(
    scene: str | Path | Sequence[str | Path],
    *,
    modality: str | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    wavelengths: Sequence[float] | None = None,
    statistics: tuple[Sequence[float], Sequence[float]] | None = None,
    sar_scale: str = "db",
    check_values: bool = True,
) -> Scene:
    """Open a scene as a band stack on one grid, with its values checked against the modality's scaling.

    Args:
        scene: a multi-band raster (GeoTIFF/COG/JP2/VRT), a folder of single-band files (band-per-file
            Sentinel-2 or Landsat, SAFE folders included), or a list of single-band files.
        modality: registered modality name; detected from the file when None.
        bands: names of the file's bands in file order (a subset of the modality's bands is allowed;
            missing bands are filled with the band mean). Overrides band descriptions.
        nodata: nodata value; defaults to the file's.
        wavelengths: centre wavelength (µm) of each band in file order, for a sensor the registry does
            not know: the scene becomes a :data:`~ofa_embed.sensors.CUSTOM` modality, normalised with
            ``statistics`` or else with the mean/std of a sample of its own file values. (A file whose
            modality cannot be detected but whose bands carry wavelength tags is opened the same way.)
        statistics: ``(mean, std)`` per band of the file values, for ``wavelengths`` (e.g. a store's).
        sar_scale: Sentinel-1 file values in ``db`` (default), linear ``power`` or ``amplitude``
            (converted to dB while reading).
        check_values: sample the file's values and refuse those that contradict the modality's scaling
            (8-bit modalities given 16-bit values, digital-number modalities given reflectance floats or
            8-bit renderings, dB given linear SAR), naming what would fit; where the values are plausible
            either way, warn (logged, and recorded in ``Scene.input_values``).

    Raises:
        SceneNotFoundError: a path does not exist.
        SceneReadError: not a raster, or unreadable.
        NoGeoreferenceError: no CRS or geotransform.
        ModalityError: modality unknown, or bands that do not fit it.
    """
    if wavelengths is not None and modality is not None:
        raise ModalityError("give either a modality or band wavelengths, not both")
    if sar_scale not in SAR_SCALES:
        raise ModalityError(f"--sar-scale {sar_scale!r}: choose one of {', '.join(SAR_SCALES)}")
    opened = _open_scene(scene, modality, bands, nodata, wavelengths)
    if opened.modality.name != CUSTOM:
        try:
            if sar_scale != "db" and not opened.modality.name.startswith("sentinel1"):
                raise ModalityError(f"{opened.path}: --sar-scale is for SAR; this scene is {opened.modality.name}")
            opened.sar_scale = sar_scale
            if check_values:
                opened.input_values = check_value_range(opened)
            return opened
        except BaseException:
            opened.close()
            raise
    try:
        if statistics is None:
            sampled_mean, sampled_std, stats_source = sample_statistics([opened])
            mean, std = sampled_mean.tolist(), sampled_std.tolist()
        else:
            (mean, std), stats_source = statistics, "given"
        opened.modality = custom_modality(opened.modality.wavelengths_um.tolist(), mean, std, stats_source=stats_source,
                                          labels=opened.modality.band_names)
        return opened
    except BaseException:
        opened.close()
        raise


def open_scenes(items: Sequence[str | Path | Sequence[str | Path]], **open_args: Any) -> list[Scene]:
    """Open and check the scenes of a run (:func:`open_scene`, given ``open_args``), in order. They stay open up
    to :data:`KEPT_OPEN_FILES` files (the first whatever its count): a run reads them without reopening (a
    Sentinel-2 scene's 13 files took 16-18 ms to reopen). The scenes past that are released
    (:meth:`Scene.release`) once checked, so that a run of thousands holds a bounded number of files open;
    the kept scenes but the first drop their value sample as a released scene does.

    (Opening several at once measured no faster on 2 cores: 4 Sentinel-2 scenes in 0.45-0.46 s by two
    threads, 0.47-0.66 s by one; reading the value sample is GIL-bound Python around many small reads.)

    Raises:
        what :func:`open_scene` raises, for the first scene that fails, once those opened are closed.
    """
    scenes: list[Scene] = []
    open_files = 0
    try:
        for item in items:
            scene = open_scene(item, **open_args)
            scenes.append(scene)
            files = len(scene._sources)
            if len(scenes) == 1 or open_files + files <= KEPT_OPEN_FILES:
                open_files += files
                if len(scenes) > 1:
                    scene._sample = None
            else:
                scene.release()
    except BaseException:
        for scene in scenes:
            scene.close()
        raise
    return scenes


class ValueChecks:
    """The value checks (:func:`check_value_range`) of a run's released scenes, in order, in a thread of their own
    beside the run's reading and model; each result goes to its scene's ``input_values``.

    A run opens its scenes without them (``open_scenes(..., check_values=False)``), so that its model starts
    after one scene's opening instead of every scene's checks (about 0.03 s a Sentinel-2 scene on one core,
    0.075 s before the check read each file's own pixels, while the other core waits). Made with
    ``begun=False``, the checks wait for :meth:`begin`: a run begins them once its model is busy, since beside
    the first batch's reading they hold it back (their files' opening and reading contend with the reader's
    for the GIL: the model's first batch came 0.05 s later of a 1.1 s run). The run polls
    :meth:`raise_failure` as it goes, so a bad scene stops it within a few batches, and calls :meth:`wait`
    (which begins them) before its first write, so nothing is written unless every scene passed. Each check
    reads through file handles of its own, never the scene's, which the reader may hold.
    Use as a context manager: leaving stops the checks and joins their thread, on every path.
    """

    def __init__(self, scenes: Sequence[Scene], *, begun: bool = True) -> None:
        self._scenes = list(scenes)
        self._stop = threading.Event()
        self._begun = threading.Event()
        if begun:
            self._begun.set()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ofa-embed-value-checks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._begun.wait()
        try:
            for scene in self._scenes:
                if self._stop.is_set():
                    return
                with scene.own_handles() as own:
                    scene.input_values = check_value_range(own)
        except BaseException as exc:  # raised in the run's own thread by raise_failure / wait
            self._failure = exc

    def raise_failure(self) -> None:
        """Raise what a check has raised so far (a bad scene, an unreadable file), if anything."""
        if self._failure is not None:
            raise self._failure

    def begin(self) -> None:
        """Start the checks, if not yet begun."""
        self._begun.set()

    def wait(self) -> None:
        """Begin the checks, wait for every one; raise the first failure."""
        self.begin()
        self._join()
        self.raise_failure()

    def close(self) -> None:
        """Stop after the check under way (or before the first, if not begun) and join the thread."""
        self._stop.set()
        self.begin()
        self._join()

    def _join(self) -> None:
        wait_through_interrupts(self._thread.join, lambda: not self._thread.is_alive())

    def __enter__(self) -> ValueChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_like(template: Scene, path: Path, name: str, nodata: float | None = None) -> Scene:
    """Open ``path``, a file of the same sensor and band layout as ``template`` (one chip of a collection),
    without detecting its modality or checking its values again: the template's modality, band positions,
    labels and value check apply. Its grid, CRS, date and nodata (``nodata``, else the file's) are its own.

    Raises:
        SceneReadError, NoGeoreferenceError: unreadable or not georeferenced.
        ModalityError: a band count, data type or band descriptions other than the template's.
    """
    if len(template._sources) != 1 or template._sources[0].grid is not None:
        raise ModalityError(f"{template.path}: chips are single multi-band files, not band files on several grids")
    first = template._sources[0].dataset
    dataset = _open_dataset(path)
    try:
        _check_georeferenced(path, dataset)
        layout = (dataset.count, dataset.dtypes[0], [d or "" for d in dataset.descriptions])
        expected = (first.count, first.dtypes[0], [d or "" for d in first.descriptions])
        if layout != expected:
            raise ModalityError(
                f"{path}: {layout[0]} {layout[1]} band(s) described {layout[2]}, but the collection's first chip "
                f"{template.path} has {expected[0]} {expected[1]} band(s) described {expected[2]}; "
                "extract each sensor's chips into their own store"
            )
        return dataclasses.replace(
            template, path=path, name=name, crs=dataset.crs, transform=dataset.transform, width=dataset.width,
            height=dataset.height, nodata=nodata if nodata is not None else dataset.nodata,
            acquired=_acquired(path.stem, dataset.tags()),
            _sources=[_Source(path, dataset, template._sources[0].indexes)], _sample=None,
        )
    except BaseException:
        dataset.close()
        raise


def sample_statistics(scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray, str]:
    """``(mean, std, source)`` per band of the file values of ``scenes``' samples pooled, to normalise a sensor
    given by wavelengths; std is kept above zero for a constant band.

    Raises:
        ModalityError: fewer than 2 valid pixels in the samples.
    """
    moments = [scene.sample_moments() for scene in scenes]
    counts = np.array([n for n, _, _ in moments], np.float64)[:, None]
    means, m2s = np.stack([m for _, m, _ in moments]), np.stack([m2 for _, _, m2 in moments])
    count = int(counts.sum())
    if count < 2:
        raise ModalityError(f"{scenes[0].path}: too few valid pixels to normalise a sensor given by wavelengths")
    mean = (counts * means).sum(axis=0) / count
    # Chan et al.'s pooling: each scene's m2 plus what its mean's offset from the pooled mean adds
    m2 = (m2s + counts * np.square(means - mean)).sum(axis=0)
    names = scenes[0].path.name if len(scenes) == 1 else f"{len(scenes)} scenes"
    std = np.maximum(np.sqrt(m2 / count), 1e-6 * np.abs(mean) + 1e-12)
    return mean, std, f"{count} valid pixels sampled from {names}"


def check_value_range(scene: Scene) -> dict[str, object]:
    """Check a sample of a scene's file values against its modality's scaling.

    Returns:
        What was found: ``dtype``, ``p1``/``p50``/``p99`` of the sampled values, ``sar_scale`` and a
        ``warning`` (None, or the line logged when the values fit the modality and another reading).

    Raises:
        ModalityError: values the modality's scaling cannot be right for, naming the options that fit.
    """
    modality, path = scene.modality, scene.path
    dtype = np.dtype(scene._sources[0].dataset.dtypes[0])
    flat = scene.value_sample()
    found: dict[str, object] = {"dtype": dtype.name, "sar_scale": scene.sar_scale, "warning": None}
    if not flat.size:
        return found
    # a regular stride through a large sample (0.8M values of a Sentinel-2 scene): the 1st and 99th
    # percentiles of 2^18 values are within 0.02 percentile points of the sample's (binomial standard
    # error), far inside the factors between the scalings told apart below, at a fraction of the cost
    p1, p50, p99 = (float(v) for v in np.percentile(flat[:: max(1, flat.size // VALUE_CHECK_VALUES)], [1, 50, 99]))
    found |= {"p1": p1, "p50": p50, "p99": p99}
    seen = f"values {p1:.4g} to {p99:.4g} (1st-99th percentile, {dtype.name})"
    other = "; for another sensor give its band wavelengths with --wavelengths (normalised by their own statistics)"
    warning = None
    if modality.name.startswith("sentinel1"):
        if scene.sar_scale == "db" and p1 >= 0:
            raise ModalityError(f"{path}: {seen}, none negative: not backscatter in dB ({modality.name} expects dB, "
                                "about -30 to +5); linear values are converted with --sar-scale power (sigma0) or "
                                "--sar-scale amplitude")
        if scene.sar_scale != "db" and p1 < 0:
            raise ModalityError(f"{path}: {seen}, negative: already in dB, not linear {scene.sar_scale}; drop --sar-scale")
    elif np.isclose(modality.scale, 1 / 255):
        if p99 > 255:
            raise ModalityError(
                f"{path}: {seen} are not 8-bit {modality.name} imagery (0-255). Landsat 8/9 digital numbers: "
                "--modality landsat_oli (Level-1) or landsat_oli_sr (Level-2) with --bands (e.g. B4,B3,B2 for "
                "red, green, blue); Sentinel-2: --modality sentinel2_l2a (or _l1c) with --bands (e.g. B04,B03,B02)"
                + other)
        if p1 < 0:
            raise ModalityError(f"{path}: {seen}, negative: not 8-bit {modality.name} imagery (0-255); SAR backscatter "
                                "in dB is --modality sentinel1_grd with --bands (e.g. VV,VH)" + other)
        if dtype.kind == "f" and p99 <= 1.5:
            raise ModalityError(f"{path}: {seen} are already scaled to 0-1, not 8-bit {modality.name} imagery" + other)
        if dtype.itemsize > 1:
            warning = f"{path}: {dtype.name} file with {seen}: read as 8-bit {modality.name} (scaled by 1/255)"
    elif modality.scale < 1e-3:  # digital numbers: reflectance x 10,000 (Sentinel-2), Landsat DN
        if dtype.kind == "f" and p99 <= 2.0:
            raise ModalityError(f"{path}: {seen} look like reflectance, not {modality.name} digital numbers "
                                f"(scaled by {modality.scale:g})" + other)
        if dtype == np.uint8:
            raise ModalityError(f"{path}: {seen}: 8-bit values cannot be {modality.name} digital numbers (an 8-bit "
                                "rendering?); 8-bit RGB(-NIR): --modality rgb or rgbn with --bands" + other)
        if p99 * modality.scale + modality.offset > 2.0:
            raise ModalityError(f"{path}: {seen} scale to reflectance above 2 as {modality.name} "
                                f"(x {modality.scale:g}); not this sensor's digital numbers" + other)
    if warning:
        logger.warning(warning)
        found["warning"] = warning
    return found


def _open_scene(
    scene: str | Path | Sequence[str | Path], modality: str | None, bands: Sequence[str] | None,
    nodata: float | None, wavelengths: Sequence[float] | None,
) -> Scene:
    paths = [Path(scene)] if isinstance(scene, (str, Path)) else [Path(p) for p in scene]
    if not paths:
        raise SceneNotFoundError("no scene given")
    for path in paths:
        if not path.exists():
            raise SceneNotFoundError(f"{path}: no such file or folder")
    if len(paths) == 1 and (paths[0].is_dir() or _archive_kind(paths[0])):
        label, files = paths[0], _band_files(paths[0])
    else:
        label, files = paths[0], paths
    if len(files) == 1:
        return _open_multiband(files[0], modality, bands, nodata, wavelengths)
    return _open_band_files(label, files, modality, bands, nodata, wavelengths)


def _given_sensor(source: Path, wavelengths: Sequence[float], labels: Sequence[str], count: int) -> Modality:
    """A placeholder custom modality (statistics follow in :func:`open_scene`) for ``count`` bands."""
    if len(wavelengths) != count:
        raise ModalityError(f"{source}: {len(wavelengths)} wavelength(s) given for {count} band(s)")
    names = list(labels) if len(set(labels)) == count and all(labels) else None
    return custom_modality(wavelengths, [0.0] * count, [1.0] * count, stats_source="", labels=names)


def _open_multiband(
    path: Path, modality_name: str | None, bands: Sequence[str] | None, nodata: float | None,
    given_wavelengths: Sequence[float] | None,
) -> Scene:
    dataset = _open_dataset(path)
    try:
        _check_georeferenced(path, dataset)
        descriptions = [d or "" for d in dataset.descriptions]
        wavelengths = _wavelengths(dataset)
        tags = dataset.tags()
        # sensor tags (SPACECRAFT_NAME=Sentinel-2A, PRODUCT_TYPE=S2MSI2A, ...) count like the file name
        evidence = " ".join([path.stem, *(v for k, v in tags.items() if k.upper() in _SENSOR_TAGS)])
        labels_given = list(bands) if bands is not None else descriptions
        if given_wavelengths is not None:
            modality = _given_sensor(path, given_wavelengths, labels_given, dataset.count)
        elif modality_name:
            modality = get_modality(modality_name)
        else:
            try:
                modality = detect_modality(dataset.count, descriptions=descriptions, name=evidence,
                                           has_wavelengths=wavelengths is not None, source=str(path))
            except ModalityError:
                if wavelengths is None or bands is not None:
                    raise
                # no registered sensor, but the file says where its bands sit in the spectrum
                modality = _given_sensor(path, wavelengths, labels_given, dataset.count)
        spectral = None
        if modality.name == CUSTOM:
            labels, positions = list(modality.band_names), list(range(dataset.count))
        elif modality.spectral_resample:
            if wavelengths is None:
                raise ModalityError(
                    f"{path}: hyperspectral input needs a wavelength per band (band tag 'wavelength')"
                )
            labels, positions = [f"{w:.4f}um" for w in wavelengths], list(range(dataset.count))
            spectral = _spectral_matrix(modality, wavelengths)
        else:
            labels, positions = _band_layout(path, modality, dataset.count, descriptions, bands)
        nodata_value = nodata if nodata is not None else dataset.nodata
        return Scene(
            path, path.stem, modality, dataset.crs, dataset.transform, dataset.width, dataset.height,
            positions, labels, nodata_value, _acquired(path.stem, tags), spectral,
            [_Source(path, dataset, list(range(1, dataset.count + 1)))],
        )
    except BaseException:
        dataset.close()
        raise


def _band_layout(
    path: Path, modality: Modality, count: int, descriptions: Sequence[str], bands: Sequence[str] | None
) -> tuple[list[str], list[int]]:
    """Labels and canonical positions of a file's bands: ``--bands`` first, then band descriptions that
    name the modality's bands (any order: they fix band-order mix-ups), else the canonical order.
    """
    if bands is not None:
        if len(bands) != count:
            raise ModalityError(f"{path}: --bands names {len(bands)} band(s) but the file has {count}")
        return list(bands), modality.resolve_bands(bands, source=f"{path}: --bands")
    if not generic_descriptions(descriptions):
        # descriptions that say what the bands are decide, whatever the modality's order or band count
        if not all(descriptions):
            raise ModalityError(f"{path}: only some bands have descriptions ({', '.join(map(repr, descriptions))}); "
                                "name all the file's bands with --bands")
        return list(descriptions), modality.resolve_bands(descriptions, source=f"{path}: band descriptions")
    if count != modality.num_bands:
        raise ModalityError(
            f"{path}: {count} band(s) but {modality.name} has {modality.num_bands}; name the file's bands "
            f"with --bands (e.g. --bands {','.join(modality.band_names[:count])})"
        )
    return list(modality.band_names), list(range(count))


def _open_band_files(
    label: Path, files: list[Path], modality_name: str | None, bands: Sequence[str] | None, nodata: float | None,
    given_wavelengths: Sequence[float] | None,
) -> Scene:
    tokens = [band_name_from_filename(f.stem) for f in files]
    if given_wavelengths is not None:
        # file order is band order: the wavelengths were given for the files as listed
        modality = _given_sensor(label, given_wavelengths, list(bands) if bands else [t or "" for t in tokens], len(files))
        return _stack_band_files(label, files, modality, list(range(len(files))), list(modality.band_names), nodata)
    if bands is None and any(t is None for t in tokens):
        unnamed = files[tokens.index(None)]
        raise ModalityError(f"{unnamed}: cannot tell which band this file is (no _B<n> in its name); use --bands")
    names = list(bands) if bands is not None else [t for t in tokens if t]
    if bands is not None and len(bands) != len(files):
        raise ModalityError(f"{label}: --bands names {len(bands)} band(s) but {len(files)} band files were given")
    if modality_name:
        modality = get_modality(modality_name)
    else:
        modality = _detect_band_file_modality(label, names, [f.stem for f in files])
    keep = [i for i, n in enumerate(names) if modality.band_index(n) is not None]
    if not keep:
        raise ModalityError(f"{label}: no band file matches a {modality.name} band ({', '.join(modality.band_names)})")
    files, names = [files[i] for i in keep], [names[i] for i in keep]
    positions = modality.resolve_bands(names, source=str(label))
    return _stack_band_files(label, files, modality, positions, names, nodata)


def _stack_band_files(label: Path, files: list[Path], modality: Modality, positions: list[int], names: list[str],
                      nodata: float | None) -> Scene:
    datasets: list[rasterio.io.DatasetReader] = []
    try:
        for path in files:
            datasets.append(_open_dataset(path))
            _check_georeferenced(path, datasets[-1])
            if datasets[-1].count != 1:
                raise ModalityError(f"{path}: band files must have one band, this one has {datasets[-1].count}")
        reference = min(datasets, key=lambda d: abs(d.res[0] * d.res[1]))
        sources = [_band_source(d, reference, nodata) for d in datasets]
        nodata_value = nodata if nodata is not None else reference.nodata
        return Scene(
            label, _scene_name(label), modality, reference.crs, reference.transform,
            reference.width, reference.height, positions, names, nodata_value,
            _acquired(label.name + " " + files[0].stem, reference.tags()), None, sources,
        )
    except BaseException:
        for dataset in datasets:
            dataset.close()
        raise


def group_band_files(items: Sequence[str | Path | Sequence[str | Path]]) -> list[Path | list[Path]]:
    """Scenes from inputs given together: single-band files whose names share a product id (the name
    without its band token: ``LC08_L1TP_..._B4.TIF``, ``T33UUP_..._B02.jp2``, ``*_B<n>.tif``) become one
    scene per product, in the order first given; quality and preview files of such a product
    (``..._BQA.TIF``, ``..._TCI.jp2``) are left out. Lists (explicit stacks) and other files stay as given.
    """
    products: dict[tuple[Path, str], list[Path]] = {}
    order: list[tuple[Path, str] | Path | list[Path]] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_file() and band_name_from_filename(Path(item).stem):
            path = Path(item)
            key = (path.parent.resolve(), _scene_name(path))
            if key not in products:
                products[key] = []
                order.append(key)
            products[key].append(path)
        else:
            order.append(Path(item) if isinstance(item, (str, Path)) else [Path(p) for p in item])
    scenes: list[Path | list[Path]] = []
    for entry in order:
        if isinstance(entry, tuple):
            files = products[entry]
            scenes.append(files if len(files) > 1 else files[0])
        elif isinstance(entry, Path) and _NOT_BANDS.search(entry.stem) and any(
                entry.parent.resolve() == folder and entry.stem.startswith(product) for folder, product in products):
            logger.info("%s: not a band of %s, left out", entry, entry.stem)
        else:
            scenes.append(entry)
    return scenes


def _scene_name(label: Path) -> str:
    """Folder name (without ``.SAFE``), or for a list of band files the first file's stem without its
    band token: ``LC08_..._RT_B2`` -> ``LC08_..._RT``.
    """
    if label.is_dir():
        return label.name.removesuffix(".SAFE")
    if vsi := _archive_kind(label):
        suffix = next(x for x, v in ARCHIVE_SUFFIXES.items() if v == vsi and label.name.lower().endswith(x))
        return label.name[: -len(suffix)].removesuffix(".SAFE")
    return re.sub(r"[_\-.\s,]+(B\d{1,2}A?|VV|VH|HH|HV)(_\d+m)?$", "", label.stem, flags=re.IGNORECASE) or label.stem


def _detect_band_file_modality(label: Path, names: Sequence[str], stems: Sequence[str]) -> Modality:
    """Band-file naming tells the sensor: zero-padded ``B02`` or ``B8A`` is Sentinel-2, ``B2`` Landsat;
    Landsat Level-2 surface reflectance (``..._L2SP_..._SR_B4``) scales differently from Level-1 DN.
    """
    if any(re.fullmatch(r"B0\d|B8A", n) for n in names):
        return get_modality("sentinel2_l1c" if "B10" in names else "sentinel2_l2a")
    if all(re.fullmatch(r"B\d{1,2}", n) for n in names):
        surface = get_modality("landsat_oli_sr")
        texts = [label.name, *stems]
        if any(re.search(p, t, re.IGNORECASE) for p in surface.filename_patterns for t in texts):
            return surface
        return get_modality("landsat_oli")
    raise ModalityError(f"{label}: band files {', '.join(names)} fit no known modality; pass --modality")


def _band_source(
    dataset: rasterio.io.DatasetReader, reference: rasterio.io.DatasetReader, nodata: float | None
) -> _Source:
    """A band file read onto the grid of ``reference`` (the finest band file)."""
    path = Path(dataset.name)
    if dataset.crs == reference.crs and dataset.transform == reference.transform and dataset.shape == reference.shape:
        return _Source(path, dataset, [1])
    grid = (reference.crs, reference.transform, reference.width, reference.height)
    aligned = (
        aligned_grid(dataset.transform, dataset.width, dataset.height, reference.transform)
        if dataset.crs == reference.crs else None
    )
    return _Source(path, dataset, [1], grid, aligned, nodata if nodata is not None else dataset.nodata)
