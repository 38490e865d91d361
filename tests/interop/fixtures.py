"""Fixtures of the five imported formats, written from their specifications in the exact layouts (small)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from rasterio.transform import Affine

SAMPLE_ORIGIN = (442830.0, 4172290.0)  # the bundled Sentinel-2 sample's UTM 18N grid (10 m)
SAMPLE_CENTRE = (-75.62, 37.68)


def unit_field(height: int, width: int, dim: int, seed: int = 0, source: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, dim)`` unit vectors that vary smoothly (or project ``source`` ``(bands, H, W)`` values)."""
    rng = np.random.default_rng(seed)
    if source is None:
        yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
        source = np.stack([np.sin(3 * xx), np.cos(2 * yy), xx * yy, np.sin(5 * (xx + yy))])
    bands = source.reshape(len(source), -1).astype(np.float64)
    bands = (bands - bands.mean(1, keepdims=True)) / (bands.std(1, keepdims=True) + 1e-9)
    vectors = (rng.normal(size=(dim, len(source))) @ bands).T + 0.05 * rng.normal(size=(bands.shape[1], dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.reshape(height, width, dim).astype(np.float32)


def aef_quantise(values: np.ndarray) -> np.ndarray:
    """The inverse of AEF's documented de-quantisation: q = sign(v) * sqrt(|v|) * 127.5, in -127..127."""
    return np.clip(np.round(np.sign(values) * np.sqrt(np.abs(values)) * 127.5), -127, 127).astype(np.int8)


def write_aef(root: Path, *, year: int = 2024, size: int = 256, bottom_up: bool = False, nodata_block: bool = True,
              source: np.ndarray | None = None, seed: int = 0) -> Path:
    """``<root>/<year>/18N/<name>.tiff``: a 64-band int8 COG-like GeoTIFF, bands A00..A63, nodata -128, UTM 18N."""
    values = unit_field(size, size, 64, seed, source)
    q = np.moveaxis(aef_quantise(values), -1, 0)
    if nodata_block:
        q[:, :20, :20] = -128
    x0, y0 = SAMPLE_ORIGIN
    transform = Affine(10, 0, x0, 0, -10, y0)
    if bottom_up:  # Source Cooperative's copy: origin in the south-west, positive y resolution, rows south to north
        transform = Affine(10, 0, x0, 0, 10, y0 - 10 * size)
        q = q[:, ::-1, :]
    path = root / str(year) / "18N" / f"xkcd{year}_18N_aef.tiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 64, "dtype": "int8", "crs": "EPSG:32618",
               "transform": transform, "nodata": -128, "tiled": True, "blockxsize": 64, "blockysize": 64}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(q)
        for i in range(64):
            dst.set_band_description(i + 1, f"A{i:02d}")
    return path


def write_tessera(root: Path, *, year: int = 2024, size: int = 96, seed: int = 1) -> Path:
    """geotessera's v1 layout: the int8 (H, W, 128) array, its float32 (H, W) scales and the landmask GeoTIFF."""
    lon, lat = -75.65, 37.65
    name = f"grid_{lon:.2f}_{lat:.2f}"
    q, scales = tessera_values(size, seed)
    folder = root / "global_0.1_degree_representation" / str(year) / name
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", q)
    np.save(folder / f"{name}_scales.npy", scales)
    masks = root / "global_0.1_degree_tiff_all"
    masks.mkdir(parents=True, exist_ok=True)
    x0, y0 = SAMPLE_ORIGIN
    with rasterio.open(masks / f"{name}.tiff", "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=Affine(10, 0, x0, 0, -10, y0)) as dst:
        dst.write(np.ones((1, size, size), np.uint8))
    return folder / f"{name}.npy"


def chip_grid(n_side: int, step: float = 0.01) -> list[shapely.Polygon]:
    """``n_side`` x ``n_side`` square chips around the sample's centre (EPSG:4326), row by row from the north."""
    lon0, lat0 = SAMPLE_CENTRE[0] - step * n_side / 2, SAMPLE_CENTRE[1] + step * n_side / 2
    return [shapely.box(lon0 + c * step, lat0 - (r + 1) * step, lon0 + (c + 1) * step, lat0 - r * step)
            for r in range(n_side) for c in range(n_side)]


def _geo(columns: str = "geometry", types: tuple[str, ...] = ("Polygon",), covering: bool = False) -> bytes:
    column: dict = {"encoding": "WKB", "geometry_types": list(types)}
    if covering:
        column["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    return json.dumps({"version": "1.1.0", "primary_column": columns, "columns": {columns: column}}).encode()


def write_majortom(root: Path, *, dataset: str = "Core-S2RGB-DINOv2", n_side: int = 6, dim: int = 1024,
                   row_group_size: int = 6, seed: int = 2) -> Path:
    """``<root>/<dataset>/embeddings/part_00001.parquet`` with the documented columns, small row groups."""
    polygons = chip_grid(n_side)
    n = len(polygons)
    rng = np.random.default_rng(seed)
    vectors = unit_field(n_side, n_side, dim, seed).reshape(n, dim)
    centres = shapely.centroid(np.array(polygons))
    times = [datetime(2021, 1 + i % 12, 1 + i % 27, 10, 30, tzinfo=UTC) for i in range(n)]
    table = pa.table({
        "unique_id": [f"mt-{i:04d}" for i in range(n)],
        "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "product_id": [f"S2B_MSIL2A_2021{i:04d}" for i in range(n)],
        "grid_cell": [f"{400 + i // n_side}U_{200 + i % n_side}R" for i in range(n)],
        "grid_row_u": [400 + i // n_side for i in range(n)],
        "grid_col_r": [200 + i % n_side for i in range(n)],
        "geometry": pa.array(shapely.to_wkb(polygons).tolist(), pa.binary()),
        "centre_lat": shapely.get_y(centres), "centre_lon": shapely.get_x(centres),
        "utm_footprint": ["POLYGON EMPTY"] * n, "utm_crs": ["EPSG:32618"] * n,
        "pixel_bbox": [[0, 0, 224, 224]] * n,
    })
    del rng
    path = root / dataset / "embeddings" / "part_00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_earthindex(path: Path, *, n_side: int = 6, seed: int = 3, points: bool = True) -> Path:
    """An Earth Index GeoParquet: ``id``, ``embedding`` (384), ``geometry`` (centroids), the ``emb`` footer."""
    polygons = chip_grid(n_side, 0.003)
    geometry = shapely.centroid(np.array(polygons)) if points else np.array(polygons)
    n = len(polygons)
    vectors = unit_field(n_side, n_side, 384, seed).reshape(n, 384)
    table = pa.table({"id": [f"ei-{i:05d}" for i in range(n)], "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
                      "geometry": pa.array(shapely.to_wkb(geometry).tolist(), pa.binary())})
    emb = {"version": "0.0.1",
           "model": {"id": "softcon-vit-s", "source": "https://github.com/zhu-xlab/softcon", "version": "v2", "name": "SoftCon"},
           "datetime": {"start_datetime": "2024-01-01T00:00:00Z", "end_datetime": "2024-12-31T23:59:59Z"},
           "embedding": {"embeddings_dim": 384, "embeddings_quantization": "none"}}
    table = table.replace_schema_metadata({b"geo": _geo(types=("Point",) if points else ("Polygon",)),
                                           b"emb": json.dumps(emb).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_clay(path: Path, *, version: str = "v0", n_side: int = 5, seed: int = 4) -> Path:
    """A Clay GeoParquet: v0 (``index``, ``source_url``, ``date``, ``embeddings`` 768) or v1.5 (``embedding`` 1024,
    ``datetime``), with a bbox covering (GeoParquet 1.1).
    """
    polygons = chip_grid(n_side, 0.023)
    n = len(polygons)
    dim = 768 if version == "v0" else 1024
    vectors = unit_field(n_side, n_side, dim, seed).reshape(n, dim)
    bounds = shapely.bounds(np.array(polygons))
    columns: dict = {"index": np.arange(n, dtype=np.int64),
                     "source_url": ["s3://clay-tiles-02/02/18SVG/18SVG_20220610.tif"] * n}
    if version == "v0":
        columns["date"] = pa.array([date(2022, 6, 10)] * n, pa.date32())
        columns["embeddings"] = pa.array(list(vectors), pa.list_(pa.float32()))
    else:
        columns["datetime"] = pa.array([datetime(2023, 7, 1, tzinfo=UTC)] * n, pa.timestamp("ms", tz="UTC"))
        columns["embedding"] = pa.array(list(vectors), pa.list_(pa.float32()))
    columns["geometry"] = pa.array(shapely.to_wkb(polygons).tolist(), pa.binary())
    columns["bbox"] = pa.StructArray.from_arrays([pa.array(bounds[:, k]) for k in range(4)], ["xmin", "ymin", "xmax", "ymax"])
    table = pa.table(columns).replace_schema_metadata({b"geo": _geo(covering=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=5)
    return path


def tessera_values(size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """TESSERA's int8 ``(H, W, 128)`` values and float32 ``(H, W)`` scales of a tile (``q * scale``), 8 x 8 px of the
    north-west corner without data (scale 0).
    """
    values = unit_field(size, size, 128, seed) * 3.0
    scales = np.abs(values).max(axis=2) / 127.0
    q = np.round(values / scales[..., None]).astype(np.int8)
    scales = scales.astype(np.float32)
    scales[:8, :8] = 0.0
    return q, scales


def write_tessera_zarr(root: Path, *, years: tuple[int, ...] = (2023, 2024), size: int = 96, extra: int = 64,
                       seed: int = 1) -> Path:
    """geotessera's Zarr v3 store ``<root>/tessera.zarr``: group ``utm18`` on the zone's 10 m grid (origin at the
    sample's), ``embeddings`` int8 ``(time, band, y, x)`` in (1, 128, 32, 32) chunks of (1, 128, 4096, 4096) shards,
    ``scales`` float32 ``(time, y, x)`` (fill +inf: no data), ``time``/``x``/``y``/``band`` coordinates, the
    ``geoemb:`` root and ``spatial:``/``proj:`` zone attributes. Each year holds the ``.npy`` fixture's tile (seed
    ``seed + k`` for the k-th year) in its north-west ``size`` x ``size`` px; ``extra`` px east of it are water (NaN)
    in the top half and unwritten land (+inf) below.
    """
    import zarr
    from zarr.codecs import BloscCodec

    height, width = size, size + extra
    path = root / "tessera.zarr"
    store = zarr.open_group(str(path), mode="w", zarr_format=3)
    store.attrs.update({
        "geoemb:type": "pixel", "geoemb:dimensions": 128, "geoemb:data_type": "int8", "geoemb:gsd": 10.0,
        "geoemb:model": "https://geotessera.org/model/1.0", "geoemb:spatial_layout": "utm_zones",
        "geoemb:quantization": {"method": "per_pixel_scale", "original_dtype": "float32", "quantized_dtype": "int8",
                                "scale": {"type": "array", "array_name": "scales", "nodata": "+inf"}},
    })
    zone = store.create_group("utm18")
    compressors = BloscCodec(cname="zstd", clevel=3)
    embeddings = zone.create_array("embeddings", shape=(len(years), 128, height, width), chunks=(1, 128, 32, 32),
                                   shards=(1, 128, 4096, 4096), dtype=np.int8, fill_value=np.int8(0),
                                   compressors=compressors, dimension_names=["time", "band", "y", "x"])
    scales = zone.create_array("scales", shape=(len(years), height, width), chunks=(1, 32, 32), shards=(1, 4096, 4096),
                               dtype=np.float32, fill_value=np.float32("inf"), compressors=compressors,
                               dimension_names=["time", "y", "x"])
    x0, y0 = SAMPLE_ORIGIN
    coordinates = {"x": x0 + (np.arange(width) + 0.5) * 10, "y": y0 - (np.arange(height) + 0.5) * 10,
                   "time": np.array(years, np.int32), "band": np.arange(128, dtype=np.int32)}
    for name, data in coordinates.items():
        zone.create_array(name, shape=data.shape, dtype=data.dtype, fill_value=0, compressors=compressors,
                          dimension_names=[name])[:] = data
    for k in range(len(years)):
        q, s = tessera_values(size, seed + k)
        embeddings[k, :, :size, :size] = np.moveaxis(q, -1, 0)
        scales[k, :size, :size] = s
        scales[k, : height // 2, size:] = np.nan
    zone.attrs.update({
        "zarr_conventions": [{"name": "spatial:"}, {"name": "proj:"}],
        "spatial:dimensions": ["y", "x"], "spatial:transform_type": "affine", "spatial:registration": "pixel",
        "spatial:transform": [10.0, 0.0, x0, 0.0, -10.0, y0], "spatial:shape": [height, width],
        "spatial:bbox": [x0, y0 - 10 * height, x0 + 10 * width, y0], "proj:code": "EPSG:32618",
    })
    return path
