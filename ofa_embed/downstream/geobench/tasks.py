"""GEO-Bench v1.0 tasks: where each lies, what it scores, and how its bands map onto the sensor registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ofa_embed.errors import GeoBenchError

__all__ = ["BENCHMARK_DIRS", "GEOBENCH_TASKS", "LABEL_DATASET", "PARTITION_FILE", "REFERENCE_SOURCE", "SPLITS",
           "GeoBenchTask", "find_task_name", "task_name"]


BENCHMARK_DIRS = ("classification_v1.0", "segmentation_v1.0")
PARTITION_FILE = "default_partition.json"
SPLITS = ("train", "valid", "test")
LABEL_DATASET = "label"
REFERENCE_SOURCE = "DOFA-Base, RGB, frozen linear probe, as reported by torchgeo-bench"


@dataclass(frozen=True)
class GeoBenchTask:
    """One GEO-Bench v1.0 task and how its bands map onto the registry.

    Attributes:
        name: task folder name, e.g. ``"m-eurosat"``.
        benchmark: parent folder, ``classification_v1.0`` or ``segmentation_v1.0``.
        kind: ``classify``, ``multilabel`` or ``segment``.
        modality: registry modality the bands are fed as.
        bands: every band name the task stores -> registry band name, or None for a stored band not used.
        n_classes: classes (labels for multi-label).
        metric: reported metric: ``accuracy``, ``micro_map`` or ``miou``.
        value_scale: stored value * value_scale = the registry's file units (m-so2sat: reflectance -> DN).
        reference: published score of :data:`REFERENCE_SOURCE`, or None.
    """

    name: str
    benchmark: str
    kind: str
    modality: str
    bands: Mapping[str, str | None]
    n_classes: int
    metric: str
    value_scale: float = 1.0
    reference: float | None = None


_S2_STORED = ("01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red", "05 - Vegetation Red Edge",
              "06 - Vegetation Red Edge", "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
              "09 - Water vapour", "10 - SWIR - Cirrus", "11 - SWIR", "12 - SWIR")
_S2 = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
               strict=True))
_S2_NO_CIRRUS = {name: band for name, band in _S2.items() if band != "B10"}
_EUROSAT = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"),
                    strict=True))
_BRICK_KILN = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B07", "B8A", "B08", "B11", "B12", None, None, None),
                       strict=True))
_S1_SO2SAT = ("01 - VH.Real", "02 - VH.Imaginary", "03 - VV.Real", "04 - VV.Imaginary", "05 - VH.LEE Filtered",
              "06 - VV.LEE Filtered", "07 - VH.LEE Filtered.Real", "08 - VV.LEE Filtered.Imaginary")
_SO2SAT = {name: None for name in _S1_SO2SAT} | {
    name: band for name, band in _S2.items() if band not in ("B01", "B09", "B10")
}
_RGB = {"Red": "red", "Green": "green", "Blue": "blue"}
_CLS, _SEG = BENCHMARK_DIRS

GEOBENCH_TASKS: dict[str, GeoBenchTask] = {t.name: t for t in (
    GeoBenchTask("m-bigearthnet", _CLS, "multilabel", "sentinel2_l2a", _S2_NO_CIRRUS, 43, "micro_map", reference=0.680),
    GeoBenchTask("m-brick-kiln", _CLS, "classify", "sentinel2_l2a", _BRICK_KILN, 2, "accuracy", reference=0.974),
    GeoBenchTask("m-eurosat", _CLS, "classify", "sentinel2_l1c", _EUROSAT, 10, "accuracy", reference=0.962),
    GeoBenchTask("m-forestnet", _CLS, "classify", "rgbn",
                 {"04 - Red": "red", "03 - Green": "green", "02 - Blue": "blue", "05 - NIR": "nir",
                  "06 - SWIR1": None, "07 - SWIR2": None}, 12, "accuracy", reference=0.552),
    GeoBenchTask("m-pv4ger", _CLS, "classify", "rgb", _RGB, 2, "accuracy", reference=0.966),
    GeoBenchTask("m-so2sat", _CLS, "classify", "sentinel2_l1c", _SO2SAT, 17, "accuracy", value_scale=1e4,
                 reference=0.651),
    GeoBenchTask("m-pv4ger-seg", _SEG, "segment", "rgb", _RGB, 2, "miou"),
    GeoBenchTask("m-nz-cattle", _SEG, "segment", "rgb", _RGB, 2, "miou"),
    GeoBenchTask("m-NeonTree", _SEG, "segment", "rgb", _RGB | {"Canopy Height Model": None, "Neon": None}, 2, "miou"),
    GeoBenchTask("m-cashew-plantation", _SEG, "segment", "sentinel2_l2a", _S2_NO_CIRRUS | {"Cloud Probability": None},
                 7, "miou"),
    GeoBenchTask("m-SA-crop-type", _SEG, "segment", "sentinel2_l2a", _S2_NO_CIRRUS | {"Cloud Probability": None},
                 10, "miou"),
    GeoBenchTask("m-chesapeake-landcover", _SEG, "segment", "rgbn", _RGB | {"NearInfrared": "nir"}, 7, "miou"),
)}
_BY_LOWER_NAME = {name.lower(): name for name in GEOBENCH_TASKS}


def find_task_name(name: str) -> str | None:
    """The task's name as GEO-Bench spells it (``"m-eurosat"`` for ``"M-EuroSAT"``), None when unknown."""
    return _BY_LOWER_NAME.get(name.lower())


def task_name(name: str) -> str:
    """:func:`find_task_name`, raising :class:`GeoBenchError` for an unknown task."""
    found = find_task_name(name)
    if found is None:
        raise GeoBenchError(f"unknown GEO-Bench task {name!r}; the v1.0 tasks are {', '.join(GEOBENCH_TASKS)}")
    return found

