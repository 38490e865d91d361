"""Which sensor a scene is: from band descriptions, file names and band counts."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ofa_embed.errors import ModalityError
from ofa_embed.sensors.registry import MODALITIES, Modality

__all__ = ["band_name_from_filename", "detect_modality"]

# Band counts that identify a modality when nothing else does; hyperspectral needs wavelengths instead.
_BY_BAND_COUNT = {13: "sentinel2_l1c", 12: "sentinel2_l2a", 9: "sentinel2_9band", 7: "landsat_oli",
                  2: "sentinel1_grd", 4: "rgbn", 3: "rgb"}
_MIN_HYPERSPECTRAL_BANDS = 20


_BAND_TOKEN = re.compile(r"(?:^|[_\-.])(B\d{1,2}A?)(?:_\d+m)?$", re.IGNORECASE)


def band_name_from_filename(stem: str) -> str | None:
    """Band token at the end of a file stem: ``"s2_B02"`` -> ``"B02"``, ``"T33_B8A_20m"`` -> ``"B8A"``,
    ``"LC08_..._B4"`` -> ``"B4"``; None when the stem carries no band token (e.g. ``"..._BQA"``).
    """
    match = _BAND_TOKEN.search(stem)
    return match.group(1).upper() if match else None


def detect_modality(
    band_count: int,
    *,
    descriptions: Sequence[str | None] = (),
    name: str = "",
    has_wavelengths: bool = False,
    source: str = "",
) -> Modality:
    """Infer the modality of a scene.

    Evidence, strongest first: band descriptions that all name bands of one modality with the same
    count; a file-name pattern; then the band count (hyperspectral: many bands with wavelengths).

    Args:
        band_count: number of bands in the file (or band files in a folder).
        descriptions: band descriptions (or band tokens of band files), in file order.
        name: file or folder name, matched against the modalities' file-name patterns.
        has_wavelengths: whether every band carries a centre wavelength.
        source: what to call the scene in error messages (default: ``name``).

    Raises:
        ModalityError: nothing identifies the modality; the message says how to choose one.
    """
    source = source or name or "scene"
    labels = [d for d in descriptions if d]
    if labels and len(labels) == band_count:
        complete = [
            m for m in MODALITIES.values()
            if not m.spectral_resample and m.num_bands == band_count and all(m.band_index(x) is not None for x in labels)
        ]
        if len(complete) == 1:
            return complete[0]
    if has_wavelengths and band_count >= _MIN_HYPERSPECTRAL_BANDS:
        return MODALITIES["hyperspectral"]
    for modality in MODALITIES.values():
        if modality.num_bands == band_count or modality.spectral_resample:
            if any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
                if not modality.spectral_resample or has_wavelengths:
                    return modality
    for modality in MODALITIES.values():
        if not modality.spectral_resample and any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
            raise ModalityError(
                f"{source}: its name or sensor tags say {modality.name} but it has {band_count} of its "
                f"{modality.num_bands} bands; name them with --bands (e.g. --bands "
                f"{','.join(modality.band_names[:band_count])})"
            )
    if band_count in _BY_BAND_COUNT:
        return MODALITIES[_BY_BAND_COUNT[band_count]]
    raise ModalityError(
        f"{source}: {band_count} band(s) fit no known modality; pass --modality "
        f"({', '.join(MODALITIES)}) and, for a subset of its bands, --bands"
    )
