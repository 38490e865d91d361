"""Map layers from what embedding fields give: a segmentation's class COGs (``probe/predict --dense --predict``)
and a change ranking (``ofa-embed change --out``: its tiles, and the per-pixel change COGs written beside it).

A raster is drawn as one quad per pixel (its corners projected to longitude/latitude, so a UTM grid stays
true), nodata pixels left out. A raster of more than :data:`MAX_RASTER_PIXELS` pixels is read at the overview
(or decimation) that brings it under, nearest class for classes and the mean for change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ofa_embed.errors import MapError, first_line
from ofa_embed.mapview.colours import categorical, ramp
from ofa_embed.mapview.layers import Layer, corners_of
from ofa_embed.tiling import to_lonlat

__all__ = ["MAX_RASTER_PIXELS", "change_layers", "class_layers", "distance_colours", "raster_pixels"]

MAX_RASTER_PIXELS = 250_000  # quads per raster layer (68 bytes each in the page)
CHANGE_COLUMNS_SHOWN = ("rank", "cosine_distance", "id", "scene", "before_scene", "overlap", "partial")
CLASSES_TAG = "OFA_EMBED_CLASSES"


def raster_pixels(path: Path, *, categorical_values: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(corners (N, 4, 2) lon/lat, values (N,), tags)`` of the valid pixels of band 1 of a georeferenced raster,
    decimated to at most :data:`MAX_RASTER_PIXELS` pixels.

    Raises:
        MapError: unreadable, or without a CRS.
    """
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise MapError(f"{path}: no CRS, so its pixels cannot be placed on the map")
            step = max(1, int(np.ceil(np.sqrt(src.width * src.height / MAX_RASTER_PIXELS))))
            height, width = -(-src.height // step), -(-src.width // step)
            values = src.read(1, out_shape=(height, width), masked=True,
                              resampling=Resampling.nearest if categorical_values else Resampling.average)
            transform = src.transform @ src.transform.scale(src.width / width, src.height / height)
            crs, tags, colormap = src.crs, src.tags(), _colormap(src)
    except rasterio.errors.RasterioError as exc:
        raise MapError(f"{path}: not a readable raster ({first_line(exc)})") from None
    mask = ~np.ma.getmaskarray(values)
    if values.dtype.kind == "f":
        mask &= np.isfinite(values.filled(np.nan))
    rows, cols = np.nonzero(mask)
    # pixel corners clockwise from the top left, as the store's tile corners are
    xs = np.stack([cols, cols + 1, cols + 1, cols], -1).astype(np.float64)
    ys = np.stack([rows, rows, rows + 1, rows + 1], -1).astype(np.float64)
    px, py = transform @ (xs, ys)
    lon, lat = to_lonlat(np.asarray(px), np.asarray(py), crs)
    if colormap is not None:
        tags = {**tags, "colormap": colormap}
    return np.stack([lon, lat], -1).reshape(-1, 4, 2), np.asarray(values.data)[rows, cols], tags


def _colormap(src: Any) -> dict[int, tuple[int, int, int]] | None:
    try:
        return {k: tuple(v[:3]) for k, v in src.colormap(1).items()}
    except ValueError:  # no colour table
        return None


def _files(path: Path, what: str) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.glob("*.tif") if not p.name.startswith("."))
        if not found:
            raise MapError(f"{path}: no .tif {what} in this folder")
        return found
    if not path.is_file():
        raise MapError(f"{path}: no such {what} file or folder")
    return [path]


def class_layers(path: Path) -> list[Layer]:
    """The class COGs of a segmentation (a file, or the folder ``--predict`` wrote): one layer of pixels per
    file, coloured by its colour table (the classes' order otherwise), one legend of class names.

    Raises:
        MapError: missing, unreadable, or a raster without the class names a class COG carries.
    """
    layers = []
    for file in _files(Path(path), "class raster"):
        corners, codes, tags = raster_pixels(file, categorical_values=True)
        if CLASSES_TAG not in tags:
            raise MapError(f"{file}: no {CLASSES_TAG} tag: not a class raster of probe/predict --dense --predict")
        classes = [str(c) for c in json.loads(tags[CLASSES_TAG])]
        names = [classes[int(c)] if 0 <= int(c) < len(classes) else str(int(c)) for c in codes]
        colors, legend = categorical(names, order=classes)
        table = tags.get("colormap")
        if table:
            known = np.array([int(c) in table for c in codes], bool)
            colors[known] = np.array([table[int(c)] for c in codes[known]], np.uint8).reshape(-1, 3)
            legend = {"type": "classes", "items": [[name, list(table.get(i, (128, 128, 128)))]
                                                   for i, name in enumerate(classes)]}
        layers.append(Layer(f"classes {file.stem}", corners, colors, {"class": names, "raster": [file.name] * len(names)},
                            legend))
    return layers


def change_layers(path: Path) -> list[Layer]:
    """A change ranking (``ofa-embed change --out FILE``): its tiles coloured by cosine distance (rank, distance,
    the before scene, overlap and ``partial`` in the tooltip), then each per-pixel change COG written beside it
    (``<stem>.<before>.<after>.tif``, switched off at first), on one colour scale: 0 (unchanged) to the 98th
    percentile of all distances.

    Raises:
        MapError: missing or unreadable, or not a change file (no ``cosine_distance`` column).
    """
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: no such change file (ofa-embed change ... --out FILE)")
    try:
        frame = gpd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise MapError(f"{path}: not a readable change file ({first_line(exc)})") from None
    if "cosine_distance" not in frame.columns or frame.crs is None:
        raise MapError(f"{path}: no 'cosine_distance' column with a geometry: not a change file (ofa-embed change --out)")
    frame = frame.to_crs("OGC:CRS84").sort_values("cosine_distance", ascending=False, kind="stable")
    frame["rank"] = np.arange(1, len(frame) + 1)
    pixels = [(p, *raster_pixels(p, categorical_values=False)[:2]) for p in sorted(path.parent.glob(f"{path.stem}.*.tif"))]
    distances = np.concatenate([frame["cosine_distance"].to_numpy(np.float64)]
                               + [values.astype(np.float64) for _, _, values in pixels])
    finite = distances[np.isfinite(distances)]
    high = max(float(np.percentile(finite, 98)) if finite.size else 1.0, 1e-6)
    colors, legend = distance_colours(frame["cosine_distance"].to_numpy(np.float64), high)
    shown = {c: frame[c] for c in CHANGE_COLUMNS_SHOWN if c in frame.columns}
    layers = [Layer("change (tiles)", corners_of(frame.geometry.to_numpy()), colors, shown, legend,
                    outline={"width": 1.0, "color": "#111", "fill": True})]
    for file, corners, values in pixels:
        layers.append(Layer(f"change pixels {file.stem[len(path.stem) + 1:]}", corners,
                            distance_colours(values.astype(np.float64), high)[0],
                            {"cosine_distance": values.astype(np.float64)}, None, visible=False))
    return layers


def distance_colours(values: np.ndarray, high: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Cosine distances on magma from 0 (unchanged) to ``high`` (clipped beyond), and the ramp's legend."""
    clipped = np.clip(values, 0.0, high)
    colors, legend = ramp(np.concatenate([[0.0, high], clipped]), "cosine distance", "magma", robust=False)
    return colors[2:], legend
