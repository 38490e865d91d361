"""Shared test helpers: fixture rasters written with explicit CRS, affine transform and known pixel values,
and small vector stores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from ofa_embed.sensors import get_modality

UTM33 = "EPSG:32633"
ORIGIN = (500_000.0, 5_000_000.0)  # UTM 33N, about 15 E 45 N


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    res: float = 10.0,
    crs: str | None = UTM33,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
    band_tags: Sequence[dict[str, str]] | None = None,
) -> Path:
    """Write ``data`` ``(bands, rows, cols)`` as a GeoTIFF north-up at ``ORIGIN`` with ``res`` m pixels."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name}
    if crs is not None:
        profile |= {"crs": crs, "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
        for i, btags in enumerate(band_tags or [], start=1):
            dst.update_tags(i, **btags)
    return path


def s2_values(height: int, width: int, seed: int = 0) -> np.ndarray:
    """13-band uint16 L1C-like digital numbers: a per-band level plus a smooth pattern and noise."""
    rng = np.random.default_rng(seed)
    means = get_modality("sentinel2_l1c").mean * 10_000
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = 300 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    data = means[:, None, None] + pattern[None] + rng.normal(0, 50, (13, height, width))
    return np.clip(data, 1, 20_000).astype(np.uint16)


def write_vector_store(store: Path, scenes: Sequence[tuple[str, int, float, str | None, str]], *, dim: int = 32,
                       seed: int = 0, weights_hash: str = "feedfacefeedface") -> np.ndarray:
    """A store of synthetic scenes for index tests, bypassing the model.

    Each scene is ``(name, rows, west_lon, iso_datetime_or_None, modality)``: a row of 0.01 deg tiles
    along the equator from ``west_lon``, with clustered unit-ish vectors (20 cluster centres + noise).
    Returns all embeddings in store order (files sorted by name, rows as written).
    """
    from datetime import datetime

    from ofa_embed.store import TileRecords, write_scene

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    store.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows, west, when, modality in scenes:
        vectors = centres[rng.integers(0, 20, rows)] + 0.35 * rng.normal(size=(rows, dim))
        lon0 = west + 0.01 * np.arange(rows)
        corners = np.stack([np.stack([lon0, np.full(rows, 0.01)], 1), np.stack([lon0 + 0.01, np.full(rows, 0.01)], 1),
                            np.stack([lon0 + 0.01, np.zeros(rows)], 1), np.stack([lon0, np.zeros(rows)], 1)], 1)
        records = TileRecords(
            rows=np.zeros(rows, int), cols=np.arange(rows) * 16, heights=np.full(rows, 16), widths=np.full(rows, 16),
            padded=np.zeros(rows, bool), valid_fraction=np.ones(rows), lonlat=corners, embeddings=vectors.astype(np.float32),
        )
        acquired = datetime.fromisoformat(when) if when else None
        path = write_scene(
            store, name, modality=modality, acquired=acquired, tile_size=16, missing_bands=[], records=records,
            metadata={"model": {"weights_hash": weights_hash, "weights_source": "synthetic"}},
            emb_metadata={"dimension": dim, "weights_hash": weights_hash},
        )
        import pyarrow.parquet as pq

        from ofa_embed.indexes.vectors import embedding_matrix

        written[name] = embedding_matrix(pq.read_table(path, columns=["embedding"]).column(0))
    return np.concatenate([written[n] for n in sorted(written)])
