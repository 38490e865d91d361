"""What a sensor is, as data: its bands (name, aliases, centre wavelength, GSD, normalisation statistics), its
scaling from file values to physical ones, how its files are named and dated, and the band orders its
distributions store unnamed bands in. The sensors themselves are entries of :mod:`ofa_embed.sensors.catalogue`,
held by :mod:`ofa_embed.sensors.registry`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ofa_embed.errors import ModalityError

__all__ = ["Band", "FileOrder", "Modality", "VALUE_KINDS", "ValueKind"]

# What a modality's file values are, for the value-range check: ``optical`` values are judged by the
# modality's scaling (8-bit, digital numbers); ``sar_db`` is SAR backscatter in dB, which linear power or
# amplitude files are converted to on reading (``--sar-scale``).
ValueKind = Literal["optical", "sar_db"]
VALUE_KINDS: tuple[ValueKind, ...] = ("optical", "sar_db")


@dataclass(frozen=True)
class Band:
    """One spectral (or polarimetric) band.

    Attributes:
        name: canonical band name, e.g. ``"B02"`` or ``"VV"``.
        wavelength_um: centre wavelength in micrometres (SAR: the radar wavelength).
        gsd_m: native ground sample distance in metres.
        mean: mean of the scaled value (reflectance, dB, ...) used for normalisation.
        std: standard deviation of the scaled value used for normalisation.
        aliases: other names that identify this band in band descriptions or file names.
    """

    name: str
    wavelength_um: float
    gsd_m: float
    mean: float
    std: float
    aliases: tuple[str, ...] = ()

    def matches(self, label: str) -> bool:
        """Whether ``label`` (a band description or file-name token) names this band."""
        key = _normalise_label(label)
        return key == _normalise_label(self.name) or key in {_normalise_label(a) for a in self.aliases}


@dataclass(frozen=True)
class FileOrder:
    """An order in which a distribution of a sensor's product stores its bands in one file without naming them.

    Where a sensor has several (Sentinel-2 L1C: ESA's, B8A after B08; EuroSAT's, B8A last), a file with no
    band names is read in the one its values fit (:func:`~ofa_embed.sensors.choose_file_order`), and refused
    where they fit none or several. Two cues, each about where bands sit in the file: ``darkest``, a band
    whose values lie far below every other band's over land (the cirrus band, which water can rival in the
    shortwave infrared); ``alike``, two bands whose values are about the same over any surface (the two
    near-infrared bands B08 and B8A, which bare soil can rival with B12).

    Attributes:
        name: what the order is called in messages and the store's footer (``"esa"``, ``"eurosat"``).
        bands: the band names in file order.
        darkest: the band whose median value is the lowest of the file's, by a margin.
        alike: two bands whose medians are closest in ratio, by a margin.
        source: who distributes files in this order.
    """

    name: str
    bands: tuple[str, ...]
    darkest: str
    alike: tuple[str, str]
    source: str


@dataclass(frozen=True)
class Modality:
    """A sensor product with a fixed band order.

    Attributes:
        name: registry key, e.g. ``"sentinel2_l1c"``.
        description: one-line human description.
        bands: bands in the canonical order the model's patch embedding expects.
        scale: multiplier from file values to physical values.
        offset: added after ``scale``.
        units: physical unit after scaling (e.g. ``"TOA reflectance"``).
        default_tile_size: tile edge in pixels used when ``tile_size`` is not given.
        stats_source: where the band means/stds come from.
        filename_patterns: regexes on a file or folder name that identify the sensor.
        spectral_resample: if True (hyperspectral), input bands of any count are linearly resampled
            in wavelength onto :attr:`bands`; the file must give each band's wavelength.
        band_file_token: for a product delivered as one file per band, a regex that the band token of
            each of its file names matches whole, upper case (the token ends the file stem after a
            separator, optionally followed by ``_<n>m``: ``..._B02.jp2``, ``..._B8A_20m.jp2``); it names a
            band of :attr:`bands` (name or alias). Empty: not detected from band files.
        not_band_files: regexes (case-insensitive) on a file stem that mark the rasters a product ships
            beside its band files (previews, quality and auxiliary layers), left out of a scene.
        date_patterns: regexes on a file or folder name with named groups ``year``, ``month``, ``day`` (or
            ``year`` and ``doy``, the day of the year: HLS, MODIS) and optionally ``hour``, ``minute``,
            ``second``, giving the acquisition time (UTC).
        date_tags: dataset tags that hold the acquisition time, tried before the generic ones.
        value_kind: what the file values are (:data:`ValueKind`), for the value-range check.
        default_for_band_count: the modality a file of :attr:`num_bands` bands is taken for when
            nothing else identifies it (at most one per band count).
        file_orders: the orders in which distributions store all its bands in one file without naming them,
            where there are several (see :class:`FileOrder`); empty: the canonical order.
        named_only: taken only where a file or folder name matches :attr:`filename_patterns` (or the file's own
            scale/offset are this sensor's): a product whose bands carry another sensor's names (HLS's
            ``B01``-``B12`` are Sentinel-2's, MODIS's ``b01``-``b07`` Landsat's), never chosen from band
            descriptions or band-file tokens alone.
        fill_value: the value the product marks missing pixels with, used when the file declares no nodata
            (said in :attr:`~ofa_embed.raster.scene.Scene.assumed`); None: none.
        guess_hint: what a file taken for this sensor by its band count alone may be instead, and what to pass
            then; said with the guess.
    """

    name: str
    description: str
    bands: tuple[Band, ...]
    scale: float
    offset: float
    units: str
    default_tile_size: int
    stats_source: str
    filename_patterns: tuple[str, ...] = ()
    spectral_resample: bool = False
    band_file_token: str = ""
    not_band_files: tuple[str, ...] = ()
    date_patterns: tuple[str, ...] = ()
    date_tags: tuple[str, ...] = ()
    value_kind: ValueKind = "optical"
    default_for_band_count: bool = False
    file_orders: tuple[FileOrder, ...] = ()
    named_only: bool = False
    fill_value: float | None = None
    guess_hint: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def band_names(self) -> tuple[str, ...]:
        """The canonical band names, in model order."""
        return tuple(b.name for b in self.bands)

    @property
    def num_bands(self) -> int:
        """The number of bands C the model's patch embedding takes."""
        return len(self.bands)

    @property
    def wavelengths_um(self) -> np.ndarray:
        """``(C,)`` float64 centre wavelengths in µm, in band order."""
        return np.array([b.wavelength_um for b in self.bands], dtype=np.float64)

    @property
    def mean(self) -> np.ndarray:
        """``(C,)`` float32 normalisation means of the scaled (physical) values, in band order."""
        return np.array([b.mean for b in self.bands], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        """``(C,)`` float32 normalisation standard deviations of the scaled values, in band order."""
        return np.array([b.std for b in self.bands], dtype=np.float32)

    def normalising_affine(self, scale: np.ndarray | None = None,
                           offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(gain, bias)``, each ``(C,)`` float32: a file value ``v`` of band ``c`` normalises to
        ``v * gain[c] + bias[c]`` = ``(v * scale[c] + offset[c] - mean[c]) / std[c]``, one multiply-add.

        Args:
            scale: ``(C,)`` per-band multiplier from file values to physical values, in band order (a file's
                own, :mod:`ofa_embed.raster.radiometry`); None: the modality's :attr:`scale` for every band.
            offset: ``(C,)`` per-band offset added after ``scale``; None: the modality's :attr:`offset`.
        """
        scales = np.full(self.num_bands, self.scale, np.float32) if scale is None else np.asarray(scale, np.float32)
        offsets = np.full(self.num_bands, self.offset, np.float32) if offset is None else np.asarray(offset, np.float32)
        return (scales / self.std).astype(np.float32), ((offsets - self.mean) / self.std).astype(np.float32)

    def band_index(self, label: str) -> int | None:
        """Position of the band named ``label`` (name or alias) in the canonical order, or None."""
        for i, band in enumerate(self.bands):
            if band.matches(label):
                return i
        return None

    def resolve_bands(self, labels: Sequence[str], *, source: str) -> list[int]:
        """Map band labels (in file order) to canonical positions.

        Args:
            labels: one label per file band, in file order.
            source: what the labels came from, for the error message (e.g. ``"--bands"``).

        Returns:
            Canonical band index for each file band.

        Raises:
            ModalityError: a label names no band of this modality, or a band is given twice.
        """
        positions: list[int] = []
        for label in labels:
            pos = self.band_index(label)
            if pos is None:
                raise ModalityError(
                    f"{source}: band {label!r} is not a {self.name} band "
                    f"(expected some of {', '.join(self.band_names)})"
                )
            if pos in positions:
                raise ModalityError(f"{source}: band {self.bands[pos].name} is given twice")
            positions.append(pos)
        return positions

    def to_metadata(self) -> dict[str, object]:
        """JSON-serialisable description stored with every embedding file."""
        return {
            "name": self.name,
            "bands": list(self.band_names),
            "wavelengths_um": [b.wavelength_um for b in self.bands],
            "scale": self.scale,
            "offset": self.offset,
            "units": self.units,
            "mean": [b.mean for b in self.bands],
            "std": [b.std for b in self.bands],
            "stats_source": self.stats_source,
        }


@functools.lru_cache(maxsize=4096)  # every band file's token meets every band name and alias
def _normalise_label(label: str) -> str:
    """Case-fold and drop separators and zero padding so ``"B02"``, ``"b2"`` and ``"B 2"`` agree."""
    key = re.sub(r"[\s_\-.]", "", label.strip().lower())
    return re.sub(r"^b0+(\d)", r"b\1", key)


