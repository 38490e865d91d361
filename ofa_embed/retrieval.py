"""``search``: the store's rows most similar to a query tile, a stored tile, or the tile at a point."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np

from ofa_embed import indexes
from ofa_embed.defaults import SEARCH_K
from ofa_embed.errors import QueryError
from ofa_embed.indexes.filters import SearchFilter
from ofa_embed.lazy import import_whole
from ofa_embed.location import AnyPath, as_location
from ofa_embed.sensors import CUSTOM, MODALITIES
from ofa_embed.store import embedding_columns, embedding_matrix, parquet_schema, store_files
from ofa_embed.store.duck import connect

__all__ = ["QueryError", "check_bbox", "rocchio_vector", "search"]


def _stored_embedding(store: AnyPath, where: str, params: list[object], order: str, what: str) -> np.ndarray:
    paths = store_files(store)
    columns = ", ".join(embedding_columns(parquet_schema(paths[0]))) if paths else "embedding"
    table = connect(store=store).execute(
        f"SELECT {columns} FROM read_parquet(?, union_by_name = true) WHERE {where} ORDER BY {order} LIMIT 1",
        [[str(p) for p in paths], *params],
    ).to_arrow_table()
    if table.num_rows == 0:
        raise QueryError(f"{store}: {what}")
    return embedding_matrix(table)[0]


def _as_list(value: object) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)  # type: ignore[call-overload]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def rocchio_vector(positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Rocchio's query: the mean of the positives' unit vectors minus the mean of the negatives' (``(D,)`` float32).

    Raises:
        QueryError: no positive, or negatives that cancel the positives (no direction left to search).
    """
    if not len(positives):
        raise QueryError("give at least one positive example")
    vector = np.mean([_unit(np.asarray(v, np.float32)) for v in positives], axis=0)
    if len(negatives):
        vector = vector - np.mean([_unit(np.asarray(v, np.float32)) for v in negatives], axis=0)
    if float(np.linalg.norm(vector)) < 1e-6:
        raise QueryError("the negative examples cancel the positive ones (their means are equal): no direction to search")
    return vector.astype(np.float32)


def check_bbox(bbox: Sequence[float]) -> None:
    """Refuse a bbox that is not ``(min_lon, min_lat, max_lon, max_lat)`` in degrees: ``min_lat`` above
    ``max_lat``, a longitude outside -180..180 or a latitude outside -90..90 (the message says when the numbers
    look like ``lat, lon`` order). ``min_lon > max_lon`` is a bbox across the antimeridian (RFC 7946).

    Raises:
        QueryError: what is wrong and the expected form.
    """
    text = ",".join(f"{v:g}" for v in bbox)
    if len(bbox) != 4:
        raise QueryError(f"bbox {text}: give 4 numbers MINLON,MINLAT,MAXLON,MAXLAT")
    min_lon, min_lat, max_lon, max_lat = bbox
    if not all(-90 <= v <= 90 for v in (min_lat, max_lat)):
        swapped = all(-90 <= v <= 90 for v in (min_lon, max_lon)) and all(-180 <= v <= 180 for v in (min_lat, max_lat))
        raise QueryError(f"bbox {text}: latitude outside -90..90" + (
            "; the numbers look like latitude first: give MINLON,MINLAT,MAXLON,MAXLAT" if swapped else ""))
    if not all(-180 <= v <= 180 for v in (min_lon, max_lon)):
        raise QueryError(f"bbox {text}: longitude outside -180..180 (give longitudes in -180..180, "
                         "e.g. 200 is -160)")
    if min_lat > max_lat:
        raise QueryError(f"bbox {text} must be MINLON,MINLAT,MAXLON,MAXLAT with min <= max (MINLON > MAXLON is "
                         "a bbox across the antimeridian)")


def search(
    store: str | AnyPath,
    *,
    like: str | Path | Sequence[str | Path] | None = None,
    like_id: str | Sequence[str] | None = None,
    like_point: tuple[float, float] | None = None,
    unlike: str | Path | Sequence[str | Path] | None = None,
    unlike_id: str | Sequence[str] | None = None,
    k: int = SEARCH_K,
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

    The query is made of examples: ``like`` (query tile files of any supported modality, embedded with the
    store's own model: cross-modal queries are allowed; a band-file tile is given as its folder),
    ``like_id`` (rows of the store) and ``like_point`` (``(lon, lat)``: the stored tile containing it whose
    centre is nearest). With several positive examples, or negative ones (``unlike`` files, ``unlike_id``
    rows), the query vector is the mean of the positives' unit vectors minus the mean of the negatives'
    (Rocchio's rule, as labelling tools refine a search from tiles marked yes and no).

    Filters (``bbox`` as ``(min_lon, min_lat, max_lon, max_lat)``, ``start``/``end`` times, ``modality``,
    ``scene``) are resolved to allowed rows first and applied inside the index search.

    Returns:
        See :meth:`indexes.StoreIndex.search`.

    Raises:
        QueryError: no positive example, k < 1, malformed bbox or dates, unknown id, empty point.
        IndexStateError: no index, stale index, or a query model that differs from the store's.
        StoreError: missing or empty store.
    """
    positive_files, positive_ids = _as_list(like), _as_list(like_id)
    negative_files, negative_ids = _as_list(unlike), _as_list(unlike_id)
    if not (positive_files or positive_ids or like_point is not None):
        raise QueryError("give a query: like (tile files), like_id (stored tiles) or like_point")
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    if bbox is not None:
        check_bbox(bbox)
    if modality is not None and modality != CUSTOM and modality not in MODALITIES:
        raise QueryError(f"modality {modality!r} is not a modality; choose one of {', '.join([*MODALITIES, CUSTOM])}")
    if start is not None and end is not None and start >= end:
        raise QueryError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    store = as_location(store)
    index = indexes.open(store)
    made = None

    def embedded(files: list[str | Path], ids: list[str]) -> list[np.ndarray]:
        nonlocal made
        vectors = []
        if files:
            query = import_whole("ofa_embed.embedding.query")  # torch loads only to embed a query tile
            made = made or query.store_model(store, weights)
            vectors += [query.embed_file(f, made, modality=query_modality, bands=query_bands) for f in files]
        vectors += [_stored_embedding(store, "id = ?", [i], "id", f"no tile with id {i!r}") for i in ids]
        return [_unit(np.asarray(v, np.float32)) for v in vectors]

    positives = embedded(positive_files, positive_ids)
    if like_point is not None:
        lon, lat = like_point
        positives.append(_unit(_stored_embedding(
            store, "(CASE WHEN xmin <= xmax THEN xmin <= ? AND xmax >= ? ELSE xmin <= ? OR xmax >= ? END) "
                   "AND ymin <= ? AND ymax >= ?", [lon, lon, lon, lon, lat, lat],
            f"(((xmin + xmax) / 2 - {float(lon)}) ^ 2 + ((ymin + ymax) / 2 - {float(lat)}) ^ 2)",
            f"no tile contains the point {lon}, {lat}",
        )))
    negatives = embedded(negative_files, negative_ids)
    vector = rocchio_vector(positives, negatives)
    search_filter = SearchFilter(bbox=bbox, start=start, end=end, modality=modality, scene=scene)
    return index.search(vector, k, search_filter)
