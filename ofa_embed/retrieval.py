"""``search``: the store's rows most similar to a query tile, a stored tile, or the tile at a point."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np

from ofa_embed import indexes
from ofa_embed.errors import QueryError
from ofa_embed.indexes.filters import SearchFilter
from ofa_embed.indexes.vectors import embedding_matrix
from ofa_embed.lazy import import_whole
from ofa_embed.store import store_files
from ofa_embed.store.duck import connect

__all__ = ["search", "QueryError"]


def _stored_embedding(store: Path, where: str, params: list[object], order: str, what: str) -> np.ndarray:
    files = [str(p) for p in store_files(store)]
    table = connect().execute(
        f"SELECT embedding FROM read_parquet(?, union_by_name = true) WHERE {where} ORDER BY {order} LIMIT 1", [files, *params]
    ).to_arrow_table()
    if table.num_rows == 0:
        raise QueryError(f"{store}: {what}")
    return embedding_matrix(table.column(0))[0]


def search(
    store: str | Path,
    *,
    like: str | Path | Sequence[str | Path] | None = None,
    like_id: str | None = None,
    like_point: tuple[float, float] | None = None,
    k: int = 10,
    bbox: tuple[float, float, float, float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    modality: str | None = None,
    scene: str | None = None,
    weights: str | Path | None = None,
    query_modality: str | None = None,
    query_bands: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """Find the ``k`` tiles of a store most similar (cosine) to a query, within optional filters.

    Exactly one query: ``like`` (a tile file of any supported modality, embedded with the store's
    own model: cross-modal queries are allowed), ``like_id`` (a row of the store) or ``like_point``
    (``(lon, lat)``: the stored tile containing it whose centre is nearest).

    Filters (``bbox`` as ``(min_lon, min_lat, max_lon, max_lat)``, ``start``/``end`` times, ``modality``,
    ``scene``) are resolved to allowed rows first and applied inside the index search.

    Returns:
        See :meth:`indexes.StoreIndex.search`.

    Raises:
        QueryError: not exactly one query, k < 1, malformed bbox or dates, unknown id, empty point.
        IndexStateError: no index, stale index, or a query model that differs from the store's.
        StoreError: missing or empty store.
    """
    if sum(q is not None for q in (like, like_id, like_point)) != 1:
        raise QueryError("give exactly one query: like (a tile file), like_id or like_point")
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    if bbox is not None and not (bbox[0] <= bbox[2] and bbox[1] <= bbox[3]):
        raise QueryError(f"bbox {bbox} must be min_lon,min_lat,max_lon,max_lat with min <= max")
    if start is not None and end is not None and start >= end:
        raise QueryError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    store = Path(store)
    index = indexes.open(store)
    if like is not None:
        query = import_whole("ofa_embed.embedding.query")  # torch loads only to embed a query tile
        vector = query.embed_file(like, query.store_model(store, weights), modality=query_modality, bands=query_bands)
    elif like_id is not None:
        vector = _stored_embedding(store, "id = ?", [like_id], "id", f"no tile with id {like_id!r}")
    else:
        assert like_point is not None  # exactly one query was checked above
        lon, lat = like_point
        vector = _stored_embedding(
            store, "xmin <= ? AND xmax >= ? AND ymin <= ? AND ymax >= ?", [lon, lon, lat, lat],
            f"(((xmin + xmax) / 2 - {float(lon)}) ^ 2 + ((ymin + ymax) / 2 - {float(lat)}) ^ 2)",
            f"no tile contains the point {lon}, {lat}",
        )
    search_filter = SearchFilter(bbox=bbox, start=start, end=end, modality=modality, scene=scene)
    return index.search(vector, k, search_filter)
