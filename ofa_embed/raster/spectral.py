"""Where a file's bands sit in the spectrum: their wavelength tags, and the linear resampling in wavelength
that maps a hyperspectral file's bands onto its modality's wavelength grid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import rasterio

from ofa_embed.sensors import Modality

__all__ = ["band_wavelengths", "spectral_matrix"]


def band_wavelengths(dataset: rasterio.io.DatasetReader) -> list[float] | None:
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


def spectral_matrix(modality: Modality, wavelengths: Sequence[float]) -> np.ndarray:
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
