"""TESSERA embeddings in the Zarr v3 store geotessera publishes and reads (``GeoTesseraZarr``).

Specification followed: geotessera's architecture guide, "Zarr Store (Cloud-Native Access)"
(https://github.com/ucam-eo/geotessera/blob/main/docs/architecture.rst), and the layout its store builder documents
and writes (``geotessera/zarr.py``: module docstring, ``init_store``, ``_create_zone_group``); the root attributes
follow the geo-embeddings Zarr convention (``geoemb:``, https://github.com/geo-embeddings/embeddings-zarr-convention,
v1), the zone attributes the ``spatial:`` and ``proj:`` Zarr conventions:

- one store; root attributes ``geoemb:type`` ``pixel``, ``geoemb:dimensions`` 128, ``geoemb:data_type`` ``int8``,
  ``geoemb:quantization`` ``{"method": "per_pixel_scale", "scale": {"array_name": "scales", "nodata": "+inf"}}``
  and ``geoemb:model`` (``https://geotessera.org/model/<version>``);
- one group per UTM zone, ``utm<zone:02d>``, on the zone's own 10 m grid, with attributes ``proj:code``
  (``EPSG:326<zone>`` in both hemispheres: southern northings are shifted by -10,000,000 m into one continuous
  axis), ``spatial:transform`` (the six affine terms, origin at the top-left pixel edge), ``spatial:shape``
  (``[H, W]``) and ``spatial:dimensions`` (``["y", "x"]``);
- in each zone: ``embeddings`` int8 of dimensions ``(time, band, y, x)``, shape ``(T, 128, H, W)``, inner chunks
  ``(1, 128, 32, 32)`` in shards of ``(1, 128, 4096, 4096)``, fill 0; ``scales`` float32 ``(time, y, x)``, chunks
  ``(1, 32, 32)``, fill +inf; coordinate arrays ``time`` (int32 years), ``x`` and ``y`` (float64 pixel centres) and
  ``band`` (int32);
- de-quantisation ``value = embeddings[t, :, y, x] * scales[t, y, x]``; a NaN scale is water, +inf land without
  data, and a pixel is data where its scale is finite, positive and below 1 (geotessera's ``valid_scale_mask``,
  :func:`ofa_embed.interop.tessera.valid_scales`).

TorchGeo 0.9's ``TesseraEmbeddings`` reads TESSERA's GeoTIFF exports, not this store.

Each year of each zone is one scene, ``<store stem>_utm<zone>_<year>``. A ``--bbox`` becomes a pixel window of the
zone's grid and zones it misses are not opened further; the window is read in strips of whole tiles, sliced from
the arrays, so zarr fetches only the inner chunks under them (scales first: embeddings only where a strip has data).
Without ``--bbox`` whole zones are read: give one for the published store, which spans the globe.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ofa_embed.errors import ProductError
from ofa_embed.interop.dense import DensePart, Grid, ReadStrip
from ofa_embed.interop.product import Product, Selection, year_span
from ofa_embed.interop.tessera import DIMENSION, PRODUCT, valid_scales

__all__ = ["EMBEDDING_DIMS", "SCALE_DIMS", "ZONE_GROUP", "is_store", "parts", "product_of"]

ZONE_GROUP = re.compile(r"^utm(\d{2})$")
EMBEDDING_DIMS = ("time", "band", "y", "x")
SCALE_DIMS = ("time", "y", "x")
LAYOUT = "https://github.com/ucam-eo/geotessera/blob/main/docs/architecture.rst"


def is_store(path: Path) -> bool:
    """Whether ``path`` is a Zarr store (a folder holding a ``zarr.json``) rather than a ``.npy`` tile."""
    return path.is_dir() and (path / "zarr.json").is_file()


def product_of(path: Path, attrs: dict[str, Any]) -> Product:
    """TESSERA's record for a store whose root attributes are ``attrs``: version 1.0 (the ``.npy`` tiles' ``v1``, the
    same vectors) unless ``geoemb:model`` names another.

    Raises:
        ProductError: root attributes that say the store holds something else.
    """
    if attrs.get("geoemb:type", "pixel") != "pixel" or attrs.get("geoemb:dimensions", DIMENSION) != DIMENSION:
        raise ProductError(f"{path}: a Zarr store of {attrs.get('geoemb:type')} embeddings of "
                           f"{attrs.get('geoemb:dimensions')} dimensions, not TESSERA's {DIMENSION}-d pixels; "
                           "is --format right?")
    method = attrs.get("geoemb:quantization", {}).get("method", "per_pixel_scale")
    if method != "per_pixel_scale":
        raise ProductError(f"{path}: quantised by {method!r}, not TESSERA's per_pixel_scale; is --format right?")
    version = str(attrs.get("geoemb:model", "")).rstrip("/").rsplit("/", 1)[-1]
    quantization = {**PRODUCT.quantization, "formula": "q * scale (per-pixel float32 scale, the zone's scales array)",
                    "link": LAYOUT}
    if version in ("", "1", "1.0"):
        return replace(PRODUCT, quantization=quantization)
    return replace(PRODUCT, version=f"v{version}", quantization=quantization)


def _zones(path: Path, root: Any) -> list[tuple[str, Any]]:
    if "embeddings" in root:  # a zone group given on its own
        return [(path.name, root)]
    zones = sorted((name, group) for name, group in root.groups() if ZONE_GROUP.match(name))
    if not zones:
        raise ProductError(f"{path}: a Zarr store without utm<zone> groups; give the root of a TESSERA store "
                           "(geotessera's layout: utm<NN>/embeddings, scales, time, x, y)")
    return zones


def _dims(array: Any) -> tuple[str, ...]:
    return tuple(getattr(array.metadata, "dimension_names", None) or ())


def _checked(path: Path, name: str, zone: Any) -> tuple[Any, Any, np.ndarray, Grid]:
    """The zone's ``embeddings``, ``scales``, years and grid, checked against the documented layout."""
    from pyproj import CRS

    where = f"{path}/{name}"
    for array in ("embeddings", "scales", "time"):
        if array not in zone:
            raise ProductError(f"{where}: no {array!r} array; a TESSERA zone holds embeddings, scales, time, x and y")
    embeddings, scales = zone["embeddings"], zone["scales"]
    years = np.asarray(zone["time"][:]).astype(int)
    attrs = dict(zone.attrs)
    if embeddings.dtype != np.int8 or _dims(embeddings) != EMBEDDING_DIMS or embeddings.shape[1] != DIMENSION:
        raise ProductError(f"{where}/embeddings: {embeddings.dtype} {embeddings.shape} of dimensions "
                           f"{_dims(embeddings)}, not int8 (T, {DIMENSION}, H, W) of {EMBEDDING_DIMS}")
    t, _, height, width = embeddings.shape
    if scales.dtype != np.float32 or _dims(scales) != SCALE_DIMS or scales.shape != (t, height, width):
        raise ProductError(f"{where}/scales: {scales.dtype} {scales.shape} of dimensions {_dims(scales)}, not float32 "
                           f"({t}, {height}, {width}) of {SCALE_DIMS}")
    if len(years) != t:
        raise ProductError(f"{where}/time: {len(years)} years for {t} time steps of its embeddings")
    transform, shape, code = attrs.get("spatial:transform"), attrs.get("spatial:shape"), attrs.get("proj:code")
    if not transform or len(transform) != 6 or not code:
        raise ProductError(f"{where}: no spatial:transform (6 terms) and proj:code attributes; the zone's grid is "
                           "unknown (rewrite it with geotessera's zarr tools)")
    if shape is not None and list(shape) != [height, width]:
        raise ProductError(f"{where}: spatial:shape {shape}, but its arrays are {height} x {width} px")
    try:
        crs = CRS.from_user_input(code)
    except Exception:  # pyproj raises its CRSError, and others on malformed input
        raise ProductError(f"{where}: proj:code {code!r} is not a CRS pyproj knows") from None
    return embeddings, scales, years, Grid(width, height, tuple(float(v) for v in transform), crs)


def parts(path: Path, selection: Selection) -> list[DensePart]:
    """Each zone's year in the store at ``path`` that meets ``selection`` (checked; nothing of the arrays is read).

    Raises:
        ProductError: not a Zarr store, or one not in geotessera's documented layout.
    """
    import zarr

    try:
        root = zarr.open_group(str(path), mode="r")
    except (OSError, ValueError, zarr.errors.GroupNotFoundError) as exc:
        raise ProductError(f"{path}: not a readable Zarr store ({str(exc).splitlines()[0]})") from None
    product = product_of(path, dict(root.attrs))
    found: list[DensePart] = []
    for name, zone in _zones(path, root):
        embeddings, scales, years, grid = _checked(path, name, zone)
        window = grid.window_of(selection)
        if window is None:
            continue
        for index, year in enumerate(years.tolist()):
            first, last = year_span(year)
            if selection.overlaps_time(first, last):
                found.append(DensePart(product, f"{path.stem}_{name}_{year}", f"{path}#{name}/time={year}", grid,
                                       grid.crs.to_string(), window, first, False,
                                       _opener(embeddings, scales, index)))
    return found


def _opener(embeddings: Any, scales: Any, index: int) -> Any:
    @contextmanager
    def opened() -> Iterator[ReadStrip]:
        def read(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
            s = np.asarray(scales[index, r0:r1, c0:c1], np.float32)
            valid = valid_scales(s)
            values = np.zeros((r1 - r0, c1 - c0, DIMENSION), np.float32)
            columns = np.flatnonzero(valid.any(axis=0))
            if len(columns):  # the embeddings' chunks only where the strip has data
                a, b = int(columns[0]), int(columns[-1]) + 1
                q = np.moveaxis(np.asarray(embeddings[index, :, r0:r1, c0 + a : c0 + b]), 0, -1)
                values[:, a:b] = q.astype(np.float32) * np.where(valid, s, 0.0)[:, a:b, None]
            return values, valid

        yield read

    return opened
