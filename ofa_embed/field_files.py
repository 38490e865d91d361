"""Embedding fields on disk: one Cloud-Optimized GeoTIFF per scene, ``STORE/fields/<scene>.tif``.

A field holds one pixel per model patch (16 px patches of 10 m pixels: 160 m), on the scene's own grid
(its CRS; the field's pixel edges fall on the scene's patch edges, origin at the scene's origin), one
band per embedding dimension (described ``emb_000``, ``emb_001``, ...). How each pixel was made is in the
file's ``OFA_EMBED_FIELD`` tag (JSON) and in the scene's store file (``ofa_embed`` metadata, key ``field``).

Stored dtypes (``--field-dtype``):

- ``float32``: the tokens as computed; nodata NaN.
- ``float16``: half the bytes (GDAL's half-precision GeoTIFF: Float32 with ``NBITS=16``, read back as float32
  by GDAL 3.x and rasterio); nodata NaN. Relative error at most 2^-11 per value (rounded to nearest).
- ``int8``: a quarter of the bytes, per pixel a shared power-of-two-ish scale, as TESSERA stores a scale
  per pixel; but in the same file, so that GDAL and QGIS read one raster. Band ``D + 1``
  (``scale_exponent``) holds ``e``; every value of the pixel is ``q * 2 ** (e / 8)`` for its int8 ``q`` in
  -127..127. ``e`` is the smallest integer with ``127 * 2 ** (e / 8) >= max |v|`` of the pixel, so the
  error of any value is at most half a step: ``|v - v'| <= 2 ** (e / 8) / 2 <= 1.0905 * max|v| / 254``
  (the steps of ``e`` are 9 % apart). -128 is nodata in every band.

Overviews (down to about 32 px): the mean of the pixels for floats (a pooled embedding is a mean of tokens too),
the nearest pixel for int8 (a mean of quantised values under different scales is no value). Blocks of 64 px,
pixel-interleaved, ZSTD level 1 (:func:`write_field` says why).
Every field is written under a temporary name and renamed (or uploaded whole) once complete.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from ofa_embed.atomic import atomic_target
from ofa_embed.errors import ConfigError, StoreError
from ofa_embed.location import AnyPath, RemotePath, as_location

if TYPE_CHECKING:
    import xarray

__all__ = [
    "FIELDS_DIR", "FIELD_BLOCK", "FIELD_DTYPES", "FIELD_MEM_BYTES", "FIELD_TAG", "INT8_NODATA", "INT8_SCHEME",
    "FieldGrid", "check_field_dtype", "dequantise", "field_path", "field_record", "list_fields", "quantise",
    "read_field", "read_field_array", "write_class_raster", "write_field",
]

FIELDS_DIR = "fields"
FIELD_DTYPES = ("float32", "float16", "int8")
FIELD_TAG = "OFA_EMBED_FIELD"
INT8_NODATA = -128
SCALE_STEPS = 8  # scale exponent steps per doubling: scales 9 % apart
# what a field's record says of its int8 values
INT8_SCHEME = {"scheme": "per-pixel power-of-two scale", "scale_band": "last (scale_exponent)",
               "value": f"q * 2 ** (e / {SCALE_STEPS})", "nodata": INT8_NODATA}
_BLOCK = 128
FIELD_BLOCK = 64  # px: a block of 192 float32 bands is 3 MiB
FIELD_MEM_BYTES = 256 * 2**20  # fields up to this size are staged for their COG in memory, larger ones on disk


def check_field_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`FIELD_DTYPES`.

    Raises:
        ConfigError: any other name.
    """
    if dtype not in FIELD_DTYPES:
        raise ConfigError(f"field dtype {dtype!r}: choose one of {', '.join(FIELD_DTYPES)}")
    return dtype


@dataclass(frozen=True)
class FieldGrid:
    """The pixel grid of a field: one pixel per ``patch`` x ``patch`` scene pixels from the scene's origin.

    Attributes:
        width, height: pixels (``ceil`` of the scene's size over the patch: the last column and row may run past
            the scene's edge, as its padded edge tiles do).
        transform: the field's affine (the scene's, scaled by ``patch``).
        crs: the scene's CRS as WKT.
        patch: scene pixels per field pixel along each axis.
    """

    width: int
    height: int
    transform: Affine
    crs: str
    patch: int

    @classmethod
    def of_scene(cls, transform: Affine, width: int, height: int, patch: int, crs: str) -> FieldGrid:
        """The field grid of a scene of ``width`` x ``height`` px with ``transform``."""
        return cls(-(-width // patch), -(-height // patch), transform @ Affine.scale(patch), crs, patch)


def field_path(store: str | AnyPath, scene: str) -> AnyPath:
    """Where the field of ``scene`` lies in ``store``."""
    return as_location(store) / FIELDS_DIR / f"{scene}.tif"


def list_fields(store: str | AnyPath) -> dict[str, AnyPath]:
    """Scene name -> field file of every field in ``store`` (temporary files left out)."""
    folder = as_location(store) / FIELDS_DIR
    if not folder.is_dir():
        return {}
    found: list[AnyPath] = sorted(folder.glob("*.tif"), key=str)
    return {p.stem: p for p in found if not p.name.startswith(".")}


def quantise(values: np.ndarray) -> np.ndarray:
    """``(D, H, W)`` float32 (NaN: nodata) -> ``(D + 1, H, W)`` int8: values, then the scale exponent band
    (see the module docstring); -128 in every band where a pixel is nodata.
    """
    nodata = np.isnan(values).any(axis=0)
    peak = np.nanmax(np.abs(np.where(nodata, 0.0, values)), axis=0)
    with np.errstate(divide="ignore"):
        exponent = np.ceil(SCALE_STEPS * np.log2(np.maximum(peak, 1e-30) / 127.0))
    exponent = np.clip(exponent, -127, 127)
    scale = np.exp2(exponent / SCALE_STEPS).astype(np.float32)
    q = np.clip(np.rint(np.where(nodata, 0.0, values) / scale), -127, 127).astype(np.int8)
    out = np.concatenate([q, exponent.astype(np.int8)[None]], axis=0)
    out[:, nodata] = INT8_NODATA
    return out


def dequantise(stored: np.ndarray) -> np.ndarray:
    """``(D + 1, H, W)`` int8 of :func:`quantise` -> ``(D, H, W)`` float32, NaN where nodata."""
    q, exponent = stored[:-1], stored[-1]
    nodata = exponent == INT8_NODATA
    values = q.astype(np.float32) * np.exp2(exponent.astype(np.float32) / SCALE_STEPS)
    values[:, nodata] = np.nan
    return values


def _overview_count(grid: FieldGrid) -> int:
    """Overview levels down to about 32 px on the longer side; at least one for a field of 2 px or more."""
    longer = max(grid.width, grid.height)
    return 0 if longer < 2 else max(1, math.ceil(math.log2(longer / 32)))


def write_field(target: AnyPath, values: np.ndarray, grid: FieldGrid, dtype: str, record: dict[str, Any]) -> AnyPath:
    """Write ``values`` ``(D, H, W)`` float32 (NaN: nodata) as a COG at ``target``, stored as ``dtype``, with
    ``record`` (how the pixels were made) as its :data:`FIELD_TAG` tag.

    How, for speed (a 96 x 96 px field of 192 bands: 0.56 s with the COG driver's own overviews and DEFLATE,
    0.04 s so): the values are staged band by band (GDAL's MEM driver, or a plain GeoTIFF in a temporary folder
    above :data:`FIELD_MEM_BYTES`), their overviews built there band by band (the COG driver builds them from
    its pixel-interleaved copy, decoding every block once per band), and the COG driver copies both
    (``OVERVIEWS=FORCE_USE_EXISTING``) into pixel-interleaved blocks of :data:`FIELD_BLOCK` px (a pixel's
    vector in one block), ZSTD level 1 without a predictor: embeddings hardly compress (DEFLATE level 6 with
    the floating-point predictor saved 4 % more at 2.5x the time).

    Raises:
        StoreError: the file cannot be written (nothing is left at ``target``).
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    check_field_dtype(dtype)
    dim = values.shape[0]
    nodata: float
    if dtype == "int8":
        data, nodata, resampling = quantise(values), INT8_NODATA, Resampling.nearest
        names = [f"emb_{i:03d}" for i in range(dim)] + ["scale_exponent"]
    elif dtype == "float16":  # GDAL's half-precision GeoTIFF (Float32 with NBITS=16), rounded to nearest here first
        data, nodata, resampling = values.astype(np.float16).astype(np.float32), float("nan"), Resampling.average
        names = [f"emb_{i:03d}" for i in range(dim)]
    else:
        data, nodata, resampling = values.astype(np.float32, copy=False), float("nan"), Resampling.average
        names = [f"emb_{i:03d}" for i in range(dim)]
    profile = {"width": grid.width, "height": grid.height, "count": len(names), "dtype": data.dtype.name,
               "crs": grid.crs, "transform": grid.transform, "nodata": nodata, "interleave": "band"}
    levels = _overview_count(grid)
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ofa-embed-field-") as scratch, \
            atomic_target(target, (OSError, RasterioError)) as tmp:
        in_memory = data.nbytes <= FIELD_MEM_BYTES
        staged = rasterio.open("field", "w", driver="MEM", **profile) if in_memory else \
            rasterio.open(Path(scratch) / "field.tif", "w", driver="GTiff", **profile)
        with staged as dst:
            dst.write(data)
            dst.descriptions = tuple(names)
            dst.update_tags(**{FIELD_TAG: json.dumps(record, default=str)})
            if levels:
                dst.build_overviews([2**k for k in range(1, levels + 1)], resampling)
            if in_memory:
                _copy_cog(dst, tmp, levels, dtype)
        if not in_memory:
            _copy_cog(Path(scratch) / "field.tif", tmp, levels, dtype)
    return target


def _copy_cog(source: Any, target: Any, levels: int, dtype: str) -> None:
    """The COG copy of :func:`write_field`'s staged ``source`` (a dataset or a path) at ``target``."""
    import rasterio.shutil

    # GDAL's COG driver writes 64 px blocks as asked but warns that it expects 128 or more, on every field:
    # that one warning is held back, anything else it says still reaches the log
    gdal_log = logging.getLogger("rasterio._env")
    quiet = _DropMessage("BLOCKSIZE creation option")
    gdal_log.addFilter(quiet)
    try:
        rasterio.shutil.copy(source, target, driver="COG", COMPRESS="ZSTD", LEVEL=1, PREDICTOR="NO",
                             BLOCKSIZE=FIELD_BLOCK, OVERVIEWS="FORCE_USE_EXISTING" if levels else "NONE", NUM_THREADS=1,
                             **({"NBITS": 16} if dtype == "float16" else {}))
    finally:
        gdal_log.removeFilter(quiet)


class _DropMessage(logging.Filter):
    """Drops log records whose message holds ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _open(path: AnyPath) -> Any:
    import rasterio
    from rasterio.io import MemoryFile

    if isinstance(path, RemotePath):
        return MemoryFile(path.read_bytes()).open()
    return rasterio.open(path)


def field_record(path: AnyPath) -> dict[str, Any]:
    """The :data:`FIELD_TAG` record of a field file.

    Raises:
        StoreError: the file is missing, unreadable, or not a field.
    """
    from rasterio.errors import RasterioError

    try:
        with _open(path) as src:
            tag = src.tags().get(FIELD_TAG)
    except (OSError, RasterioError) as exc:
        raise StoreError(f"{path}: cannot read the field ({exc})") from None
    if tag is None:
        raise StoreError(f"{path}: not an ofa-embed field (no {FIELD_TAG} tag); re-extract with --dense")
    record: dict[str, Any] = json.loads(tag)
    return record


def read_field_array(path: AnyPath) -> tuple[np.ndarray, FieldGrid, dict[str, Any]]:
    """``(values (D, H, W) float32, NaN: nodata, grid, record)`` of a field file, de-quantised.

    Raises:
        StoreError: the file is missing, unreadable, or not a field.
    """
    from rasterio.errors import RasterioError

    record = field_record(path)
    try:
        with _open(path) as src:
            stored = src.read()
            grid = FieldGrid(src.width, src.height, src.transform, src.crs.to_wkt(), int(record.get("patch_px", 1)))
    except (OSError, RasterioError) as exc:
        raise StoreError(f"{path}: cannot read the field ({exc})") from None
    if record.get("dtype") == "int8":
        values = dequantise(stored)
    else:
        values = stored.astype(np.float32, copy=False)
    return values, grid, record


def read_field(store: str | AnyPath, scene: str) -> xarray.DataArray:
    """The field of ``scene`` in ``store`` as an ``xarray.DataArray`` ``(band, y, x)`` of float32 (de-quantised,
    NaN where nodata), with pixel-centre ``x``/``y`` coordinates in the scene's CRS, ``band`` named
    ``emb_000``..., and attrs ``crs`` (WKT), ``transform`` (6 affine terms), ``record`` (how it was made).

    Raises:
        StoreError: the store holds no field of ``scene`` (naming those it holds).
    """
    import xarray

    path = field_path(store, scene)
    if not path.is_file():
        held = sorted(list_fields(store))
        hint = f"it holds fields of {', '.join(held[:5])}" if held else "it holds none: extract with --dense"
        raise StoreError(f"{store}: no field of scene {scene!r}; {hint}")
    values, grid, record = read_field_array(path)
    t = grid.transform
    xs = t.c + t.a * (np.arange(grid.width) + 0.5)
    ys = t.f + t.e * (np.arange(grid.height) + 0.5)
    return xarray.DataArray(
        values, dims=("band", "y", "x"),
        coords={"band": [f"emb_{i:03d}" for i in range(values.shape[0])], "y": ys, "x": xs},
        name=scene, attrs={"crs": grid.crs, "transform": tuple(t)[:6], "record": record},
    )


def write_class_raster(target: AnyPath, codes: np.ndarray, grid: FieldGrid, classes: list[str]) -> AnyPath:
    """Write ``codes`` ``(H, W)`` (class index, -1: none) as a uint8 COG on ``grid`` (nodata 255), class names in
    the ``OFA_EMBED_CLASSES`` tag (JSON list) and a colour table, for QGIS and ``ofa-embed map``.

    Raises:
        ConfigError: more than 254 classes. StoreError: the file cannot be written.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.errors import RasterioError

    if len(classes) > 254:
        raise ConfigError(f"{len(classes)} classes do not fit a uint8 class raster (at most 254)")
    data = np.where(codes < 0, 255, codes).astype(np.uint8)
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "uint8",
               "crs": grid.crs, "transform": grid.transform, "nodata": 255}
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ofa-embed-classes-") as scratch, \
            atomic_target(target, (OSError, RasterioError)) as tmp:
        plain = Path(scratch) / "classes.tif"
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, {i: (*palette[i % len(palette)], 255) for i in range(len(classes))})
            dst.update_tags(OFA_EMBED_CLASSES=json.dumps(classes))
            dst.set_band_description(1, "class")
        rasterio.shutil.copy(plain, tmp, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=_BLOCK,
                             OVERVIEW_COUNT=_overview_count(grid), RESAMPLING="NEAREST")
    return target
