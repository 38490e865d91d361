"""What a map draws: layers of tile quads with colours, tooltip columns and a legend.

Layers are built from a store (principal-component colours, or a column), from the hits file ``search
--format parquet|geojson`` writes, from the predictions file of ``probe/knn/predict --predict``, and from a
query tile (a raster file's footprint, or a stored tile's id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ofa_embed.errors import MapError, first_line
from ofa_embed.location import AnyPath
from ofa_embed.mapview.colours import PCA, categorical, column_colours, pca_rgb, ramp
from ofa_embed.store import (
    TILE_COLUMNS,
    StoreFile,
    describe_store,
    embedding_columns,
    embedding_matrix,
    parquet_schema,
    read_embeddings,
    read_parquet,
    read_tiles,
)
from ofa_embed.tiling import TileWindow, footprints

__all__ = ["Layer", "hits_layer", "predictions_layer", "query_layer", "store_layer", "PCA_SAMPLE"]

PCA_SAMPLE = 50_000  # embeddings the components are fitted on; every tile is then projected
STORE_TOOLTIP = ("id", "scene", "datetime", "valid_fraction")


@dataclass
class Layer:
    """Tiles drawn in one colour scheme.

    Attributes:
        name: shown in the panel and tooltips.
        corners: ``(N, 4, 2)`` tile corners, longitude/latitude (EPSG:4326).
        colors: ``(N, 3)`` uint8 RGB.
        fields: tooltip columns, name -> ``N`` values.
        legend: see :mod:`ofa_embed.mapview.colours`.
        visible: drawn when the page opens; opacity: 0-1.
        outline: ``{"width": px, "color": css colour or None (the tile's), "fill": bool}`` for outlined tiles.
    """

    name: str
    corners: np.ndarray
    colors: np.ndarray
    fields: dict[str, Any]
    legend: dict[str, Any] | None
    visible: bool = True
    opacity: float = 1.0
    outline: dict[str, Any] | None = field(default=None)

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.corners)


def corners_of(geometries: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` corners of tile polygons (their first four vertices); any other shape by its bounding box."""
    geometries = np.asarray(geometries, dtype=object)
    if not len(geometries):
        return np.empty((0, 4, 2))
    rings = shapely.get_exterior_ring(geometries)
    if (shapely.get_num_coordinates(rings) == 5).all():
        return shapely.get_coordinates(rings).reshape(-1, 5, 2)[:, :4]
    x0, y0, x1, y1 = shapely.bounds(geometries).T
    # a tile cut at the antimeridian is drawn whole, its eastern part carried on past 180 (Web Mercator takes it)
    cut = np.flatnonzero(shapely.get_type_id(geometries) == shapely.GeometryType.MULTIPOLYGON)
    for i in cut:
        parts = shapely.get_parts(geometries[i])
        bounds = shapely.bounds(parts)
        if bounds[:, 0].min() <= -180 and bounds[:, 2].max() >= 180:
            x0[i] = bounds[bounds[:, 0] > -180, 0].min(initial=180.0)
            x1[i] = bounds[bounds[:, 0] <= -180, 2].max() + 360
    return np.stack([np.stack([x0, y1], -1), np.stack([x1, y1], -1), np.stack([x1, y0], -1), np.stack([x0, y0], -1)], 1)


def _pca_scores(files: list[StoreFile], seed: int = 0) -> tuple[PCA, np.ndarray]:
    """Components fitted on up to :data:`PCA_SAMPLE` embeddings drawn evenly over the store, then every tile's
    scores, one file at a time (a store of 10^6 tiles is never held as one float matrix).
    """
    total = sum(f.rows for f in files)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, size=min(total, PCA_SAMPLE), replace=False))
    pca = PCA(read_embeddings(files[0].path.parent, keep, files=files))
    scores = np.concatenate([pca.project(embedding_matrix(read_parquet(f.path, embedding_columns(parquet_schema(f.path)))))
                             for f in files])
    return pca, scores


def store_layer(store: AnyPath, color: str | None = None) -> tuple[Layer, list[StoreFile]]:
    """Every tile of ``store``, coloured by its embedding's principal components or by store column ``color``.

    Raises:
        StoreError: missing or empty store; MapError: ``color`` is not a store column.
    """
    files = describe_store(store)
    columns = (*TILE_COLUMNS, "valid_fraction", *([color] if color else []))
    tiles = read_tiles(store, tuple(dict.fromkeys(columns)), files=files)
    if color:
        if color not in tiles.columns or color == "geometry":
            names = parquet_schema(files[0].path).names
            raise MapError(f"{store}: no store column {color!r} to colour by (columns: "
                           f"{', '.join(n for n in names if n not in ('geometry', 'embedding', 'bbox'))})")
        colors, legend = column_colours(tiles[color], color)
        name = f"store by {color}"
    else:
        pca, scores = _pca_scores(files)
        colors, legend = pca_rgb(pca, scores)
        name = "store embeddings"
    shown = [c for c in (*STORE_TOOLTIP, *([color] if color else [])) if c in tiles.columns]
    fields = {c: tiles[c] for c in dict.fromkeys(shown)}
    return Layer(name, corners_of(tiles.geometry.to_numpy()), colors, fields, legend), files


def _read_frame(path: Path, what: str) -> gpd.GeoDataFrame:
    if not path.exists():
        raise MapError(f"{path}: no such {what} file")
    try:
        frame = gpd.read_parquet(path) if path.suffix.lower() == ".parquet" else gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/pyogrio raise many types for a bad file
        raise MapError(f"{path}: not a readable {what} file ({first_line(exc)})") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame or frame.crs is None:
        raise MapError(f"{path}: {what} need a geometry column with a CRS (write them with --format parquet or geojson)")
    return frame.to_crs("OGC:CRS84")


def hits_layer(path: Path) -> Layer:
    """Search hits (``search --format parquet|geojson``) coloured by similarity, outlined, rank in the tooltip.

    Raises:
        MapError: unreadable, no geometry or no ``similarity`` column.
    """
    hits = _read_frame(Path(path), "hits")
    if "similarity" not in hits.columns:
        raise MapError(f"{path}: no 'similarity' column: not a search result (ofa-embed search --format parquet)")
    colors, legend = ramp(hits["similarity"].to_numpy(np.float64), "similarity", "plasma", robust=False)
    shown = [c for c in ("rank", "similarity", "id", "scene", "datetime") if c in hits.columns]
    return Layer("search hits", corners_of(hits.geometry.to_numpy()), colors,
                 {c: hits[c] for c in shown}, legend, outline={"width": 1.5, "color": "#111", "fill": True})


def predictions_layer(path: Path) -> Layer:
    """Predictions (``probe/knn/predict --predict``): classes in a palette (legend), values on a ramp;
    the predicted class's probability and the known label in the tooltip.

    Raises:
        MapError: unreadable, no geometry or no ``prediction`` column.
    """
    frame = _read_frame(Path(path), "predictions")
    if "prediction" not in frame.columns:
        raise MapError(f"{path}: no 'prediction' column: not a predictions file (probe/knn/predict --predict)")
    predicted = frame["prediction"]
    fields: dict[str, Any] = {c: frame[c] for c in ("id", "scene") if c in frame.columns}
    probabilities = [c for c in frame.columns if c.startswith("prob_")]
    if pd.api.types.is_numeric_dtype(predicted):
        colors, legend = ramp(predicted.to_numpy(np.float64), "predicted value")
        fields["prediction"] = predicted
    else:
        text = predicted.map(lambda v: ", ".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v)
        classes = [c[len("prob_"):] for c in probabilities]
        single = all(isinstance(v, str) or v is None for v in predicted)
        colors, legend = categorical(text, order=classes if single and classes else None)
        fields["prediction"] = text
        if single and probabilities:
            table = frame[probabilities].to_numpy(np.float64)
            column = {name: i for i, name in enumerate(classes)}
            picked = [column.get(v, -1) for v in text]
            fields["probability"] = np.array([table[i, j] if j >= 0 else np.nan for i, j in enumerate(picked)])
    if "label" in frame.columns:
        fields["label"] = frame["label"].map(lambda v: ", ".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v)
    return Layer("predictions", corners_of(frame.geometry.to_numpy()), colors, fields, legend)


def _raster_footprint(path: Path) -> np.ndarray:
    """``(4, 2)`` longitude/latitude corners of a georeferenced raster file."""
    import rasterio

    try:
        with rasterio.open(path) as dataset:
            transform, width, height, crs = dataset.transform, dataset.width, dataset.height, dataset.crs
    except rasterio.errors.RasterioError as exc:
        raise MapError(f"{path}: not a readable raster ({first_line(exc)})") from None
    if crs is None:
        raise MapError(f"{path}: no CRS, so the query tile cannot be placed on the map")
    return footprints([TileWindow(0, 0, height, width, max(height, width))], transform, crs)[1][0]


def query_layer(query: str | Path, store_tiles: Layer) -> Layer:
    """The query tile outlined: a raster file's footprint, or the stored tile with that id.

    Raises:
        MapError: neither a readable raster nor an id of the store.
    """
    text = str(query)
    if Path(text).exists():
        corners = _raster_footprint(Path(text))[None]
    else:
        matches = np.flatnonzero(np.asarray(store_tiles.fields["id"]) == text)
        if not len(matches):
            raise MapError(f"--query {text}: neither a file nor the id of a tile of the store")
        corners = store_tiles.corners[matches[:1]]
    return Layer("query tile", corners, np.array([[230, 0, 126]], np.uint8), {"query": [text]}, None,
                 outline={"width": 3, "color": None, "fill": False})
