"""AlphaEarth Foundations / Google Satellite Embedding V1 (annual), as distributed as COGs.

Specification followed: "AlphaEarth Foundations GCS data"
(https://developers.google.com/earth-engine/guides/aef_on_gcs_readme, the README of ``gs://alphaearth_foundations``)
and the Earth Engine catalog entry ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``:

- layout: ``<year>/<UTM zone><N|S>/<file>.tiff``, each file 8192 x 8192 pixels of 10 m in its UTM zone (the CRS and
  geotransform are the file's own), with overviews; the year is the folder's (or, failing that, one in the name);
- bands: 64, in order ``A00`` .. ``A63`` (the axes of the embedding; the COGs name their channels so);
- dtype: int8; nodata: -128 (masked in every channel at once; the COGs set it as their NoData value);
- de-quantisation: ``value = sign(q) * (|q| / 127.5) ** 2``, giving native values in [-1, 1]; each de-quantised
  pixel has unit Euclidean length, and overview pixels are means rescaled to unit length.

Where sources disagree: third-party readers de-quantise as ``q / 128`` (linear). The bucket's README, the primary
documentation, gives the squared mapping above, and only it yields unit-length pixels as that README says they are
(a linear reading of the same bytes gives lengths far from 1: the tests check this on a fixture). So it is used.

The copy on Source Cooperative (``tge-labs/aef``) stores the same COGs "bottom-up" (positive y resolution, origin in
the south-west); its ``.vrt`` files flip them. Both read correctly here: footprints come from each file's affine
transform, whatever its sign. Pooling: the mean of a tile's valid pixels, rescaled to unit length as the product's
overviews are. A file's scene name is its stem, with ``_<year>`` added where the stem does not name the year (two
years of one tile are two scenes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ofa_embed.errors import ProductError
from ofa_embed.interop.dense import DensePart, Grid, ReadStrip
from ofa_embed.interop.product import Product, Selection, scene_name, year_of_path, year_span

__all__ = ["BANDS", "NODATA", "PRODUCT", "dequantise", "parts", "source_files"]

BANDS = tuple(f"A{i:02d}" for i in range(64))
NODATA = -128
SUFFIXES = (".tif", ".tiff", ".vrt")
README = "https://developers.google.com/earth-engine/guides/aef_on_gcs_readme"
PRODUCT = Product(
    "aef", "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", "1", "AlphaEarth Foundations", 64, "pixel", 10.0, "annual",
    {"method": "sqrt_scale", "original_dtype": "float32", "quantized_dtype": "int8", "nodata": NODATA,
     "formula": "sign(q) * (|q| / 127.5) ** 2", "link": README},
    "CC-BY-4.0",
    {"documentation": README, "model": "https://arxiv.org/abs/2507.22291",
     "source-data": "https://developers.google.com/earth-engine/datasets/catalog/GOOGLE_SATELLITE_EMBEDDING_V1_ANNUAL"},
)


def dequantise(q: np.ndarray) -> np.ndarray:
    """Native float32 values of int8 ``q`` (the README's mapping; nodata is the caller's to mask)."""
    v = q.astype(np.float32)
    return np.sign(v) * (np.abs(v) / 127.5) ** 2


def source_files(paths: list[Path]) -> list[Path]:
    """The COGs (or VRTs) given, folders searched recursively."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES) if path.is_dir() else [path]
    return found


def _check(path: Path, src: object) -> None:
    count, dtypes, nodata, descriptions, crs = (getattr(src, k) for k in ("count", "dtypes", "nodata", "descriptions",
                                                                           "crs"))
    if count != 64 or dtypes[0] != "int8":
        raise ProductError(f"{path}: {count} bands of {dtypes[0]}, not AEF's 64 int8 bands A00..A63; is --format right?")
    if nodata is not None and nodata != NODATA:
        raise ProductError(f"{path}: nodata {nodata}, not AEF's {NODATA}; is it an AEF file?")
    names = [d for d in descriptions if d]
    if names and tuple(names) != BANDS:
        raise ProductError(f"{path}: bands named {names[:3]}..., not A00..A63 in order; re-export it in band order")
    if crs is None:
        raise ProductError(f"{path}: no CRS; AEF files carry their UTM zone's")


def parts(path: Path, selection: Selection) -> list[DensePart]:
    """The AEF file at ``path`` if it meets ``selection`` (checked, not read: only its windows are read later).

    Raises:
        ProductError: not a 64-band int8 raster, another nodata value, or no year in its path.
    """
    import rasterio
    from pyproj import CRS
    from rasterio.windows import Window

    year = year_of_path(path)
    if year is None:
        raise ProductError(f"{path}: no year in its path; keep the bucket's layout (<year>/<zone>/file.tiff)")
    first, last = year_span(year)
    if not selection.overlaps_time(first, last):
        return []
    try:
        with rasterio.open(path) as src:
            _check(path, src)
            grid = Grid(src.width, src.height, tuple(src.transform)[:6], CRS.from_wkt(src.crs.to_wkt()))
            crs = src.crs.to_string()
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: not a readable raster ({str(exc).splitlines()[0]})") from None
    window = grid.window_of(selection)
    if window is None:
        return []

    @contextmanager
    def opened() -> Iterator[ReadStrip]:
        with rasterio.open(path) as src:
            def read(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
                q = src.read(window=Window(c0, r0, c1 - c0, r1 - r0))
                valid = (q != NODATA).all(axis=0)
                return np.moveaxis(dequantise(q), 0, -1), valid

            yield read

    return [DensePart(PRODUCT, scene_name(path.stem, year), str(path), grid, crs, window, first, True, opened)]
