"""GEO-Bench v1.0 on disk: task folders, partitions and HDF5 sample files (format in the package docstring)."""

from __future__ import annotations

import ast
import collections
import datetime
import io
import json
import pickle
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ofa_embed.downstream.geobench.tasks import (
    BENCHMARK_DIRS,
    GEOBENCH_TASKS,
    LABEL_DATASET,
    PARTITION_FILE,
    SPLITS,
    GeoBenchTask,
    find_task_name,
    task_name,
)
from ofa_embed.errors import GeoBenchError, first_line

__all__ = ["GeoBenchSample", "TaskFiles", "find_tasks", "open_task", "read_sample"]


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
    expanded = [name for name, c in zip(names, channels, strict=True) for _ in range(c.shape[0])]
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
        """The ``.hdf5`` file of sample ``name`` in the task folder."""
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
            name = find_task_name(child.name)
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
    name = task_name(task or folder.name)
    partition = _read_partition(folder)
    listed = [n for split in SPLITS for n in partition.get(split, [])]
    missing = [n for n in listed if not (folder / f"{n}.hdf5").is_file()]
    if missing:
        raise GeoBenchError(
            f"{folder}: {len(missing)} of {len(listed)} samples listed in {PARTITION_FILE} have no .hdf5 file "
            f"(first: {missing[0]}.hdf5; incomplete download?)"
        )
    return TaskFiles(GEOBENCH_TASKS[name], folder, partition)


