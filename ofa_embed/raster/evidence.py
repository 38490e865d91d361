"""What a raster file says about itself: band names, wavelengths, sensor tags and a sensor's file name.

A file that says nothing of the kind is identified by its band count alone (see
:func:`~ofa_embed.sensors.detect_modality`), a guess; callers that hold a better record (a store made from
files of the same layout) use :func:`describe_evidence` to tell the two apart before they guess.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from ofa_embed.sensors import MODALITIES, generic_descriptions

__all__ = ["FileEvidence", "SENSOR_TAGS", "describe_evidence", "sensor_evidence"]

# dataset tags in which products name their sensor (SPACECRAFT_NAME=Sentinel-2A, PRODUCT_TYPE=S2MSI2A, ...)
SENSOR_TAGS = frozenset({"SPACECRAFT_NAME", "SPACECRAFT_ID", "PRODUCT_TYPE", "SENSOR", "SENSOR_ID", "PLATFORM",
                         "MISSION"})


@dataclass(frozen=True)
class FileEvidence:
    """What one multi-band raster says about its bands.

    Attributes:
        band_count: number of bands.
        dtype: numpy name of the first band's data type (``"uint16"``).
        named_bands: whether its band descriptions name bands (not ``Band 1`` or empty).
        wavelengths: whether its bands carry wavelength tags.
        sensor_named: whether its name or sensor tags match a registered sensor's file-name patterns.
    """

    band_count: int
    dtype: str
    named_bands: bool
    wavelengths: bool
    sensor_named: bool

    @property
    def says_what_it_is(self) -> bool:
        """Whether anything but the band count identifies the file's sensor or bands."""
        return self.named_bands or self.wavelengths or self.sensor_named


def sensor_evidence(stem: str, tags: dict[str, str]) -> str:
    """The text a file's sensor is recognised in: its name and the values of its sensor tags."""
    return " ".join([stem, *(v for k, v in tags.items() if k.upper() in SENSOR_TAGS)])


def describe_evidence(path: Path) -> FileEvidence | None:
    """What ``path`` says about itself; None when it is not a single readable raster file (a folder, an
    archive, a missing file: those are reported by the scene's own opening).
    """
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as dataset:
                descriptions = [d or "" for d in dataset.descriptions]
                band_tags = [{k.lower() for k in dataset.tags(i)} for i in range(1, dataset.count + 1)]
                tags = dataset.tags()
                count, dtype = dataset.count, dataset.dtypes[0]
    except RasterioError:
        return None
    wavelengths = all("wavelength" in keys for keys in band_tags) or "wavelength" in {k.lower() for k in tags}
    text = sensor_evidence(path.stem, tags)
    named = any(re.search(p, text, re.IGNORECASE) for m in MODALITIES.values() for p in m.filename_patterns)
    return FileEvidence(count, dtype, not generic_descriptions(descriptions), wavelengths, named)
