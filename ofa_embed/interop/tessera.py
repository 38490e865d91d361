"""TESSERA embeddings as geotessera distributes them (v1 registry layout).

Specification followed: the geotessera documentation and README (https://github.com/ucam-eo/geotessera:
"Retrieve embeddings ... numpy arrays with CRS/transform information", "Native UTM projections preserved from
landmask tiles") and its registry layout:

- tiles of 0.1 x 0.1 degrees named by their centre, ``grid_<lon>_<lat>`` with two decimals (``grid_0.15_52.05``);
- ``global_0.1_degree_representation/<year>/grid_<lon>_<lat>/grid_<lon>_<lat>.npy``: int8, shape ``(H, W, 128)``
  (rows north to south, the 128 channels last);
- ``..._scales.npy`` beside it: float32, shape ``(H, W)`` (one scale per pixel; ``(H, W, 128)`` is accepted too);
  de-quantisation is ``value = q * scale``; a pixel whose scale is 0 or not finite has no data;
- ``global_0.1_degree_tiff_all/grid_<lon>_<lat>.tiff``: the landmask GeoTIFF whose CRS (the tile's UTM zone) and
  geotransform georeference the arrays (same ``H x W`` grid). It is looked for beside the ``.npy``, then in a
  ``global_0.1_degree_tiff_all`` folder above it.

The arrays are memory-mapped, so a ``--bbox`` reads only the rows of its window; a tile whose 0.1-degree cell misses
the bbox is not opened. A tile's scene name is ``grid_<lon>_<lat>_<year>`` (every year's tile has the same stem).
Pooling: the plain mean of a tile's valid pixels (TESSERA documents no normalisation). Valid pixels: a finite scale
in (0, 1), as geotessera's own ``valid_scale_mask`` has it (the published data holds a few corrupt huge finite scales).

The same embeddings published as a Zarr store are read by :mod:`ofa_embed.interop.tessera_zarr`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ofa_embed.errors import ProductError
from ofa_embed.interop.dense import DensePart, Grid, ReadStrip
from ofa_embed.interop.product import Product, Selection, scene_name, year_of_path, year_span

__all__ = ["DIMENSION", "MAX_VALID_SCALE", "PRODUCT", "TILE_NAME", "parts", "source_files", "valid_scales"]

TILE_NAME = re.compile(r"^grid_(-?\d+\.\d+)_(-?\d+\.\d+)$")
DIMENSION = 128
LANDMASK_FOLDER = "global_0.1_degree_tiff_all"
MAX_VALID_SCALE = 1.0  # geotessera: real scales run median 0.064, p99.99 0.137; larger ones are corrupt
PRODUCT = Product(
    "tessera", "TESSERA", "v1", "TESSERA", DIMENSION, "pixel", 10.0, "annual",
    {"method": "linear", "original_dtype": "float32", "quantized_dtype": "int8",
     "formula": "q * scale (per-pixel float32 scale, <name>_scales.npy)", "link": "https://github.com/ucam-eo/geotessera"},
    "CC-BY-4.0",
    {"documentation": "https://github.com/ucam-eo/geotessera", "model": "https://arxiv.org/abs/2506.20380",
     "source-data": "https://sentinels.copernicus.eu/"},
)


def valid_scales(scales: np.ndarray) -> np.ndarray:
    """Where a scale stands for data: finite, positive and below :data:`MAX_VALID_SCALE` (geotessera's rule)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(scales) & (scales > 0) & (scales < MAX_VALID_SCALE)


def source_files(paths: list[Path]) -> list[Path]:
    """The embedding arrays given (``grid_*.npy``, not their ``_scales``) and Zarr stores (folders holding a
    ``zarr.json``), folders searched recursively.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and (path / "zarr.json").is_file():
            found.append(path)
            continue
        if not path.is_dir():
            found.append(path)
            continue
        stores = sorted(p.parent for p in path.rglob("zarr.json") if p.parent.suffix == ".zarr")
        found += stores
        found += [p for p in sorted(path.rglob("grid_*.npy")) if not p.stem.endswith("_scales")
                  and not any(s in p.parents for s in stores)]
    return found


def _landmask(path: Path) -> Path:
    for folder in [path.parent, *(parent / LANDMASK_FOLDER for parent in path.parents)]:
        for suffix in (".tiff", ".tif"):
            if (folder / f"{path.stem}{suffix}").is_file():
                return folder / f"{path.stem}{suffix}"
    raise ProductError(f"{path}: no landmask {path.stem}.tiff beside it or in a {LANDMASK_FOLDER} folder above it; "
                       "fetch it with the tile (it holds the tile's UTM grid)")


def parts(path: Path, selection: Selection) -> list[DensePart]:
    """The TESSERA tile at ``path`` if it meets ``selection`` (checked; its arrays are memory-mapped, not read).

    Raises:
        ProductError: a name not ``grid_<lon>_<lat>``, missing scales or landmask, shapes or dtypes other than
            documented, or no year in the path.
    """
    import rasterio
    from pyproj import CRS

    match = TILE_NAME.match(path.stem)
    if path.suffix != ".npy" or not match:
        raise ProductError(f"{path}: not a TESSERA tile array (grid_<lon>_<lat>.npy) or Zarr store; is --format right?")
    lon, lat = float(match.group(1)), float(match.group(2))
    if not selection.overlaps_box(np.array(lon - 0.05), np.array(lat - 0.05), np.array(lon + 0.05), np.array(lat + 0.05)):
        return []
    year = year_of_path(path)
    if year is None:
        raise ProductError(f"{path}: no year in its path; keep the registry's layout (<year>/grid_<lon>_<lat>/...)")
    first, last = year_span(year)
    if not selection.overlaps_time(first, last):
        return []
    scales_path = path.with_name(f"{path.stem}_scales.npy")
    if not scales_path.is_file():
        raise ProductError(f"{path}: no {scales_path.name} beside it; the int8 values mean nothing without their scales")
    try:
        q = np.load(path, mmap_mode="r")
        scales = np.load(scales_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: not a readable .npy pair ({exc})") from None
    if q.dtype != np.int8 or q.ndim != 3 or q.shape[2] != DIMENSION:
        raise ProductError(f"{path}: {q.dtype} array of shape {q.shape}, not TESSERA's int8 (H, W, {DIMENSION})")
    if scales.shape not in (q.shape[:2], q.shape) or scales.dtype != np.float32:
        raise ProductError(f"{scales_path}: {scales.dtype} {scales.shape}, not float32 {q.shape[:2]} (one scale a pixel)")
    with rasterio.open(_landmask(path)) as mask:
        if (mask.height, mask.width) != q.shape[:2] or mask.crs is None:
            raise ProductError(f"{mask.name}: {mask.height} x {mask.width} with CRS {mask.crs}, not the georeferenced "
                               f"{q.shape[0]} x {q.shape[1]} grid of {path.name}")
        grid = Grid(mask.width, mask.height, tuple(mask.transform)[:6], CRS.from_wkt(mask.crs.to_wkt()))
        crs = mask.crs.to_string()
    window = grid.window_of(selection)
    if window is None:
        return []

    def read(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(scales[r0:r1, c0:c1], np.float32)
        per_pixel = s if s.ndim == 2 else s[..., 0]
        valid = valid_scales(per_pixel)
        values = np.asarray(q[r0:r1, c0:c1], np.float32) * (s[..., None] if s.ndim == 2 else s)
        return np.where(valid[..., None], values, 0.0).astype(np.float32), valid

    @contextmanager
    def opened() -> Iterator[ReadStrip]:
        yield read

    return [DensePart(PRODUCT, scene_name(path.stem, year), str(path), grid, crs, window, first, False, opened)]
