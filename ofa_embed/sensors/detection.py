"""Which sensor a scene is: from band descriptions, file names and band counts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

from ofa_embed.errors import ModalityError
from ofa_embed.sensors.registry import MODALITIES, Modality

__all__ = ["band_name_from_filename", "detect_modality", "generic_descriptions"]

# Band counts that identify a modality when nothing else does; hyperspectral needs wavelengths instead.
_BY_BAND_COUNT = {13: "sentinel2_l1c", 12: "sentinel2_l2a", 9: "sentinel2_9band", 7: "landsat_oli",
                  2: "sentinel1_grd", 4: "rgbn", 3: "rgb"}
_MIN_HYPERSPECTRAL_BANDS = 20


# the band token ends the stem after a separator: "_B02", "-B8A_20m", ".B4", or ", B08" (tutorial exports)
_BAND_TOKEN = re.compile(r"(?:^|[_\-.\s,])(B\d{1,2}A?)(?:_\d+m)?$", re.IGNORECASE)


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

    Evidence, strongest first: many bands with wavelengths (hyperspectral); band descriptions, which
    decide band identity whenever they are given (any order, any subset: ``nir, red, green`` is ``rgbn``
    without blue; descriptions naming no known band are an error, generic ones like ``Band 1`` are
    ignored); a file-name pattern; then the band count, whose guess the value-range check of
    :func:`~ofa_embed.raster.scene.open_scene` guards.

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
    if has_wavelengths and band_count >= _MIN_HYPERSPECTRAL_BANDS:
        return MODALITIES["hyperspectral"]
    if labels and len(labels) == band_count and not generic_descriptions(labels):
        return _from_descriptions(labels, name, source)
    for modality in MODALITIES.values():
        if modality.num_bands == band_count or modality.spectral_resample:
            if any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
                if not modality.spectral_resample or has_wavelengths:
                    return modality
    token = _BAND_TOKEN.search(PurePath(source).stem)
    if band_count == 1 and token:
        raise ModalityError(
            f"{source}: one band ({token.group(1).upper()}) of a band-per-file product; give all its band files "
            "together (files sharing a product id become one scene), or their folder, or --stack to stack files "
            "named otherwise"
        )
    for modality in MODALITIES.values():
        if not modality.spectral_resample and any(re.search(p, name, re.IGNORECASE) for p in modality.filename_patterns):
            raise ModalityError(
                f"{source}: its name or sensor tags say {modality.name} but it has {band_count} of its "
                f"{modality.num_bands} bands; name them in file order with --bands (choosing among "
                f"{', '.join(modality.band_names)})"
            )
    if band_count in _BY_BAND_COUNT:
        return MODALITIES[_BY_BAND_COUNT[band_count]]
    raise ModalityError(
        f"{source}: {band_count} band(s) fit no known modality; pass --modality "
        f"({', '.join(MODALITIES)}) and, for a subset of its bands, --bands"
    )


# descriptions GDAL and common tools write that say nothing about the band ("Band 1", "b2", "layer_3")
_GENERIC = re.compile(r"(band|layer|channel|b)[ _\-]?\d+", re.IGNORECASE)


def generic_descriptions(labels: Sequence[str]) -> bool:
    """Whether band descriptions say nothing about the bands (``Band 1``, ``layer_2``; empty ones count too)."""
    return all(not label or _GENERIC.fullmatch(label.strip()) and all(m.band_index(label) is None for m in MODALITIES.values())
               for label in labels)


def _from_descriptions(labels: Sequence[str], name: str, source: str) -> Modality:
    """The modality whose bands the descriptions name: complete where one fits exactly, else the one
    registered sensor they are a subset of; the file name breaks ties; several left is an error.
    """
    fitting = [m for m in MODALITIES.values() if not m.spectral_resample and _names_distinct_bands(m, labels)]
    if not fitting:
        unknown = [x for x in labels if all(m.band_index(x) is None for m in MODALITIES.values())]
        what = f"band description(s) {', '.join(map(repr, unknown))} name no known band" if unknown else (
            f"band descriptions {', '.join(labels)} are not bands of one sensor")
        raise ModalityError(f"{source}: {what}; name the file's bands with --bands (and --modality), or give "
                            "--wavelengths for a sensor not in the registry")
    # the file name first, then descriptions that are a sensor's own band names (``B4`` is Landsat's, ``B04``
    # Sentinel-2's, ``nir`` the RGB-NIR band's) rather than aliases
    evidence = {m.name: (sum(bool(re.search(p, name, re.IGNORECASE)) for p in m.filename_patterns),
                         sum(x in m.band_names for x in labels)) for m in fitting}
    best = max(evidence.values())
    pool = [m for m in fitting if evidence[m.name] == best]
    complete = [m for m in pool if m.num_bands == len(labels)]
    if len(complete) == 1:
        return complete[0]
    if len(pool) == 1:
        return pool[0]
    raise ModalityError(f"{source}: band descriptions {', '.join(labels)} fit {', '.join(m.name for m in pool)}; "
                        "pass --modality")


def _names_distinct_bands(modality: Modality, labels: Sequence[str]) -> bool:
    positions = [modality.band_index(label) for label in labels]
    return None not in positions and len(set(positions)) == len(positions)
