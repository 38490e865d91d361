"""Chip products in (Geo)Parquet (Major TOM, Earth Index, Clay): one vector per row, read with row-group pruning.

A ``--bbox`` or ``--start/--end`` is first checked against each row group's column statistics, where the file has
columns they can be read from: a GeoParquet 1.1 bbox covering (``bbox.xmin`` ...), centre columns (Major TOM's
``centre_lon``/``centre_lat``, padded by half a chip), a timestamp or date column. Row groups that cannot meet the
selection are not read. The rows read are then kept by their exact footprint and time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from ofa_embed.errors import ProductError
from ofa_embed.interop.product import Rows, Selection, corners_of

__all__ = ["ChipFile", "ChipSpec", "read_chip_file", "source_files"]


@dataclass(frozen=True)
class ChipSpec:
    """The columns of one chip format, as its publisher documents them (first present wins).

    Attributes:
        embedding: embedding column names.
        time: time column names (timestamp, date or ISO string).
        name: a function of ``(table, file stem, row numbers in the file)`` giving every row's name.
        side_m: a chip's side in metres (for point geometries and centre-column pruning).
        chip_px: a chip's side in pixels of its imagery.
    """

    embedding: tuple[str, ...]
    time: tuple[str, ...]
    name: Callable[[pa.Table, str, np.ndarray], list[str]]
    side_m: float
    chip_px: int


@dataclass
class ChipFile:
    """What was read of one file: its rows, footer ``emb`` record, row groups in all and read, and dimension."""

    rows: Rows
    emb: dict[str, Any]
    row_groups: int
    row_groups_read: int
    dimension: int


def source_files(paths: list[Path]) -> list[Path]:
    """The Parquet files given, folders searched recursively."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".gpq", ".geoparquet")) \
            if path.is_dir() else [path]
    return found


def _stat(group: pq.RowGroupMetaData, column: str) -> tuple[Any, Any] | None:
    for i in range(group.num_columns):
        chunk = group.column(i)
        if chunk.path_in_schema == column:
            stats = chunk.statistics
            return (stats.min, stats.max) if stats is not None and stats.has_min_max else None
    return None


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y%m%dT%H%M%S")):
        try:
            return _as_utc(parse(text))
        except ValueError:
            continue
    return None


def _footer_time(emb: dict[str, Any]) -> datetime | None:
    """The time an ``emb`` footer gives its file (Earth Index: a STAC datetime object, or a plain value)."""
    when = emb.get("datetime")
    if isinstance(when, dict):
        when = when.get("datetime") or when.get("start_datetime")
    return _as_utc(when or emb.get("start_datetime"))


def _group_kept(group: pq.RowGroupMetaData, selection: Selection, time_column: str | None, half: float) -> bool:
    if selection.bbox is not None:
        covering = [_stat(group, f"bbox.{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        centre = [_stat(group, k) for k in ("centre_lon", "centre_lat")]
        if all(covering):
            box = (covering[0][0], covering[1][0], covering[2][1], covering[3][1])  # type: ignore[index]
        elif all(centre):
            box = (centre[0][0] - half, centre[1][0] - half, centre[0][1] + half, centre[1][1] + half)  # type: ignore[index]
        else:
            box = None
        if box is not None and not selection.overlaps_box(*(np.array(v) for v in box)).item():
            return False
    if time_column is not None and (selection.start or selection.end):
        span = _stat(group, time_column)
        if span is not None and isinstance(span[0], (datetime, date)):
            return selection.overlaps_time(_as_utc(span[0]), _as_utc(span[1]))
    return True


def _embeddings(column: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    array = column.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type)):
        raise ProductError(f"{path}: column {name!r} is {array.type}, not a list of floats (one vector a row)")
    if len(array) == 0:
        return np.empty((0, 0), np.float32)
    lengths = pa.compute.list_value_length(array).to_numpy(zero_copy_only=False)
    if array.null_count or lengths.min() != lengths.max():
        raise ProductError(f"{path}: column {name!r} holds vectors of {lengths.min()} to {lengths.max()} values (or nulls); "
                           "every row needs one of the same length")
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(array), int(lengths[0]))


def read_chip_file(path: Path, spec: ChipSpec, selection: Selection) -> ChipFile:
    """The rows of one chip file meeting ``selection``.

    Raises:
        ProductError: not a Parquet file, or without the documented geometry or embedding column.
    """
    try:
        handle = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ProductError(f"{path}: not a readable Parquet file ({exc})") from None
    with handle:
        names = handle.schema_arrow.names
        embedding = next((c for c in spec.embedding if c in names), None)
        if embedding is None or "geometry" not in names:
            missing = " and ".join(x for x, ok in ((f"an embedding column ({', '.join(spec.embedding)})", embedding),
                                                   ("'geometry'", "geometry" in names)) if not ok)
            raise ProductError(f"{path}: no {missing} (columns: {', '.join(names[:12])}); is --format right?")
        time_column = next((c for c in spec.time if c in names), None)
        meta = handle.schema_arrow.metadata or {}
        emb = json.loads(meta.get(b"emb", b"{}") or b"{}")
        total = handle.metadata.num_row_groups
        kept = [i for i in range(total) if _group_kept(handle.metadata.row_group(i), selection, time_column,
                                                       spec.side_m / 111_320.0)]
        offsets = np.concatenate([[0], np.cumsum([handle.metadata.row_group(i).num_rows for i in range(total)])])
        table = handle.read_row_groups(kept) if kept else handle.schema_arrow.empty_table()
    first_rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in kept]) if kept else np.empty(0, np.int64)
    geometry_column = table.column("geometry").combine_chunks()
    if not (pa.types.is_binary(geometry_column.type) or pa.types.is_large_binary(geometry_column.type)):
        raise ProductError(f"{path}: 'geometry' is {geometry_column.type}, not WKB; write it as WKB (GeoParquet's encoding)")
    geometries = shapely.from_wkb(geometry_column.to_numpy(zero_copy_only=False))
    bounds = shapely.bounds(geometries)
    times = [_as_utc(v) for v in table.column(time_column).to_pylist()] if time_column else \
        [_footer_time(emb)] * len(table)
    keep = selection.overlaps_box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    if selection.start or selection.end:
        keep &= np.array([selection.overlaps_time(t, t) for t in times], bool)
    vectors = _embeddings(table.column(embedding), path, embedding)
    dimension = vectors.shape[1] if vectors.size else 0
    index = np.flatnonzero(keep)
    row_names = spec.name(table, path.stem, first_rows)
    n = len(index)
    rows = Rows(
        [row_names[i] for i in index], np.zeros(n, np.int32), np.zeros(n, np.int32), np.full(n, spec.chip_px, np.int32),
        np.full(n, spec.chip_px, np.int32), np.ones(n, np.float32), corners_of(geometries[index], spec.side_m),
        [times[i] for i in index], vectors[index] if n else np.empty((0, dimension), np.float32),
    )
    return ChipFile(rows, emb, total, len(kept), dimension)
