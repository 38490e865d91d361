"""Reading a store: its files' footers (metadata, row count, fingerprint) in one read each, the store described
and checked as one model's, and rows read back (tiles without embeddings, embeddings at store positions).
The layout they read is :mod:`ofa_embed.store.geoparquet`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from ofa_embed.errors import StoreError
from ofa_embed.location import AnyPath, as_location, relative_name
from ofa_embed.store.geoparquet import STORE_VERSION, parquet_schema, read_parquet, store_files
from ofa_embed.store.quantise import SCALE_COLUMN, decode

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "FOOTER_READ",
    "RESULT_COLUMNS",
    "TILE_COLUMNS",
    "StoreFile",
    "describe_store",
    "embedding_columns",
    "embedding_matrix",
    "read_embeddings",
    "read_metadata",
    "read_tiles",
    "take_rows",
    "tiles_frame",
]


def read_metadata(path: str | AnyPath) -> dict[str, Any]:
    """The ``ofa_embed`` metadata of a store file, with ``geo`` and ``emb`` under those keys.

    Raises:
        StoreError: not a store file.
    """
    raw, _, _ = _footer(as_location(path) if isinstance(path, str) else path)
    return _parsed_metadata(raw, path)


# bytes read from the end of a store file at once: its footer and the 8 bytes after it, in one request
# for a file on an object store (the footer of a Sentinel-2 scene's file of 899 tiles: 17 KB)
FOOTER_READ = 64 * 1024


def _footer(path: AnyPath) -> tuple[dict[bytes, bytes], int, str]:
    """The key-value metadata, row count and fingerprint (SHA-256 of the footer and the 8 bytes after it) of
    the Parquet file at ``path``, from one read of its end: ``describe_store`` opened every file twice, once for
    pyarrow and once for the fingerprint.

    Raises:
        StoreError: not a readable Parquet file.
    """
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - FOOTER_READ))
            end = handle.read()
            length = int.from_bytes(end[-8:-4], "little") if len(end) >= 8 and end[-4:] == b"PAR1" else -1
            if length < 0 or length + 12 > size:
                raise ValueError("no Parquet footer at its end")
            if length + 8 > len(end):
                handle.seek(size - length - 8)
                end = handle.read()
        footer = end[-(length + 8):]
        # the footer alone, behind the leading magic bytes, is a file pyarrow reads the metadata of
        metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{path}: not a readable Parquet file ({exc})") from None
    return metadata.metadata or {}, metadata.num_rows, hashlib.sha256(footer).hexdigest()


def _parsed_metadata(raw: dict[bytes, bytes], path: str | AnyPath) -> dict[str, Any]:
    if b"ofa_embed" not in raw:
        raise StoreError(f"{path}: not an ofa-embed store file (no 'ofa_embed' metadata)")
    meta = json.loads(raw[b"ofa_embed"])
    version = int(meta.get("store_version", 0))
    if version > STORE_VERSION:
        raise StoreError(f"{path}: store version {version} is newer than this ofa-embed supports ({STORE_VERSION})")
    meta["geo"] = json.loads(raw.get(b"geo", b"{}"))
    meta["emb"] = json.loads(raw.get(b"emb", b"{}"))
    return meta


@dataclass(frozen=True)
class StoreFile:
    """One scene file of a store, with what identifies its content.

    Attributes:
        path: the file.
        name: its path below the store (``scene.parquet``, ``utm_zone=33N/year=2020/scene.parquet``).
        rows: number of tiles.
        fingerprint: SHA-256 of the Parquet footer (schema, per-row-group statistics and our metadata,
            which carries the creation time), so any rewrite of the file changes it; reading the
            footer only keeps this cheap for large stores.
        weights_hash: hash of the weights that made its embeddings.
        dimension: embedding dimension.
        embedding_dtype: how its embeddings are stored (float32, float16, int8).
    """

    path: AnyPath
    name: str
    rows: int
    fingerprint: str
    weights_hash: str
    dimension: int
    embedding_dtype: str = "float32"


def describe_store(store: str | AnyPath) -> list[StoreFile]:
    """The scene files of a store with their row counts, fingerprints and model.

    Raises:
        StoreError: the store is missing, empty, holds a foreign file, or mixes models or dimensions.
    """
    store = as_location(store)
    if not store.is_dir():
        raise StoreError(f"{store}: no such store (run ofa-embed extract first)")
    files = store_files(store)
    if not files:
        raise StoreError(f"{store}: store is empty (no .parquet scene files)")
    described = []
    for path in files:
        raw, rows, fingerprint = _footer(path)
        meta = _parsed_metadata(raw, path)
        described.append(StoreFile(
            path, relative_name(path, store), rows, fingerprint,
            meta["model"]["weights_hash"], int(meta["emb"]["dimension"]), meta["emb"].get("quantization", "float32"),
        ))
    models = {(f.weights_hash, f.dimension) for f in described}
    if len(models) > 1:
        first, other = described[0], next(f for f in described if f.weights_hash != described[0].weights_hash)
        raise StoreError(
            f"{store}: mixes embeddings of different models ({first.name}: weights {first.weights_hash}, "
            f"{other.name}: weights {other.weights_hash}); use one store per model"
        )
    dtypes = {f.embedding_dtype for f in described}
    if len(dtypes) > 1:
        first, other = described[0], next(f for f in described if f.embedding_dtype != described[0].embedding_dtype)
        raise StoreError(
            f"{store}: mixes embedding dtypes ({first.name}: {first.embedding_dtype}, {other.name}: "
            f"{other.embedding_dtype}); use one store per dtype"
        )
    return described


def embedding_columns(schema: pa.Schema) -> list[str]:
    """The columns holding a file's embeddings: ``embedding``, and ``embedding_scale`` in an int8 file."""
    return ["embedding", *([SCALE_COLUMN] if SCALE_COLUMN in schema.names else [])]


def embedding_matrix(rows: pa.Table | pa.RecordBatch) -> np.ndarray:
    """``(rows, D)`` float32 embeddings of store rows read with :func:`embedding_columns` (any stored dtype;
    fixed-size or equal-length lists).
    """
    column = rows.column("embedding")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    values = values.reshape(len(column), -1) if len(column) else values.reshape(0, 0).astype(np.float32)
    scale = rows.column(SCALE_COLUMN).to_numpy() if SCALE_COLUMN in rows.schema.names else None
    return decode(values, scale)


TILE_COLUMNS = ("id", "scene", "modality", "datetime", "geometry")
# a tile's identity, time and footprint (flat bbox and geometry, EPSG:4326) without its embedding: the columns
# of a search hit and of a prediction
RESULT_COLUMNS = ("id", "scene", "modality", "datetime", "xmin", "ymin", "xmax", "ymax", "geometry")


def read_tiles(store: str | AnyPath, columns: tuple[str, ...] = TILE_COLUMNS, *,
               files: Sequence[StoreFile] | None = None) -> gpd.GeoDataFrame:
    """Every tile of a store without its embedding, files in :func:`describe_store` order.

    Args:
        store: store directory (not read again when ``files`` is given).
        columns: store columns to read; ``geometry`` is always read; a column a file lacks is null for its
            rows (and absent from the frame when no file has it).
        files: the store's files from :func:`describe_store`, when the caller has them already.

    Returns:
        ``columns`` plus ``position`` (the row's index over the whole store, as in the vector index),
        geometry in EPSG:4326 (OGC:CRS84).
    """
    described = files if files is not None else describe_store(store)
    wanted = list(dict.fromkeys((*columns, "geometry")))
    # a column only some files have (a chip file's label beside scene files) is null in the others
    parts = [read_parquet(f.path, [c for c in wanted if c in parquet_schema(f.path).names]) for f in described]
    frame = tiles_frame(pa.concat_tables(parts, promote_options="permissive"))
    frame["position"] = np.arange(len(frame), dtype=np.int64)
    return frame


def tiles_frame(table: pa.Table) -> gpd.GeoDataFrame:
    """Store rows (a table with the WKB ``geometry`` column) as a GeoDataFrame in EPSG:4326 (OGC:CRS84)."""
    import geopandas as gpd  # only here: extraction, which imports this module, never needs it

    frame = table.to_pandas()
    frame["geometry"] = shapely.from_wkb(frame["geometry"])
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="OGC:CRS84")


def read_embeddings(store: str | AnyPath, positions: np.ndarray, *, files: Sequence[StoreFile] | None = None) -> np.ndarray:
    """``(len(positions), D)`` float32 embeddings of the rows at store ``positions`` (in that order).

    Args:
        store: store directory (not read again when ``files`` is given).
        positions: ``(n,)`` int row indices over the whole store, as in :func:`read_tiles`'s ``position``.
        files: the store's files from :func:`describe_store`, when the caller has them already.
    """
    described = files if files is not None else describe_store(store)
    offsets = np.cumsum([0] + [f.rows for f in described])
    table = take_rows([f.path for f in described], offsets, positions, embedding_columns(parquet_schema(described[0].path)))
    if not len(table):
        return np.empty((0, described[0].dimension), dtype=np.float32)
    return np.array(embedding_matrix(table))  # a writable copy, not a view of Arrow's buffers


def take_rows(paths: Sequence[AnyPath], offsets: np.ndarray, positions: np.ndarray, columns: list[str]) -> pa.Table:
    """``columns`` of the rows at store ``positions``, in that order; file ``i`` holds the rows from
    ``offsets[i]``. Only the files holding a requested row are read.
    """
    positions = np.asarray(positions, dtype=np.int64)
    file_of = np.searchsorted(offsets, positions, side="right") - 1
    parts: list[pa.Table] = []
    order: list[np.ndarray] = []
    for i in np.unique(file_of):
        selected = np.flatnonzero(file_of == i)
        parts.append(read_parquet(paths[i], columns).take(pa.array(positions[selected] - offsets[i])))
        order.append(selected)
    if not parts:
        schema = parquet_schema(paths[0])
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    return pa.concat_tables(parts).take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
