"""Sensors as data: the registry of modalities (bands, wavelengths, scaling, statistics, file naming) and
their detection.
"""

from ofa_embed.sensors.detection import (
    band_name_from_filename,
    choose_file_order,
    detect_band_file_modality,
    detect_modality,
    generic_descriptions,
    without_band_token,
)
from ofa_embed.sensors.registry import (
    CUSTOM,
    HYPERSPECTRAL_GRID_UM,
    MODALITIES,
    VALUE_KINDS,
    Band,
    FileOrder,
    Modality,
    ValueKind,
    custom_modality,
    get_modality,
    list_modalities,
    register_modality,
    registered_modality,
    unregister_modality,
)

__all__ = [
    "Band", "CUSTOM", "Modality", "MODALITIES", "custom_modality", "get_modality", "list_modalities",
    "register_modality", "registered_modality", "unregister_modality", "ValueKind", "VALUE_KINDS",
    "band_name_from_filename", "without_band_token", "detect_band_file_modality", "detect_modality",
    "generic_descriptions", "HYPERSPECTRAL_GRID_UM", "FileOrder", "choose_file_order",
]
