"""The embedding store: a directory of GeoParquet 1.1 files, one per scene or per batch of chips.

Layout::

    STORE/
      <scene>.parquet        one file per extracted scene (written as .<scene>.parquet.tmp, then renamed)
      chips-<nnnnn>.parquet  up to N chips of a chip collection, one tile per chip (store version 2)
      utm_zone=33N/year=2020/<scene>.parquet
                             a partitioned store (``extract --partition-by utm_zone,year``): scene files in
                             hive folders, which DuckDB (``hive_partitioning``) and pyarrow/geopandas read
                             as columns and prune on; a store may mix both layouts

Columns (schema version :data:`STORE_VERSION`)::

    id               string     stable tile id: blake2b(scene, row, col, tile_size), 16 hex digits
    scene            string     scene name (file stem or folder name); a chip's name (its path below
                                the collection folder, without suffix)
    modality         string     registered modality name
    datetime         timestamp[us, UTC], null when unknown
    row, col         int32      top-left pixel of the tile in the scene grid
    width, height    int32      in-scene extent of the tile (smaller than the tile for edge tiles)
    padded           bool       edge tile padded to the full tile size
    valid_fraction   float32    fraction of in-scene pixels that are not nodata
    missing_bands    list<string>  bands filled with their mean (subset input, out-of-range wavelengths)
    geometry         binary     WKB polygon, EPSG:4326 longitude/latitude (GeoParquet primary column); a
                                multipolygon cut at the antimeridian for a tile across it
                                (:mod:`ofa_embed.store.footprints`)
    bbox             struct<xmin, ymin, xmax, ymax: double>  GeoParquet 1.1 bbox covering, in RFC 7946 order:
                                xmin > xmax for a tile across the antimeridian
    xmin, ymin, xmax, ymax  double  the same bbox flat: DuckDB filters and prunes row groups on these
    embedding        fixed_size_list<float32>[D]; float16 or int8 components when the file's ``emb``
                     metadata says so (store version 3, ``extract --embedding-dtype``)
    embedding_scale  float32    int8 files only: the per-vector scale (value = embedding * embedding_scale)

Chip collection files (version 2) add, after ``missing_bands``::

    path             string     the chip file
    label            string     the chip's folder-derived label (its parent folder), null when none
    crs              string     the chip's native CRS (EPSG:<code>, else WKT)

Version history: 1, scene files; 2, chip collection files (columns above, metadata ``chips`` instead of
``scene``); 3, embeddings stored as float16 or int8 (:mod:`ofa_embed.store.quantise`). A file records the
lowest version that reads it (float32 files stay version 2), so older ofa-embed refuse only the files
they would misread. Older files stay readable; a store may hold several versions but one embedding dtype.

File metadata keys ``geo``, ``emb`` and ``ofa_embed``: layout in :mod:`ofa_embed.store.metadata`.

Layout of the rows (not part of the schema: readers never depend on it, and files written before it, in
Z-order with row groups of 1,024 rows, read as before):

- rows are sorted along a Hilbert curve of tile centres (:mod:`ofa_embed.store.hilbert`), so that the rows
  of a row group, and the rows a bbox selects, lie together: row-group statistics of the flat bbox columns
  and of the ``bbox`` covering prune spatial queries, and a bbox's rows are few runs of the file;
- row groups of 50,000 to 99,999 rows, and one group in a smaller file (:func:`row_group_rows`, which says
  why): row-group statistics prune a bbox to the groups it touches and DuckDB skips the other rows of
  those; the file's statistics (one group) prune a small file as a whole;
- zstd compression, column statistics, the GeoParquet 1.1 ``bbox`` covering.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from pyproj import CRS as ProjCRS

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import StoreError
from ofa_embed.location import AnyPath, RemotePath, as_location, relative_name
from ofa_embed.store.footprints import footprints_lonlat
from ofa_embed.store.hilbert import spatial_order
from ofa_embed.store.quantise import SCALE_COLUMN, arrow_values, encode

if TYPE_CHECKING:
    pass

__all__ = [
    "STORE_VERSION",
    "ChipColumns",
    "ROW_GROUP_ROWS",
    "TileRecords",
    "epoch_micros",
    "open_parquet",
    "parquet_schema",
    "read_parquet",
    "PARTITION_KEYS",
    "partition_of",
    "row_group_rows",
    "scene_path",
    "store_files",
    "tile_id",
    "write_chips",
    "write_scene",
    "write_with_embeddings",
]

STORE_VERSION = 3
PARTITION_KEYS = ("utm_zone", "year")
_HIVE_FOLDER = re.compile(r"^[^=]+=[^=]+$")
GEOPARQUET_VERSION = "1.1.0"
ROW_GROUP_ROWS = 50_000
_CRS84 = ProjCRS("OGC:CRS84").to_json_dict()


def tile_id(scene: str, row: int, col: int, tile_size: int) -> str:
    """Stable id of a tile: the same scene name and window always give the same id."""
    return hashlib.blake2b(f"{scene}|{row}|{col}|{tile_size}".encode(), digest_size=8).hexdigest()


def scene_path(store: AnyPath, scene: str, partition: dict[str, str] | None = None) -> AnyPath:
    """The store file of scene ``scene``: ``STORE/<scene>.parquet``, or inside its hive partition
    ``STORE/<key>=<value>/.../<scene>.parquet``.
    """
    folder = store.joinpath(*(f"{key}={value}" for key, value in (partition or {}).items()))
    return folder / f"{scene}.parquet"


def store_files(store: str | AnyPath) -> list[AnyPath]:
    """The files of a store (a folder or an fsspec URL), sorted by their path below the store: ``*.parquet``
    at the top level and in hive partition folders (``key=value/``, nested). Temporary files (``.name``) are
    left out, and so is any other folder (``_index``, ``.parts``, a user's ``results/``).
    """
    root = as_location(store)
    found: list[AnyPath] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        for entry, is_dir in _entries(folder):
            if entry.name.startswith("."):
                continue
            if is_dir and _HIVE_FOLDER.match(entry.name) and not entry.name.startswith("_"):
                folders.append(entry)
            elif entry.suffix == ".parquet" and not is_dir:
                found.append(entry)
    return sorted(found, key=lambda p: relative_name(p, root))


def _entries(folder: AnyPath) -> list[tuple[AnyPath, bool]]:
    """``(entry, is_folder)`` in ``folder``; none when it does not exist. One listing call on a remote store."""
    if isinstance(folder, RemotePath):
        if not folder.fs.isdir(folder.path):
            return []
        return [(RemotePath(folder.fs, e["name"]), e["type"] == "directory")
                for e in folder.fs.ls(folder.path, detail=True) if e["name"].rstrip("/") != folder.path]
    return [(entry, entry.is_dir()) for entry in folder.iterdir()] if folder.is_dir() else []


def _arrow(path: AnyPath) -> tuple[str, Any]:
    return (path.path, path.fs) if isinstance(path, RemotePath) else (str(path), None)


def read_parquet(path: AnyPath, columns: Sequence[str] | None = None) -> pa.Table:
    """``columns`` (all when None) of the Parquet file at ``path``, local or remote."""
    where, fs = _arrow(path)
    return pq.read_table(where, columns=None if columns is None else list(columns), filesystem=fs)


def parquet_schema(path: AnyPath) -> pa.Schema:
    """The Arrow schema (with its metadata) of the Parquet file at ``path``, local or remote."""
    where, fs = _arrow(path)
    return pq.read_schema(where, filesystem=fs)


def open_parquet(path: AnyPath) -> pq.ParquetFile:
    """The Parquet file at ``path``, local or remote, for row counts and batch iteration (close it, or use
    it in a ``with`` block).
    """
    where, fs = _arrow(path)
    return pq.ParquetFile(where, filesystem=fs)


def partition_of(keys: Sequence[str], lon: float, lat: float, acquired: datetime | None) -> dict[str, str]:
    """Hive partition values of a scene centred at ``lon, lat`` (degrees) acquired at ``acquired``:
    ``utm_zone`` (``33N``: the 6-degree zone and hemisphere of the centre) and ``year`` (``unknown`` without
    a date), in the order of ``keys``.

    Raises:
        StoreError: a key other than :data:`PARTITION_KEYS`.
    """
    values = {
        "utm_zone": f"{int((lon + 180) // 6) % 60 + 1:02d}{'N' if lat >= 0 else 'S'}",
        "year": str(acquired.year) if acquired else "unknown",
    }
    unknown = [key for key in keys if key not in values]
    if unknown:
        raise StoreError(f"partition key(s) {', '.join(unknown)}: choose from {', '.join(PARTITION_KEYS)}")
    return {key: values[key] for key in keys}


@dataclass
class TileRecords:
    """Per-tile columns of one scene, in tiling order (sorted spatially on write).

    Attributes:
        rows, cols, heights, widths: ``(N,)`` int pixel windows.
        padded: ``(N,)`` bool.
        valid_fraction: ``(N,)`` float.
        lonlat: ``(N, 4, 2)`` tile corners in EPSG:4326.
        embeddings: ``(N, D)`` float32.
    """

    rows: np.ndarray
    cols: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    padded: np.ndarray
    valid_fraction: np.ndarray
    lonlat: np.ndarray
    embeddings: np.ndarray


@dataclass
class ChipColumns:
    """Per-chip columns of a chip collection file, one entry per chip in the order of its ``TileRecords``.

    Attributes:
        names: chip names (ids are made from them, like scene names).
        paths: the chip files.
        labels: the folder-derived label of each chip, or None.
        crs: each chip's native CRS (``EPSG:<code>``, else WKT).
        acquired: each chip's acquisition time, or None.
    """

    names: list[str]
    paths: list[str]
    labels: list[str | None]
    crs: list[str]
    acquired: list[datetime | None]


def _table(scenes: Sequence[str], modality: str, acquired: Sequence[datetime | None], tile_size: int,
           missing: list[str], records: TileRecords, embedding_dtype: str,
           extra: dict[str, Sequence[str | None]] | None = None) -> pa.Table:
    """The store columns of ``records``: ``scenes`` and ``acquired`` per row, ``extra`` string columns after
    them, embeddings stored as ``embedding_dtype``.
    """
    shapes = footprints_lonlat(records.lonlat[:, ::-1])  # clockwise in a north-up grid -> counter-clockwise
    order = spatial_order(shapes.centre_lon, shapes.centre_lat)
    n, dim = records.embeddings.shape
    geometry = shapely.to_wkb(shapes.geometry[order])
    bounds = {k: getattr(shapes, k)[order] for k in ("xmin", "ymin", "xmax", "ymax")}
    values, scale = encode(records.embeddings[order], embedding_dtype)
    flat = _numeric(np.ascontiguousarray(values).ravel(), arrow_values(values))
    ordered_scenes = [scenes[i] for i in order]
    ids = [tile_id(scene, int(r), int(c), tile_size)
           for scene, r, c in zip(ordered_scenes, records.rows[order], records.cols[order], strict=True)]
    columns = {
        "id": _strings(ids),
        "scene": _strings(ordered_scenes),
        "modality": _strings([modality] * n),
        "datetime": _timestamps([acquired[i] for i in order]),
        "row": _numeric(records.rows[order], pa.int32()),
        "col": _numeric(records.cols[order], pa.int32()),
        "width": _numeric(records.widths[order], pa.int32()),
        "height": _numeric(records.heights[order], pa.int32()),
        "padded": _booleans(records.padded[order]),
        "valid_fraction": _numeric(records.valid_fraction[order], pa.float32()),
        "missing_bands": pa.ListArray.from_arrays(
            _numeric(np.arange(n + 1, dtype=np.int32) * len(missing), pa.int32()), _strings(missing * n)
        ),
        **{name: _strings([values[i] for i in order]) for name, values in (extra or {}).items()},
        "geometry": _binary(list(geometry)),
        "bbox": pa.StructArray.from_arrays([_numeric(bounds[k], pa.float64()) for k in bounds], names=list(bounds)),
        **{k: _numeric(v, pa.float64()) for k, v in bounds.items()},
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        **({SCALE_COLUMN: _numeric(scale, pa.float32())} if scale is not None else {}),
    }
    return pa.table(columns)


# Columns are built from buffers: pyarrow's pa.array() and pa.scalar() import pandas on first use (a good
# share of a short `extract --sample`), and writing a store never needs pandas.
def _numeric(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    data = np.ascontiguousarray(values, dtype=kind.to_pandas_dtype())
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data)])


def _booleans(values: np.ndarray) -> pa.Array:
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def _validity(values: Sequence[object]) -> pa.Buffer | None:
    """Arrow's validity bitmap of ``values`` (None entries are null), or None when none is."""
    present = np.fromiter((v is not None for v in values), bool, len(values))
    return None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))


def _binary(values: Sequence[bytes | None], kind: pa.DataType | None = None) -> pa.Array:
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum([len(v) if v is not None else 0 for v in values], out=offsets[1:])
    data = b"".join(v for v in values if v is not None)
    return pa.Array.from_buffers(kind or pa.binary(), len(values),
                                 [_validity(values), pa.py_buffer(offsets), pa.py_buffer(data)])


def _strings(values: Sequence[str | None]) -> pa.Array:
    return _binary([v.encode() if v is not None else None for v in values], pa.string())


def epoch_micros(when: datetime) -> int:
    """Microseconds since 1970 UTC, as the store's ``datetime`` column holds them; naive times are UTC (as
    pyarrow reads them).
    """
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _timestamps(values: Sequence[datetime | None]) -> pa.Array:
    micros = {when: epoch_micros(when) for when in {v for v in values if v is not None}}
    data = np.fromiter((micros.get(v, 0) if v is not None else 0 for v in values), np.int64, len(values))
    return pa.Array.from_buffers(pa.timestamp("us", tz="UTC"), len(values),
                                 [_validity(values), pa.py_buffer(data)])


def _geo_metadata(table: pa.Table) -> dict[str, Any]:
    bbox = [pc.min(table[k]).as_py() for k in ("xmin", "ymin")] + [
        pc.max(table[k]).as_py() for k in ("xmax", "ymax")
    ]
    crossing = pc.any(pc.greater(table["xmin"], table["xmax"])).as_py()
    if crossing:  # the union of tiles on both sides of the antimeridian: all longitudes, conservatively
        bbox[0], bbox[2] = -180.0, 180.0
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon", "MultiPolygon"] if crossing else ["Polygon"],
                "crs": _CRS84,
                "orientation": "counterclockwise",
                "edges": "planar",
                "bbox": bbox,
                "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
            }
        },
    }


def write_scene(
    store: AnyPath,
    scene: str,
    *,
    modality: str,
    acquired: datetime | None,
    tile_size: int,
    missing_bands: list[str],
    records: TileRecords,
    metadata: dict[str, Any],
    emb_metadata: dict[str, Any],
    partition: dict[str, str] | None = None,
) -> AnyPath:
    """Write one scene's tiles to ``store/<scene>.parquet`` (or into its hive ``partition``, see
    :func:`partition_of`) atomically: temporary name, then rename.

    Raises:
        StoreError: the store cannot be written.
    """
    n = len(records.embeddings)
    table = _table([scene] * n, modality, [acquired] * n, tile_size, missing_bands, records, _stored_dtype(emb_metadata))
    return _write(scene_path(store, scene, partition), table, metadata, emb_metadata)


def write_chips(
    store: AnyPath,
    name: str,
    *,
    modality: str,
    tile_size: int,
    missing_bands: list[str],
    chips: ChipColumns,
    records: TileRecords,
    metadata: dict[str, Any],
    emb_metadata: dict[str, Any],
) -> AnyPath:
    """Write the tiles of a batch of chips (one tile per chip) to ``store/<name>.parquet`` atomically, with
    the chip columns ``path``, ``label`` and ``crs``; ``scene`` holds each chip's name.
    """
    extra: dict[str, Sequence[str | None]] = {"path": chips.paths, "label": chips.labels, "crs": chips.crs}
    table = _table(chips.names, modality, chips.acquired, tile_size, missing_bands, records, _stored_dtype(emb_metadata),
                   extra)
    return _write(scene_path(store, name), table, metadata, emb_metadata)


def write_with_embeddings(source: AnyPath, target: AnyPath, embeddings: np.ndarray, *, weights_hash: str,
                          model: str) -> AnyPath:
    """A copy of the store file ``source`` at ``target`` whose embeddings are ``embeddings`` (``(rows, D)``, in
    ``source``'s row order, stored as float32) made by ``model`` (its ``weights_hash`` is the copy's record):
    other features of the same tiles (band statistics), probed through the same code as any store.

    Raises:
        StoreError: ``embeddings`` has another number of rows than ``source``.
    """
    table = read_parquet(source)
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != table.num_rows:
        raise StoreError(f"{source}: {table.num_rows} rows, but embeddings of shape {matrix.shape} were given")
    columns = [c for c in table.column_names if c != SCALE_COLUMN]
    table = table.select(columns).set_column(columns.index("embedding"), "embedding",
                                             pa.FixedSizeListArray.from_arrays(_numeric(matrix.ravel(), pa.float32()),
                                                                               matrix.shape[1]))
    meta = {k.decode(): json.loads(v) for k, v in (table.schema.metadata or {}).items() if k in (b"emb", b"ofa_embed")}
    emb = {**meta["emb"], "model": model, "weights_hash": weights_hash, "dimension": int(matrix.shape[1]),
           "quantization": "float32"}
    emb.pop("scale", None)
    ours = {k: v for k, v in meta["ofa_embed"].items() if k != "store_version"}
    ours["model"] = {**ours.get("model", {}), "name": model, "weights_hash": weights_hash}
    return _write(target, table, ours, emb)


def _write(target: AnyPath, table: pa.Table, metadata: dict[str, Any], emb_metadata: dict[str, Any]) -> AnyPath:
    file_metadata = {
        b"geo": json.dumps(_geo_metadata(table)).encode(),
        b"emb": json.dumps(emb_metadata).encode(),
        b"ofa_embed": json.dumps({"store_version": _lowest_version(emb_metadata), **metadata}).encode(),
    }
    table = table.replace_schema_metadata(file_metadata)
    # a dictionary of float components never pays (every value differs): without it float32 files are 36 %
    # smaller (1,170 -> 747 bytes a 192-d vector, benchmarks/search.py); int8's 255 values do gain from one
    dictionary = [c for c in table.column_names if c != "embedding" or _stored_dtype(emb_metadata) == "int8"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows(table.num_rows), compression="zstd", write_statistics=True,
                       use_dictionary=dictionary)
    return target


def _stored_dtype(emb_metadata: dict[str, Any]) -> str:
    """The dtype the ``emb`` record names for the embedding column (float32 when it names none)."""
    return str(emb_metadata.get("quantization", "float32"))


def _lowest_version(emb_metadata: dict[str, Any]) -> int:
    return STORE_VERSION if _stored_dtype(emb_metadata) != "float32" else 2


def row_group_rows(rows: int) -> int:
    """Rows per row group of a file of ``rows`` rows: ``rows // ROW_GROUP_ROWS`` equal groups, so 50,000 to
    99,999 rows each, and a file under 100,000 rows is one group.

    Why (``python benchmarks/store_layout.py``, one file of 10^6 rows): with the 1,024-row groups written before,
    every DuckDB query paid 57-142 ms for the 977 groups' statistics (a count of a bbox's rows: 6-11 ms in 50,000-row
    groups), and a bbox of 0.01-1 % of the file was fetched no slower from a 50,000-row group (DuckDB skips the
    rows of a group it reads that the filter drops); the index filter reads the filter columns faster from large
    groups. The cost: a bbox of 10 % reads 2.5x the rows and was fetched 1.5x slower. Groups far larger than this
    make small bboxes read rows they do not need.
    """
    return max(1, -(-rows // max(1, rows // ROW_GROUP_ROWS)))
