"""GEO-Bench v1.0 with the frozen backbone: linear probes on its 6 classification and 6 segmentation tasks.

Reads a GEO-Bench download as it lies on disk (no network, no ``geobench`` package), embeds every sample
with the frozen backbone and fits linear probes: a logistic probe on pooled embeddings for
classification, a linear layer on patch tokens for segmentation. Scores come with bootstrapped 95 %
intervals and sit beside published figures of the closest public model.

On-disk format (GEO-Bench v1.0)
-------------------------------
Learned from the public reader of ServiceNow/geo-bench (``geobench/dataset.py``: ``write_sample_hdf5``,
``load_sample_hdf5``, ``Partition.save``, ``_load_band_stats``; ``geobench/label.py``; the dataset
converters under ``geobench/benchmark/dataset_converters/``; ``geobench/benchmark/create_benchmark.py``)
and the independent reader of torchgeo/torchgeo-bench (``datasets/geobench_v1.py``, ``_metadata.py``)::

    ROOT/classification_v1.0/m-eurosat/          one folder per task (same for segmentation_v1.0/...)
        default_partition.json                   {"train": [names], "valid": [names], "test": [names]}
        0.01x_train_partition.json ...           few-shot partitions (not used here)
        band_stats.json                          {band name: {min, max, mean, std, ...}} (not used here)
        task_specs.pkl                           pickled geobench classes: never read here
        <sample name>.hdf5                       one file per sample

* A sample file holds one HDF5 dataset per band, named by the band's GEO-Bench name (``"02 - Blue"``,
  ``"Red"``, ...), followed by ``_YYYY-MM-DD`` when the band carries a date (m-forestnet,
  m-cashew-plantation). Bands are ``(H, W)`` (``(H, W, K)`` for multi-channel bands such as the
  NeonTree hyperspectral cube) in stored units: digital numbers, reflectance or 8-bit values per task.
* Segmentation tasks store the mask as one more dataset named ``"label"``: ``(H, W)`` class indices.
* The file attribute ``"pickle"`` holds ``str(pickle.dumps(d))`` (a ``b'...'`` literal) of a dict with
  ``"bands_order"`` (dataset names in band order), per-band metadata (band descriptions as geobench
  classes, affine transform, CRS, date) and, for classification, ``"label"``: an ``int`` class index,
  or for multi-label m-bigearthnet a 43-long 0/1 array. The pickle is decoded by a restricted
  unpickler that builds plain data (numbers, strings, dates, numpy arrays without objects) and turns
  every geobench, affine and rasterio object into an inert placeholder; anything else is refused.
  The torchgeo-bench reader also accepts the same fields as JSON in a ``"metadata_json"`` attribute; so
  does this one.

Known errors of the published data, corrected here: m-eurosat stores Sentinel-2 band names in ESA
order while its channels have B8A last (geo-bench issue #28, torchgeo PR #2480); m-brick-kiln stores the
13 Sentinel-2 names but its channels are B1, B2, B3, B4, B5, B7, B8A, B8, B11, B12 and 8-bit TCI
red/green/blue (geo-bench issue #29; torchgeo-bench band statistics agree: the last three peak at 255).

Band mapping onto the modality registry (stored name -> registry band; "-" = stored, not used)
----------------------------------------------------------------------------------------------
=======================  ==============  =====================================================================
task                     modality        bands
=======================  ==============  =====================================================================
m-eurosat                sentinel2_l1c   13 bands, channel order corrected (see above)
m-brick-kiln             sentinel2_l2a   10 bands (corrected); TCI channels "10"-"12" -; B06, B09 missing
m-bigearthnet            sentinel2_l2a   12 bands (L2A, no B10)
m-so2sat                 sentinel2_l1c   the 10 Sentinel-2 bands B02-B08, B8A, B11, B12, stored as
                                         reflectance (x 10000 to digital numbers); the 8 Sentinel-1 bands -
m-forestnet              rgbn            "04 - Red", "03 - Green", "02 - Blue", "05 - NIR" (8-bit Landsat-8
                                         composites); "06 - SWIR1", "07 - SWIR2" -
m-pv4ger, m-pv4ger-seg,  rgb             "Red", "Green", "Blue" (8-bit aerial); NeonTree's "Canopy Height
m-nz-cattle, m-NeonTree                  Model" and hyperspectral "Neon" -
m-chesapeake-landcover   rgbn            "Red", "Green", "Blue", "NearInfrared" (8-bit NAIP)
m-cashew-plantation,     sentinel2_l2a   12 bands; "Cloud Probability" -
m-SA-crop-type
=======================  ==============  =====================================================================

Stored values become physical values and are normalised with the registry's scale, offset, mean and std,
exactly as :meth:`ofa_embed.scene.Scene.read` does; registry bands a task lacks are 0 after
normalisation (the band mean), as with ``extract --bands``.

Protocol
--------
* Tile size: each image is resized (bilinear, antialiased) to the multiple of the patch size nearest to
  its native size (at least one patch): 64 -> 64, 120 -> 128, 332 -> 336, 500 -> 496. Masks stay native.
* Classification: pooled embeddings of train + valid fit :func:`~ofa_embed.downstream.probe.fit_probe`
  (regularisation by inner CV on train + valid), scored on test: accuracy, or micro mAP for
  m-bigearthnet (labels that never or always occur in train + valid cannot be fitted and are left out).
* Segmentation: patch tokens of train + valid (at most ``TRAIN_PATCH_BUDGET`` patches, sampled evenly
  over images) train one ``nn.Linear(D, classes)`` with class-balanced cross-entropy against each patch's
  majority pixel class (AdamW, ``PATCH_PROBE_STEPS`` steps, seeded). Test logits are upsampled bilinearly
  to the native mask; mIoU over classes present in truth or prediction, intervals from resampling test
  images.
* Reference figures: DOFA-Base, RGB input, frozen linear probe, as reported by torchgeo-bench (classification
  only; no comparable segmentation figure is given).
"""

from __future__ import annotations

import ast
import collections
import datetime
import io
import json
import logging
import pickle
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ofa_embed.downstream.metrics import CONFIDENCE, Estimate, evaluate, json_safe
from ofa_embed.downstream.probe import fit_probe
from ofa_embed.errors import OFAEmbedError, first_line
from ofa_embed.extraction import load_weights, resolve_device
from ofa_embed.modalities import Modality, get_modality

__all__ = [
    "GEOBENCH_TASKS", "REFERENCE_SOURCE", "GeoBenchError", "GeoBenchReport", "GeoBenchResult", "GeoBenchSample",
    "GeoBenchTask", "TaskFiles", "find_tasks", "geobench", "mean_iou", "open_task", "read_sample",
]

logger = logging.getLogger(__name__)

BENCHMARK_DIRS = ("classification_v1.0", "segmentation_v1.0")
PARTITION_FILE = "default_partition.json"
SPLITS = ("train", "valid", "test")
LABEL_DATASET = "label"
REFERENCE_SOURCE = "DOFA-Base, RGB, frozen linear probe, as reported by torchgeo-bench"
TRAIN_PATCH_BUDGET = 200_000  # patch tokens kept to fit a segmentation probe: ~150 MB at D = 192
PATCH_PROBE_STEPS = 300
PATCH_PROBE_BATCH = 4096
PATCH_PROBE_LR = 1e-2

ProgressCallback = Callable[[str, int, int], None]


class GeoBenchError(OFAEmbedError, ValueError):
    """A GEO-Bench root, task folder, partition or sample file is missing or unreadable."""


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
    bands: dict[str, str | None]
    n_classes: int
    metric: str
    value_scale: float = 1.0
    reference: float | None = None


_S2_STORED = ("01 - Coastal aerosol", "02 - Blue", "03 - Green", "04 - Red", "05 - Vegetation Red Edge",
              "06 - Vegetation Red Edge", "07 - Vegetation Red Edge", "08 - NIR", "08A - Vegetation Red Edge",
              "09 - Water vapour", "10 - SWIR - Cirrus", "11 - SWIR", "12 - SWIR")
_S2 = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")))
_S2_NO_CIRRUS = {name: band for name, band in _S2.items() if band != "B10"}
_EUROSAT = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")))
_BRICK_KILN = dict(zip(_S2_STORED, ("B01", "B02", "B03", "B04", "B05", "B07", "B8A", "B08", "B11", "B12", None, None, None)))
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


# --- sample metadata: a restricted unpickler -------------------------------------------------------------
class _Opaque:
    """Stands in for a geobench band description, affine transform or CRS: accepts their state, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # numpy would restore object arrays by unpickling again, outside this unpickler
        raise pickle.UnpicklingError("object arrays are not GEO-Bench metadata")
    return dtype


def _plain_array(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array subclass {subtype!r} is not GEO-Bench metadata")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


def _plain_scalar(dtype: np.dtype, data: bytes) -> np.generic:
    return np.frombuffer(data, dtype=_plain_dtype(dtype), count=1)[0]


_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _plain_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("datetime", name): getattr(datetime, name) for name in ("date", "datetime", "time", "timedelta", "timezone")},
    # data written by numpy 1.x names numpy.core, by numpy 2.x numpy._core
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _plain_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _plain_scalar for core in ("core", "_core")},
}
_OPAQUE_PACKAGES = ("geobench", "ccb", "affine", "rasterio")  # ccb: geobench's former name


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_GLOBALS:
            return _DATA_GLOBALS[(module, name)]
        if module.split(".")[0] in _OPAQUE_PACKAGES:
            return _Opaque
        raise pickle.UnpicklingError(f"{module}.{name} is not part of GEO-Bench sample metadata")


def _pickle_bytes(value: Any) -> bytes:
    """The pickle in a ``"pickle"`` attribute: normally the text ``b'...'``, raw bytes in some copies."""
    if isinstance(value, np.void):
        return value.tobytes()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value)
        if not value.startswith((b"b'", b'b"')):
            return value
        value = value.decode("ascii")
    literal = ast.literal_eval(value)
    if not isinstance(literal, bytes):
        raise TypeError("the 'pickle' attribute is not a bytes literal")
    return literal


def _metadata(path: Path, attrs: h5py.AttributeManager) -> dict[str, Any]:
    """``bands_order`` and ``label`` (when stored) of a sample file; {} when it has no metadata attribute."""
    try:
        if "metadata_json" in attrs:
            meta = json.loads(attrs["metadata_json"])
        elif "pickle" in attrs:
            meta = _MetadataUnpickler(io.BytesIO(_pickle_bytes(attrs["pickle"]))).load()
        else:
            return {}
    except (pickle.UnpicklingError, ValueError, SyntaxError, TypeError, EOFError, AttributeError, IndexError, KeyError) as exc:
        raise GeoBenchError(f"{path}: unreadable sample metadata ({first_line(exc)})") from None
    if not isinstance(meta, dict):
        raise GeoBenchError(f"{path}: sample metadata is not a mapping")
    return meta


# --- samples ---------------------------------------------------------------------------------------------
_DATE_SUFFIX = re.compile(r"_\d{4}-\d{2}-\d{2}$")


@dataclass
class GeoBenchSample:
    """One GEO-Bench sample as stored.

    Attributes:
        name: sample name (file stem).
        image: ``(C, H, W)`` float32 stored values of the bands read, on the grid of the finest band
            (coarser bands are resized bilinearly).
        band_names: GEO-Bench name of each channel of ``image`` (date suffix removed).
        stored_bands: names of every band in the file, in band order (date suffix removed).
        label: classification: ``int`` class index; multi-label: ``(L,)`` int64 0/1; segmentation:
            ``(H, W)`` int64 class indices; None when the file stores none.
        split: ``train``, ``valid`` or ``test`` from the partition; None when read without one.
    """

    name: str
    image: np.ndarray
    band_names: list[str]
    stored_bands: list[str]
    label: int | np.ndarray | None
    split: str | None = None


def _label(path: Path, raw: Any) -> int | np.ndarray | None:
    if raw is None:
        return None
    array = np.asarray(raw)
    if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
        raise GeoBenchError(f"{path}: label {raw!r} is not a class index or a 0/1 vector")
    return int(array) if array.ndim == 0 else array.astype(np.int64)


def read_sample(path: str | Path, bands: Sequence[str] | None = None) -> GeoBenchSample:
    """Read one GEO-Bench ``.hdf5`` sample.

    Args:
        path: the sample file.
        bands: GEO-Bench band names to read, in the order wanted (``"04 - Red"`` also matches a dated
            ``"04 - Red_2016-01-01"``; the first date wins); None reads every band in band order.

    Raises:
        GeoBenchError: the file is missing or not HDF5, its metadata is unreadable, or a band is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise GeoBenchError(f"{path}: sample file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise GeoBenchError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    with handle:
        meta = _metadata(path, handle.attrs)
        keys = [k for k in meta.get("bands_order", handle.keys()) if k != LABEL_DATASET]
        by_name: dict[str, str] = {}
        for key in keys:
            by_name.setdefault(_DATE_SUFFIX.sub("", key), key)
        wanted = list(by_name) if bands is None else list(bands)
        if missing := [b for b in wanted if b not in by_name]:
            raise GeoBenchError(f"{path}: band {missing[0]!r} is not in the file (it has {', '.join(by_name)})")
        try:
            channels = [_channels(handle[by_name[b]][()]) for b in wanted]
            mask = handle[LABEL_DATASET][()] if LABEL_DATASET in handle else meta.get("label")
        except (OSError, KeyError) as exc:
            raise GeoBenchError(f"{path}: unreadable band data ({first_line(exc)})") from None
    image, names = _stack(channels, wanted)
    return GeoBenchSample(path.stem, image, names, list(by_name), _label(path, mask))


def _channels(data: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, K)`` band data -> ``(K, H, W)`` float32."""
    data = np.asarray(data, dtype=np.float32)
    return data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)


def _stack(channels: list[np.ndarray], names: list[str]) -> tuple[np.ndarray, list[str]]:
    if not channels:
        return np.zeros((0, 0, 0), np.float32), []
    height = max(c.shape[1] for c in channels)
    width = max(c.shape[2] for c in channels)
    resized = [c if c.shape[1:] == (height, width) else _resize(c, (height, width)) for c in channels]
    expanded = [name for name, c in zip(names, channels) for _ in range(c.shape[0])]
    return np.concatenate(resized), expanded


def _resize(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(data))[None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)[0].numpy()


# --- tasks on disk ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFiles:
    """A task folder whose partition and sample files were checked.

    Attributes:
        task: the task's description.
        path: the task folder.
        partition: split -> sample names from ``default_partition.json``.
    """

    task: GeoBenchTask
    path: Path
    partition: dict[str, list[str]]

    def sample_path(self, name: str) -> Path:
        return self.path / f"{name}.hdf5"

    def samples(self, split: str, bands: Sequence[str] | None = None) -> Iterator[GeoBenchSample]:
        """Read the samples of ``split`` in partition order (see :func:`read_sample` for ``bands``)."""
        for name in self.partition.get(split, []):
            sample = read_sample(self.sample_path(name), bands)
            sample.split = split
            yield sample


def find_tasks(root: str | Path) -> dict[str, Path]:
    """GEO-Bench v1.0 task folders under ``root``: task name -> folder.

    Raises:
        GeoBenchError: ``root`` is missing or holds no task folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise GeoBenchError(f"{root}: GEO-Bench root not found (expected a folder holding {' or '.join(BENCHMARK_DIRS)})")
    found: dict[str, Path] = {}
    for benchmark in BENCHMARK_DIRS:
        folder = root / benchmark
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            name = _BY_LOWER_NAME.get(child.name.lower())
            if child.is_dir() and name and GEOBENCH_TASKS[name].benchmark == benchmark:
                found[name] = child
    if not found:
        raise GeoBenchError(
            f"{root}: no GEO-Bench v1.0 task folders (expected e.g. {BENCHMARK_DIRS[0]}/m-eurosat or "
            f"{BENCHMARK_DIRS[1]}/m-pv4ger-seg)"
        )
    return found


def _read_partition(folder: Path) -> dict[str, list[str]]:
    path = folder / PARTITION_FILE
    if not path.is_file():
        raise GeoBenchError(f"{folder}: partition file {PARTITION_FILE} missing (incomplete download?)")
    try:
        partition = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeoBenchError(f"{path}: unreadable partition file ({first_line(exc)})") from None
    if (not isinstance(partition, dict) or not set(partition) <= set(SPLITS)
            or not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in partition.values())):
        raise GeoBenchError(f"{path}: expected {{split: [sample names]}} with splits among {', '.join(SPLITS)}")
    for split in ("train", "test"):
        if not partition.get(split):
            raise GeoBenchError(f"{path}: the {split} split is empty")
    return partition


def open_task(folder: str | Path, task: str | None = None) -> TaskFiles:
    """Check a task folder: its partition, and a sample file for every name it lists.

    Args:
        folder: the task folder, e.g. ``ROOT/classification_v1.0/m-eurosat``.
        task: the task name (case-insensitive); default: the folder's name.

    Raises:
        GeoBenchError: unknown task, partition missing or malformed, or listed samples without a file.
    """
    folder = Path(folder)
    name = _task_name(task or folder.name)
    partition = _read_partition(folder)
    listed = [n for split in SPLITS for n in partition.get(split, [])]
    missing = [n for n in listed if not (folder / f"{n}.hdf5").is_file()]
    if missing:
        raise GeoBenchError(
            f"{folder}: {len(missing)} of {len(listed)} samples listed in {PARTITION_FILE} have no .hdf5 file "
            f"(first: {missing[0]}.hdf5; incomplete download?)"
        )
    return TaskFiles(GEOBENCH_TASKS[name], folder, partition)


def _task_name(name: str) -> str:
    if name.lower() not in _BY_LOWER_NAME:
        raise GeoBenchError(f"unknown GEO-Bench task {name!r}; the v1.0 tasks are {', '.join(GEOBENCH_TASKS)}")
    return _BY_LOWER_NAME[name.lower()]


# --- normalisation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Which stored bands feed which registry band, and the per-band affine to normalised values."""

    modality: Modality
    stored: list[str]
    positions: list[int]
    gain: np.ndarray
    bias: np.ndarray

    @classmethod
    def of(cls, task: GeoBenchTask) -> _Layout:
        modality = get_modality(task.modality)
        used = {name: band for name, band in task.bands.items() if band}
        positions = modality.resolve_bands(list(used.values()), source=f"GEO-Bench {task.name}")
        gain, bias = modality.normalising_affine()
        gain = gain[positions] * np.float32(task.value_scale)  # stored units -> the registry's file units
        return cls(modality, list(used), positions, gain, bias[positions])

    def normalise(self, sample: GeoBenchSample) -> np.ndarray:
        """``(C_stored, H, W)`` stored values -> ``(C_modality, H, W)`` normalised, missing bands and
        non-finite values 0 (the band mean)."""
        out = np.zeros((self.modality.num_bands, *sample.image.shape[1:]), np.float32)
        out[self.positions] = sample.image * self.gain[:, None, None] + self.bias[:, None, None]
        out[~np.isfinite(out)] = 0.0
        return out


def _check_bands(files: TaskFiles, sample: GeoBenchSample) -> None:
    unknown = [b for b in sample.stored_bands if b not in files.task.bands]
    if unknown:
        raise GeoBenchError(
            f"{files.sample_path(sample.name)}: band {unknown[0]!r} is not a {files.task.name} band "
            f"(expected some of {', '.join(files.task.bands)})"
        )


def _tile_size(size: int, patch: int) -> int:
    """The multiple of ``patch`` nearest to ``size``, at least ``patch``."""
    return max(patch, int(size / patch + 0.5) * patch)


def _image_batches(
    files: TaskFiles, splits: Sequence[str], layout: _Layout, tile: tuple[int, int], batch_size: int,
    progress: Callable[[int], None],
) -> Iterator[tuple[torch.Tensor, list[GeoBenchSample]]]:
    """Normalised ``(B, C, tile_h, tile_w)`` batches and their samples, split after split."""
    batch: list[GeoBenchSample] = []
    images: list[torch.Tensor] = []
    for split in splits:
        for sample in files.samples(split, layout.stored):
            _check_bands(files, sample)
            image = torch.from_numpy(layout.normalise(sample))[None]
            if image.shape[-2:] != tile:
                image = F.interpolate(image, size=tile, mode="bilinear", align_corners=False, antialias=True)
            batch.append(sample)
            images.append(image)
            if len(batch) == batch_size:
                yield torch.cat(images), batch
                progress(len(batch))
                batch, images = [], []
    if batch:
        yield torch.cat(images), batch
        progress(len(batch))


# --- probes and metrics ----------------------------------------------------------------------------------
def mean_iou(confusions: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean intersection over union with a bootstrap interval over images.

    Args:
        confusions: ``(N, C, C)`` pixel counts per test image, rows = truth, columns = prediction.
        n_boot: bootstrap replicates resampling images (0: no interval, NaN bounds).

    Returns:
        mIoU over the classes present in truth or prediction (IoU = TP / (TP + FP + FN)), and its
        :data:`~ofa_embed.downstream.metrics.CONFIDENCE` percentile interval.
    """
    confusions = np.asarray(confusions, dtype=np.float64)
    n_images, n_classes = confusions.shape[:2]
    flat = confusions.reshape(n_images, n_classes * n_classes)

    def miou(totals: np.ndarray) -> np.ndarray:
        matrices = totals.reshape(-1, n_classes, n_classes)
        tp = np.diagonal(matrices, axis1=1, axis2=2)
        union = matrices.sum(1) + matrices.sum(2) - tp
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        return np.nanmean(iou, axis=1)

    value = float(miou(flat.sum(0, keepdims=True))[0])
    if n_boot == 0:
        return Estimate(value, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, (n_boot, n_images))
    weights = np.stack([np.bincount(row, minlength=n_images) for row in draws]).astype(np.float64)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(miou(weights @ flat), [tail, 100 - tail])
    return Estimate(value, float(low), float(high))


def _majority_patch_class(mask: np.ndarray, tile: tuple[int, int], patch: int, n_classes: int) -> torch.Tensor:
    """``(H, W)`` class mask -> ``(tile_h / P, tile_w / P)`` most frequent class per patch (ties: lowest)."""
    resized = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=tile, mode="nearest")[0, 0].long()
    shares = F.avg_pool2d(F.one_hot(resized, n_classes).permute(2, 0, 1).float()[None], patch)[0]
    return shares.argmax(0)


class _PatchProbe(nn.Module):
    """Standardised patch tokens -> class logits: ``(..., D)`` -> ``(..., C)``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.numel(), n_classes)
        nn.init.zeros_(self.linear.weight)  # a convex problem: a fixed start makes the fit seed-free
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear((tokens - self.mean) / self.std)


def _fit_patch_probe(tokens: np.ndarray, targets: np.ndarray, n_classes: int, seed: int) -> _PatchProbe:
    """Class-balanced cross-entropy, AdamW on minibatches of patch tokens ``(M, D)`` with targets ``(M,)``."""
    x, y = torch.from_numpy(tokens), torch.from_numpy(targets)
    probe = _PatchProbe(x.mean(0), x.std(0).clamp_min(1e-6), n_classes)
    counts = torch.bincount(y, minlength=n_classes).float()
    weights = torch.where(counts > 0, len(y) / (counts.clamp_min(1) * (counts > 0).sum()), torch.zeros_like(counts))
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimiser = torch.optim.AdamW(probe.parameters(), lr=PATCH_PROBE_LR, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(PATCH_PROBE_STEPS):
        index = torch.randint(len(y), (min(PATCH_PROBE_BATCH, len(y)),), generator=generator)
        optimiser.zero_grad()
        loss_fn(probe(x[index]), y[index]).backward()
        optimiser.step()
    return probe.eval()


# --- the benchmark ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeoBenchResult:
    """One task's score.

    Attributes:
        task: task name; ``kind``: ``classify``, ``multilabel`` or ``segment``.
        metric: ``accuracy``, ``micro_map`` or ``miou``; ``value``, ``low``, ``high``: score and 95 % interval.
        n_train: train + valid samples the probe was fitted on; ``n_test``: samples scored.
        reference: published score of :data:`REFERENCE_SOURCE`, or None.
        modality: registry modality the bands were fed as; ``tile_size``: ``(H, W)`` model input in pixels.
        seconds: wall time of the task.
    """

    task: str
    kind: str
    metric: str
    value: float
    low: float
    high: float
    n_train: int
    n_test: int
    reference: float | None
    modality: str
    tile_size: tuple[int, int]
    seconds: float


@dataclass
class GeoBenchReport:
    """Scores of one run, one row per task (classification tasks first)."""

    root: Path
    weights_hash: str
    weights_source: str
    pretrained: bool
    model: str
    device: str
    n_boot: int
    rows: list[GeoBenchResult] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(GeoBenchResult.__dataclass_fields__))

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON types (NaN as None)."""
        return json_safe({
            "benchmark": "GEO-Bench v1.0", "root": str(self.root), "model": self.model,
            "weights_hash": self.weights_hash, "weights_source": self.weights_source, "pretrained": self.pretrained,
            "device": self.device, "confidence": CONFIDENCE, "bootstrap_replicates": self.n_boot,
            "reference_source": REFERENCE_SOURCE,
            "tasks": [asdict(r) for r in self.rows],
        })


def _forward(model: nn.Module, images: torch.Tensor, modality: str, device: torch.device, tokens: bool) -> np.ndarray:
    """Pooled ``(B, D)`` embeddings, or patch tokens ``(B, N, D)`` when ``tokens``, as float32 numpy."""
    x = images.to(device, non_blocking=True)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        out = model.forward_features(x, modality) if tokens else model(x, modality)
    return out.float().cpu().numpy()


def _classification_score(
    files: TaskFiles, model: nn.Module, layout: _Layout, tile: tuple[int, int], device: torch.device, batch_size: int,
    n_boot: int, seed: int, progress: Callable[[int], None],
) -> tuple[Estimate, int, int]:
    task = files.task
    features: dict[str, list[np.ndarray]] = {"fit": [], "test": []}
    labels: dict[str, list[Any]] = {"fit": [], "test": []}
    for images, samples in _image_batches(files, SPLITS, layout, tile, batch_size, progress):
        embedded = _forward(model, images, layout.modality.name, device, tokens=False)
        for sample, vector in zip(samples, embedded):
            part = "test" if sample.split == "test" else "fit"
            features[part].append(vector)
            labels[part].append(_checked_label(files, sample))
    x_fit, x_test = np.stack(features["fit"]), np.stack(features["test"])
    if task.kind == "multilabel":
        y_fit, y_test = np.stack(labels["fit"]), np.stack(labels["test"])
        varying = np.flatnonzero(y_fit.min(0) != y_fit.max(0))
        if len(varying) == 0:
            raise GeoBenchError(f"{files.path}: every label is constant over train + valid; nothing to fit")
        probe = fit_probe(x_fit, y_fit[:, varying], "multilabel", classes=varying.tolist(), seed=seed)
        proba = probe.predict_proba(x_test)
        evaluation = evaluate("multilabel", y_test[:, varying], probe.labels(proba), proba,
                              classes=varying.tolist(), n_boot=n_boot, seed=seed)
    else:
        y_fit, y_test = np.array(labels["fit"]), np.array(labels["test"])
        if len(np.unique(y_fit)) < 2:
            raise GeoBenchError(f"{files.path}: train + valid hold a single class; nothing to fit")
        probe = fit_probe(x_fit, y_fit, "classify", seed=seed)
        evaluation = evaluate("classify", y_test, probe.predict(x_test), classes=list(range(task.n_classes)),
                              n_boot=n_boot, seed=seed)
    return evaluation.metrics[task.metric], len(y_fit), len(y_test)


def _checked_label(files: TaskFiles, sample: GeoBenchSample) -> int | np.ndarray:
    task, label, path = files.task, sample.label, files.sample_path(sample.name)
    if task.kind == "multilabel":
        if not isinstance(label, np.ndarray) or label.shape != (task.n_classes,) or not np.isin(label, (0, 1)).all():
            raise GeoBenchError(f"{path}: expected a {task.n_classes}-long 0/1 label vector, got {label!r}")
    elif not isinstance(label, int) or not 0 <= label < task.n_classes:
        raise GeoBenchError(f"{path}: expected a class index in 0..{task.n_classes - 1}, got {label!r}")
    return label


def _checked_mask(files: TaskFiles, sample: GeoBenchSample) -> np.ndarray:
    mask, task = sample.label, files.task
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.min() < 0 or mask.max() >= task.n_classes:
        raise GeoBenchError(
            f"{files.sample_path(sample.name)}: expected a 'label' mask of classes 0..{task.n_classes - 1}"
        )
    return mask


def _segmentation_score(
    files: TaskFiles, model: nn.Module, layout: _Layout, tile: tuple[int, int], device: torch.device, batch_size: int,
    n_boot: int, seed: int, progress: Callable[[int], None],
) -> tuple[Estimate, int, int]:
    n_classes, patch = files.task.n_classes, model.patch_size
    fit_images = sum(len(files.partition.get(s, [])) for s in ("train", "valid"))
    grid = (tile[0] // patch) * (tile[1] // patch)
    per_image = max(1, min(grid, TRAIN_PATCH_BUDGET // fit_images))
    rng = np.random.default_rng(seed)
    tokens: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for images, samples in _image_batches(files, ("train", "valid"), layout, tile, batch_size, progress):
        embedded = _forward(model, images, layout.modality.name, device, tokens=True)
        for sample, sample_tokens in zip(samples, embedded):
            majority = _majority_patch_class(_checked_mask(files, sample), tile, patch, n_classes).flatten().numpy()
            keep = np.sort(rng.choice(grid, per_image, replace=False)) if per_image < grid else slice(None)
            tokens.append(sample_tokens[keep])
            targets.append(majority[keep])
    probe = _fit_patch_probe(np.concatenate(tokens), np.concatenate(targets), n_classes, seed)
    grid_shape = (tile[0] // patch, tile[1] // patch)
    confusions: list[np.ndarray] = []
    for images, samples in _image_batches(files, ("test",), layout, tile, batch_size, progress):
        embedded = torch.from_numpy(_forward(model, images, layout.modality.name, device, tokens=True))
        with torch.no_grad():
            logits = probe(embedded).reshape(len(samples), *grid_shape, n_classes).permute(0, 3, 1, 2)
        for sample, sample_logits in zip(samples, logits):
            mask = _checked_mask(files, sample)
            pixels = F.interpolate(sample_logits[None], size=mask.shape, mode="bilinear", align_corners=False)
            predicted = pixels[0].argmax(0).numpy()
            confusions.append(np.bincount(mask.ravel() * n_classes + predicted.ravel(), minlength=n_classes**2)
                              .reshape(n_classes, n_classes))
    return mean_iou(np.stack(confusions), n_boot=n_boot, seed=seed), fit_images, len(confusions)


def _counter(name: str, total: int, on_progress: ProgressCallback | None) -> Callable[[int], None]:
    """Adds up samples done and reports ``(name, done, total)``."""
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress:
            on_progress(name, done, total)

    return advance


def _select(found: dict[str, Path], tasks: Sequence[str] | None, root: Path) -> list[str]:
    if not tasks:
        return [name for name in GEOBENCH_TASKS if name in found]
    selected: list[str] = []
    for requested in tasks:
        name = _task_name(requested.strip())
        if name not in found:
            expected = root / GEOBENCH_TASKS[name].benchmark / name
            raise GeoBenchError(f"{root}: task {name} not found (expected {expected}); found: {', '.join(found)}")
        if name not in selected:
            selected.append(name)
    return selected


def geobench(
    root: str | Path,
    tasks: Sequence[str] | None = None,
    *,
    weights: str | Path | None = None,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    device: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> GeoBenchReport:
    """Score the frozen backbone on GEO-Bench v1.0 tasks found under ``root`` with linear probes.

    Args:
        root: the GEO-Bench folder holding ``classification_v1.0`` and/or ``segmentation_v1.0``.
        tasks: task names (case-insensitive); default: every task found.
        weights: checkpoint path; default: the packaged checkpoint, else a seeded random init.
        batch_size: images per forward pass.
        n_boot: bootstrap replicates of the 95 % intervals (0: none).
        seed: seed of the probes, patch sampling and bootstrap.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        on_progress: called as ``(task, samples_done, samples_total)`` after every batch.

    Raises:
        GeoBenchError: root missing, no task folder, unknown or absent task, partition missing, a listed
            sample without its file (all checked before any embedding), or an unreadable sample.
        WeightsError: the checkpoint cannot be loaded.
    """
    if batch_size <= 0 or n_boot < 0:
        raise GeoBenchError(f"batch_size must be positive and n_boot non-negative, got {batch_size} and {n_boot}")
    root = Path(root)
    found = find_tasks(root)
    opened = [open_task(found[name], name) for name in _select(found, tasks, root)]
    loaded = load_weights(weights)
    torch_device = resolve_device(device)
    model = loaded.model.to(torch_device).eval()
    for files in opened:
        if files.task.modality not in model.modalities:
            raise GeoBenchError(f"{files.task.name}: the model has no patch embedding for {files.task.modality}")
    report = GeoBenchReport(root, loaded.weights_hash, loaded.source, loaded.pretrained, model.config.name,
                            str(torch_device), n_boot)
    for files in opened:
        start = time.perf_counter()
        task, layout = files.task, _Layout.of(files.task)
        first = next(files.samples("train", layout.stored))
        tile = (_tile_size(first.image.shape[1], model.patch_size), _tile_size(first.image.shape[2], model.patch_size))
        progress = _counter(task.name, sum(len(v) for v in files.partition.values()), on_progress)
        score = _segmentation_score if task.kind == "segment" else _classification_score
        estimate, n_fit, n_test = score(files, model, layout, tile, torch_device, batch_size, n_boot, seed, progress)
        report.rows.append(GeoBenchResult(
            task.name, task.kind, task.metric, estimate.value, estimate.low, estimate.high, n_fit, n_test,
            task.reference, task.modality, tile, time.perf_counter() - start,
        ))
        logger.info("%s: %s %.3f", task.name, task.metric, estimate.value)
    return report
