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
import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import duckdb.func
import pandas as pd

from ofa_embed.errors import SQLError, first_line
from ofa_embed.lazy import import_whole
from ofa_embed.location import AnyPath, RemotePath, as_location
from ofa_embed.store import describe_store
from ofa_embed.store.duck import connect
from ofa_embed.store.quantise import SCALE_COLUMN

__all__ = ["READING_STATEMENTS", "SQLError", "check_statements", "connect_store", "sql"]

# statement types that only read (DESCRIBE, SHOW, SUMMARIZE and PRAGMA queries parse as SELECT)
READING_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})

# the Python functions behind the SQL macro embed(): the tile's path alone, or with its modality and bands
PATH_FUNCTION = "ofa_embed_tile"
PATH_AS_FUNCTION = "ofa_embed_tile_as"


def connect_store(store: str | AnyPath, *, weights: str | Path | None = None, allow_writes: bool = False,
                  read_paths: Sequence[str | Path] = ()) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the ``embeddings`` view and ``embed()`` registered for ``store``.

    Read-only unless ``allow_writes``: DuckDB's own ``enable_external_access = false`` with ``allowed_paths``
    set to the store's files and ``allowed_directories`` to ``read_paths`` (folders or files a query may read
    besides the store), then ``lock_configuration = true`` so that no statement can undo it. DuckDB then
    refuses every file operation outside those, writes included (a ``COPY ... TO`` anywhere, an ``ATTACH``).
    A remote store keeps external access (its files are read through its own filesystem), and its
    statements are held to reading by :func:`check_statements`, as a local store's are too.

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
                        side_effects=False, null_handling=duckdb.func.SPECIAL)
    con.execute(f"CREATE TEMP MACRO embed(path) AS {PATH_FUNCTION}(path), "
                f"(path, modality, bands) AS {PATH_AS_FUNCTION}(path, modality, bands)")
    if not allow_writes and not isinstance(store, RemotePath):
        extra = [Path(p).expanduser().resolve() for p in read_paths]
        con.execute("SET allowed_paths = ?", [[str(f.path) for f in files] + [str(p) for p in extra if not p.is_dir()]])
        con.execute("SET allowed_directories = ?", [[str(p) for p in extra if p.is_dir()]])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def check_statements(query: str, store: str | AnyPath, *, allow_writes: bool = False) -> None:
    """Refuse what ``sql`` must not run: without ``allow_writes`` any statement but a query (SELECT, DESCRIBE,
    SHOW, SUMMARIZE, PRAGMA queries, EXPLAIN); with it, any statement that names a path inside the store
    (a ``COPY ... TO`` there would break every later command on the store).

    Raises:
        SQLError: the statement is not allowed; the message says which and why.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SQLError(f"SQL error: {first_line(exc)}") from None
    root = as_location(store)
    inside = None if isinstance(root, RemotePath) else Path(str(root)).resolve()
    for statement in statements:
        kind = statement.type
        if kind in READING_STATEMENTS:
            continue
        if not allow_writes:
            raise SQLError(f"{kind.name} statements are not run: ofa-embed sql is read-only (queries only); "
                           "pass --allow-writes (allow_writes=True) to write files outside the store")
        for literal in re.findall(r"'((?:[^']|'')*)'", statement.query):
            target = Path(literal.replace("''", "'")).expanduser()
            if inside is not None and literal and (inside == target.resolve() or inside in target.resolve().parents):
                raise SQLError(f"{literal}: {kind.name} statements never write inside the store {root}; write "
                               "somewhere else")


def sql(store: str | AnyPath, query: str, *, weights: str | Path | None = None, allow_writes: bool = False,
        read_paths: Sequence[str | Path] = ()) -> pd.DataFrame:
    """Run ``query`` against a store; GEOMETRY columns come back as WKT text.

    Read-only by default (see :func:`connect_store` and :func:`check_statements`): queries read the store,
    and the files and folders of ``read_paths``; ``allow_writes`` lets statements write files (``COPY``,
    ``ATTACH``, ...) anywhere but inside the store.

    Raises:
        SQLError: the statement failed; the message is DuckDB's first line (errors of ``embed()``,
            such as an unreadable tile, keep their own message).
        StoreError: missing or empty store.
    """
    check_statements(query, store, allow_writes=allow_writes)
    con = connect_store(store, weights=weights, allow_writes=allow_writes, read_paths=read_paths)
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
        hint = ("; sql reads only the store's files unless told more: --read PATH (read_paths) for other files "
                "and folders, --allow-writes to write outside the store") if isinstance(exc, duckdb.PermissionException) else ""
        raise SQLError(f"SQL error: {first_line(exc)}{hint}") from None
