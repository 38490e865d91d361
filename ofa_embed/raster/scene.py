"""A scene: one band stack on one grid, read window by window as normalised float32 in the model's band order.

A :class:`Scene` knows its grid (CRS, transform, size), its modality and which canonical band each of
its source bands is. Reads are windowed, so memory depends on the window, never on the scene size. It is
made by :func:`~ofa_embed.raster.opening.open_scene`; its files are read through
:class:`~ofa_embed.raster.source.Source` handles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ofa_embed.errors import SceneReadError, first_line
from ofa_embed.raster.radiometry import Radiometry
from ofa_embed.raster.source import Source, sample_windows
from ofa_embed.sensors import Modality

__all__ = ["SAMPLE_WINDOW", "SAR_SCALES", "Scene"]

# Edge of the 9 windows Scene.sample_raw and Scene.value_sample read (in scene pixels; value_sample reads a
# coarser band's own pixels under them). Where they lie sets how well the sample stands for the
# scene; their size hardly does: 147k pixels give percentiles and band means to well under the
# differences between regions of a scene. Read time is mostly per window and band file (a striped file
# reads whole rows), and grows with the edge.
SAMPLE_WINDOW = 128

# SAR file values -> dB: the factor on log10 (dB files are read as they are)
SAR_SCALES = {"db": 1.0, "power": 10.0, "amplitude": 20.0}


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
        nodata: the nodata value, or None. Pixels a file's validity mask marks invalid (an alpha band, a GDAL
            mask: :attr:`~ofa_embed.raster.source.Source.mask`, said by :attr:`mask`) are invalid too.
        acquired: acquisition time (UTC) from metadata or file name, or None.
        spectral_matrix: hyperspectral only, ``(canonical_bands, source_bands)`` linear resampling.
        sar_scale: what SAR file values are: ``db`` (as the modality expects), or linear ``power`` /
            ``amplitude``, converted to dB on reading (``10 log10`` / ``20 log10``; values <= 0 invalid).
        input_values: what the value-range check of :func:`~ofa_embed.raster.opening.open_scene` found (dtype,
            percentiles of the file values, the SAR scale, any warning), recorded in the store.
        assumed: what was taken for granted about the file that it does not say itself (band order, band
            identity from the band count), one line each, as logged; recorded in the store.
        radiometry: each source band's scale and offset from file values to physical ones and where they came
            from (the file's GDAL scale/offset, a Sentinel-2 product's metadata, ...); None: the modality's.
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
    _sources: list[Source] = field(default_factory=list, repr=False)
    sar_scale: str = "db"
    input_values: dict[str, object] = field(default_factory=dict)
    assumed: list[str] = field(default_factory=list)
    radiometry: Radiometry | None = None
    _sample: np.ndarray | None = field(default=None, repr=False)
    _moments: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def sources(self) -> tuple[Source, ...]:
        """The scene's file handles, in source band order (read-only; empty once closed)."""
        return tuple(self._sources)

    @property
    def sample_held(self) -> bool:
        """Whether the value sample of :meth:`sample_raw` is held (a released scene drops it)."""
        return self._sample is not None

    def drop_sample(self) -> None:
        """Drop the value sample (read again if needed); its moments (:meth:`sample_moments`) are kept."""
        self._sample = None

    @property
    def mask(self) -> str | None:
        """What validity mask the scene's files carry besides nodata values (``"alpha band 4"``, ``"internal
        mask"``, ``".msk sidecar"``; each band file's named), or None: recorded in the store as ``input_values``'
        ``mask``.
        """
        masked = [s for s in self._sources if s.mask is not None]
        if len(self._sources) == 1 or not masked:
            return masked[0].mask if masked else None
        return "; ".join(f"{s.mask} of {s.path.name}" for s in masked)

    def on_files(self, sources: list[Source], **changes: Any) -> Scene:
        """This scene's sensor, bands, labels and value check on other files (``sources``) of the same band
        layout, with ``changes`` to its public fields (path, name, grid, nodata, date); no value sample.
        """
        return dataclasses.replace(self, _sources=sources, _sample=None, **changes)

    @property
    def missing_bands(self) -> tuple[str, ...]:
        """Canonical bands the scene does not provide (filled with the band mean)."""
        if self.spectral_matrix is not None:
            present = self.spectral_matrix.sum(axis=1) > 0
        else:
            present = np.zeros(self.modality.num_bands, bool)
            present[self.band_positions] = True
        return tuple(b.name for b, ok in zip(self.modality.bands, present, strict=True) if not ok)

    def normalising_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(gain, bias)``, each ``(C,)`` float32 in the model's band order: a file value ``v`` of band ``c``
        normalises to ``v * gain[c] + bias[c]``, with the file's own per-band scale/offset (:attr:`radiometry`)
        where it has them, else the modality's.
        """
        scaling = self.band_scaling()
        return self.modality.normalising_affine(*scaling) if scaling else self.modality.normalising_affine()

    def band_scaling(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(scale, offset)``, each ``(C,)`` float32 in the model's band order, where the file gives its own
        (:attr:`radiometry`); None where the modality's apply (and for hyperspectral input, scaled per source
        band before resampling).
        """
        if self.radiometry is None or self.spectral_matrix is not None:
            return None
        return self.radiometry.in_model_order(self.modality, self.band_positions)

    def read(self, window: Window, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read a window (inside the scene) in the model's band order, normalised.

        Args:
            window: the pixel window.
            out: ``(C, h, w)`` float32 array to read into, of any strides (a view into a caller's larger
                buffer: reused memory, or tiles laid out for the model); data is then ``out``.

        Returns:
            ``(data, valid)``: data ``(C, h, w)`` float32, C = modality bands, normalised with the
            modality's scale/offset and mean/std, missing bands and invalid pixels set to 0 (the mean);
            valid ``(h, w)`` bool, False where any source band is nodata or not finite, or a file's mask
            marks the pixel invalid.

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
            self._read_masks(window, valid)
            if self.radiometry is None:
                physical = raw * np.float32(modality.scale) + np.float32(modality.offset)
            else:  # per source band: the spectral resampling mixes bands
                scale = np.asarray(self.radiometry.scale, np.float32)[:, None, None]
                physical = raw * scale + np.asarray(self.radiometry.offset, np.float32)[:, None, None]
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
            gain, bias = self.normalising_affine()
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
                    # bias + gain * band in one pass (numpy's in-place multiply, then add, passes over the band twice)
                    values = torch.from_numpy(band)
                    torch.add(biases[p], values, alpha=float(gain[p]), out=values)

            self._read_into(window, out, self.band_positions, finish)
            self._read_masks(window, valid)
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

    def _read_masks(self, window: Window, valid: np.ndarray) -> None:
        """Clear ``valid`` where a file's mask marks a pixel of ``window`` invalid (files without one read nothing).

        Raises:
            SceneReadError: a mask cannot be read.
        """
        for source in self._sources:
            if source.mask is not None:
                try:
                    source.read_mask(window, valid)
                except RasterioError as exc:
                    raise SceneReadError(f"{source.path}: reading its mask failed ({first_line(exc)})") from None

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
        """Raw file values of a window, ``(source_bands, h, w)`` float32, in source band order (masked pixels
        included: :meth:`read` says which are valid).
        """
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
            for window in sample_windows(self.height, self.width, SAMPLE_WINDOW):
                raw = self.read_raw(window)
                valid = self._valid(raw, raw.shape[1:])
                self._read_masks(window, valid)
                parts.append(raw.reshape(len(raw), -1) if valid.all() else raw[:, valid])
            self._sample = np.concatenate(parts, axis=1)
        return self._sample

    def empty_bands(self) -> list[int]:
        """Source bands (indices in source order) that hold no valid value in the windows of :meth:`sample_raw`
        (nodata or not finite everywhere there: a hyperspectral product's water-vapour absorption bands).
        """
        seen = np.zeros(len(self.band_positions), bool)
        check_finite = self._holds_floats()
        for window in sample_windows(self.height, self.width, SAMPLE_WINDOW):
            raw = self.read_raw(window)
            for i, band in enumerate(raw):
                if not seen[i]:
                    valid = np.ones(band.shape, bool)
                    self._mark_invalid(band, valid, check_finite)
                    seen[i] = bool(valid.any())
            if seen.all():
                break
        return [i for i, ok in enumerate(seen) if not ok]

    def value_sample(self) -> np.ndarray:
        """File values of every band at its own resolution, none resampled: 3 x 3 windows spread evenly over each
        file, each about :data:`SAMPLE_WINDOW` scene px on a side (21 px of a 60 m band of a 10 m scene), pixels
        where a band of the file is nodata or not finite, or the file's mask marks invalid, left out; flat float32.
        What the value check judges: the scene-grid sample of :meth:`sample_raw` upsamples the coarse bands, which
        costs more and gives it no value to judge by that the file does not hold.

        Raises:
            SceneReadError: a file cannot be read.
        """
        parts = []
        for source in self._sources:
            dataset = source.dataset
            edge = max(1, SAMPLE_WINDOW // source.aligned.factor) if source.aligned is not None else SAMPLE_WINDOW
            for window in sample_windows(dataset.height, dataset.width, edge):
                try:
                    values = dataset.read(source.indexes, window=window, out_dtype="float32")
                    valid = self._valid(values, values.shape[1:], source.holds_floats)
                    if source.mask is not None:
                        np.logical_and(valid, source.native_mask(window), out=valid)
                except RasterioError as exc:
                    raise SceneReadError(f"{source.path}: read failed ({first_line(exc)})") from None
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
        opened and checked before the first is read, holds a bounded number of them open
        (:func:`~ofa_embed.raster.opening.open_scenes`).
        """
        for source in self._sources:
            source.release()
        self.drop_sample()

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


def _bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    xs = [transform.c, transform.c + transform.a * width]
    ys = [transform.f, transform.f + transform.e * height]
    return min(xs), min(ys), max(xs), max(ys)
