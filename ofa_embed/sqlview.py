"""DuckDB SQL over a store: a view ``embeddings`` and an ``embed('tile.tif')`` function.

``embeddings`` exposes every column of the store, with ``embedding`` as ``FLOAT[D]`` (Parquet
fixed-size lists read back as variable ``FLOAT[]``; ``array_cosine_similarity`` needs the fixed size;
float16 and int8 stores are read back as float32, int8 times its ``embedding_scale``, which the view hides)
and ``geometry`` as ``GEOMETRY`` (the spatial extension, loaded offline, reads the GeoParquet
metadata). ``embed(path)`` embeds a tile file with the store's own model and returns ``FLOAT[D]``;
``embed(path, modality, bands)`` says what the file is (``bands`` comma-separated in file order, as
``--bands`` takes them; NULL for either leaves it to the file). Results are cached per file, modification
time and reading, so a query calls the model once per file.

    SELECT id, array_cosine_similarity(embedding, embed('q.tif')) AS s
    FROM embeddings ORDER BY s DESC LIMIT 5
    SELECT id FROM embeddings ORDER BY array_cosine_similarity(embedding, embed('q.tif', 'landsat_oli', 'B2,B3,B4')) DESC
"""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb
import pandas as pd

from ofa_embed.errors import SQLError, first_line
from ofa_embed.lazy import import_whole
from ofa_embed.location import AnyPath, as_location
from ofa_embed.store import describe_store
from ofa_embed.store.duck import connect
from ofa_embed.store.quantise import SCALE_COLUMN

__all__ = ["sql", "connect_store", "SQLError"]

# the Python functions behind the SQL macro embed(): the tile's path alone, or with its modality and bands
PATH_FUNCTION = "ofa_embed_tile"
PATH_AS_FUNCTION = "ofa_embed_tile_as"


def connect_store(store: str | AnyPath, *, weights: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the ``embeddings`` view and ``embed()`` registered for ``store``.

    Raises:
        StoreError: missing or empty store.
    """
    store = as_location(store)
    files = describe_store(store)
    dim = files[0].dimension
    con = connect(store=store)
    paths = ", ".join("'" + str(f.path).replace("'", "''") + "'" for f in files)
    # a partitioned store's key=value folders become columns, when every file sits under the same keys (DuckDB
    # refuses a mix), never for a flat store; key=value folders above the store, which DuckDB reads too, are
    # dropped. Scene and chip files differ in columns.
    keys = {tuple(part.split("=")[0] for part in f.name.split("/")[:-1]) for f in files}
    hive = len(keys) == 1 and bool(next(iter(keys)))
    above = [part.split("=")[0] for part in store.resolve().parts if "=" in part] if hive else []
    quantised = files[0].embedding_dtype == "int8"  # describe_store refuses a store of mixed dtypes
    hidden = [*above, *([SCALE_COLUMN] if quantised else [])]
    dropped = f"EXCLUDE ({', '.join(chr(34) + k + chr(34) for k in hidden)}) " if hidden else ""
    values = f"list_transform(embedding, v -> v * {SCALE_COLUMN})" if quantised else "embedding"
    con.execute(
        f"CREATE VIEW embeddings AS SELECT * {dropped}REPLACE ({values}::FLOAT[{dim}] AS embedding) "
        f"FROM read_parquet([{paths}], union_by_name = true, hive_partitioning = {str(hive).lower()})"
    )

    @functools.lru_cache(maxsize=256)
    def cached(path: str, stamp: int, modality: str | None, bands: str | None) -> list[float]:
        query = import_whole("ofa_embed.embedding.query")  # torch loads only when a query embeds a tile
        names = [b.strip() for b in bands.split(",") if b.strip()] if bands else None
        return query.embed_file(path, query.store_model(store, weights), modality=modality or None,
                                bands=names).tolist()

    def embed_as(path: str, modality: str | None, bands: str | None) -> list[float]:
        target = Path(path)
        return cached(str(target.resolve()), target.stat().st_mtime_ns if target.exists() else 0, modality, bands)

    def embed(path: str) -> list[float]:
        return embed_as(path, None, None)

    # DuckDB registers one Python function per name, so the two forms of embed() are a macro over two of them;
    # NULL modality or bands in the long form mean "as the file says" (null_handling special passes them on)
    con.create_function(PATH_FUNCTION, embed, ["VARCHAR"], f"FLOAT[{dim}]", side_effects=False)
    con.create_function(PATH_AS_FUNCTION, embed_as, ["VARCHAR", "VARCHAR", "VARCHAR"], f"FLOAT[{dim}]",
                        side_effects=False, null_handling="special")
    con.execute(f"CREATE TEMP MACRO embed(path) AS {PATH_FUNCTION}(path), "
                f"(path, modality, bands) AS {PATH_AS_FUNCTION}(path, modality, bands)")
    return con


def sql(store: str | AnyPath, query: str, *, weights: str | Path | None = None) -> pd.DataFrame:
    """Run ``query`` against a store; GEOMETRY columns come back as WKT text.

    Raises:
        SQLError: the statement failed; the message is DuckDB's first line (errors of ``embed()``,
            such as an unreadable tile, keep their own message).
        StoreError: missing or empty store.
    """
    con = connect_store(store, weights=weights)
    try:
        relation = con.sql(query)
        if relation is None:
            return pd.DataFrame()
        columns = [
            f'ST_AsText("{name}") AS "{name}"' if str(kind).startswith("GEOMETRY") else f'"{name}"'
            for name, kind in zip(relation.columns, relation.types, strict=True)
        ]
        return relation.project(", ".join(columns)).df()
    except duckdb.Error as exc:
        raise SQLError(f"SQL error: {first_line(exc)}") from None
