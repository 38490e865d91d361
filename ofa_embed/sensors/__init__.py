"""Sensors as data: the registry of modalities (bands, wavelengths, scaling, statistics) and their detection."""

from ofa_embed.sensors.detection import band_name_from_filename, detect_modality, generic_descriptions
from ofa_embed.sensors.registry import (
    CUSTOM,
    HYPERSPECTRAL_GRID_UM,
    MODALITIES,
    Band,
    Modality,
    custom_modality,
    get_modality,
    list_modalities,
)

__all__ = [
    "Band", "CUSTOM", "Modality", "MODALITIES", "custom_modality", "get_modality", "list_modalities",
    "band_name_from_filename", "detect_modality", "generic_descriptions",
    "HYPERSPECTRAL_GRID_UM",
]
