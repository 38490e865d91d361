"""What every imported product shares: its record, the store identity made from it, selection, and writing.

An imported store is an ordinary store (:mod:`ofa_embed.store.geoparquet`, chip-file layout: ``path``, ``label``,
``crs`` columns) whose ``ofa_embed`` footer names the product instead of a model's weights::

    model      name "<product>:<model>", config {"imported": true, ...}, weights_hash (see below),
               weights_source "imported:<product>/<version>", pretrained true, pooling, precision "as published"
    imported   product, version, model, format, kind (pixel/chip), dimension, gsd, temporal_resolution,
               quantization (the product's, as read), license, links (documentation, model, source data),
               source (the file read), tile_size (pixels of the product, pixel products)
    modality   {"name": <format>}: no registered sensor made these vectors here

The weights hash of an imported store is ``blake2b(product|version|model)``: stable, and different for every
product, version and model, so the store's claim (:mod:`ofa_embed.store.claim`) keeps one origin per store and
every command that compares vectors (index, search, probe, kNN, predict) refuses a mix exactly as it refuses
two models' embeddings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from ofa_embed.errors import ProductError
from ofa_embed.interop.stac import imported_quantization
from ofa_embed.location import AnyPath
from ofa_embed.store import ChipColumns, TileRecords, write_chips
from ofa_embed.store.metadata import ModelRecord, emb_metadata

__all__ = [
    "Product",
    "year_span",
    "Rows",
    "Selection",
    "concat",
    "corners_of",
    "identity_hash",
    "model_record",
    "scene_name",
    "store_stem",
    "write_rows",
    "year_of_path",
]


@dataclass(frozen=True)
class Product:
    """An embedding product as its publisher documents it.

    Attributes:
        format: the ``--format`` name (``aef``, ``tessera``, ...).
        product: the publisher's product name.
        version: the product's version.
        model: the model that made the vectors (its published name).
        dimension: embedding dimension.
        kind: ``pixel`` (dense rasters, pooled to tiles here) or ``chip`` (one vector per chip).
        gsd: ground sample distance of the product's pixels, or the chip's side, in metres.
        temporal_resolution: ``annual``, ``single_acquisition``, ... (STAC ``emb:temporal_resolution``).
        quantization: the product's quantisation as the STAC ``emb:quantization`` object (method, dtypes, ...).
        license: SPDX identifier.
        links: ``{"documentation": url, "model": url, "source-data": url}``.
    """

    format: str
    product: str
    version: str
    model: str
    dimension: int
    kind: str
    gsd: float
    temporal_resolution: str
    quantization: dict[str, Any]
    license: str
    links: dict[str, str] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """The store identity of this product's vectors (:func:`identity_hash`)."""
        return identity_hash(self.product, self.version, self.model)


def identity_hash(product: str, version: str, model: str) -> str:
    """16 hex digits standing for a product's vectors where a model's weights hash stands for its own."""
    return hashlib.blake2b(f"{product}|{version}|{model}".encode(), digest_size=8).hexdigest()


def model_record(product: Product, pooling: str) -> ModelRecord:
    """The ``model`` entry of an imported store file: the product in the place of the weights."""
    return ModelRecord(f"{product.product}:{product.model}", {"imported": True, "format": product.format,
                                                              "product": product.product, "version": product.version},
                       product.hash, f"imported:{product.product}/{product.version}", True, pooling, "as published",
                       product.dimension)


@dataclass(frozen=True)
class Selection:
    """What to import: a bbox (MINLON, MINLAT, MAXLON, MAXLAT in degrees, RFC 7946) and a time range; None for all.

    Attributes:
        bbox: the area, or None.
        start, end: the time range (UTC), either open.
    """

    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None

    def overlaps_time(self, first: datetime | None, last: datetime | None) -> bool:
        """Whether a span from ``first`` to ``last`` meets the range (an undated span always does)."""
        if first is None or last is None:
            return True
        return not ((self.start is not None and last < self.start) or (self.end is not None and first > self.end))

    def overlaps_box(self, xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray) -> np.ndarray:
        """Which boxes meet the bbox (all without one); a bbox across the antimeridian is two boxes."""
        keep = np.ones(np.shape(xmin), bool)
        if self.bbox is None:
            return keep
        west, south, east, north = self.bbox
        lat = (np.asarray(ymax) >= south) & (np.asarray(ymin) <= north)
        if west <= east:
            return keep & lat & (np.asarray(xmax) >= west) & (np.asarray(xmin) <= east)
        return keep & lat & ((np.asarray(xmax) >= west) | (np.asarray(xmin) <= east))


@dataclass
class Rows:
    """Tiles read from one product file, ready to be written.

    Attributes:
        names: each row's name (ids are made from it with ``rows``/``cols``).
        rows, cols, heights, widths: ``(N,)`` pixel windows (chips: 0, 0 and the chip's size).
        valid_fraction: ``(N,)`` valid pixels of the window (chips: 1).
        corners: ``(N, 4, 2)`` lon/lat corners, clockwise from the north-west one.
        acquired: each row's time, or None.
        embeddings: ``(N, D)`` float32, de-quantised.
    """

    names: list[str]
    rows: np.ndarray
    cols: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    valid_fraction: np.ndarray
    corners: np.ndarray
    acquired: list[datetime | None]
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def corners_of(geometries: np.ndarray, side_m: float) -> np.ndarray:
    """``(N, 4, 2)`` clockwise lon/lat corners of chip geometries: a four-cornered polygon's own corners, any
    other polygon's bbox corners, and a square of ``side_m`` metres centred on a point.
    """
    out = np.empty((len(geometries), 4, 2))
    for i, geometry in enumerate(geometries):
        if geometry is None or geometry.is_empty:
            raise ProductError(f"row {i}: empty geometry; every chip needs a footprint")
        if geometry.geom_type == "Point":
            half_lat = side_m / 2 / 111_320.0
            half_lon = half_lat / max(np.cos(np.radians(geometry.y)), 1e-6)
            xmin, ymin, xmax, ymax = geometry.x - half_lon, geometry.y - half_lat, geometry.x + half_lon, geometry.y + half_lat
        else:
            ring = np.asarray(shapely.get_coordinates(shapely.get_exterior_ring(shapely.orient_polygons(geometry,
                                                                                                        exterior_cw=True)))
                              if geometry.geom_type == "Polygon" else [])
            if len(ring) == 5:  # closed: four corners, clockwise; start from the north-west one
                four = ring[:4]
                start = int(np.argmin(four[:, 0] - four[:, 1]))
                out[i] = np.roll(four, -start, axis=0)
                continue
            xmin, ymin, xmax, ymax = geometry.bounds
        out[i] = [(xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)]
    return out


_YEAR = re.compile(r"(?<!\d)(19[89]\d|20\d\d)(?!\d)")


def year_span(year: int) -> tuple[datetime, datetime]:
    """The first and last second (UTC) of ``year``: the time an annual product's layer covers."""
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, 59, tzinfo=UTC)


def year_of_path(path: Path) -> int | None:
    """The year an annual product's file belongs to: a folder named by the year (``.../2024/...``, as the AEF bucket
    and the TESSERA registry lay their files out), else the first year in the file's name; None when neither says.
    """
    for part in reversed(path.parent.parts):
        if _YEAR.fullmatch(part):
            return int(part)
    found = _YEAR.search(path.stem)
    return int(found.group(1)) if found else None


def scene_name(stem: str, year: int) -> str:
    """The scene name of an annual product's file: its stem, with ``_<year>`` added where the stem does not name the
    year (the TESSERA registry's ``grid_<lon>_<lat>`` tiles of every year share one name).
    """
    return stem if str(year) in stem else f"{stem}_{year}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("._") or "part"


def store_stem(product: Product, name: str) -> str:
    """The stem of the store file holding the rows of ``name`` (a source file's stem or a pixel product's scene)."""
    return _safe(f"{product.format}-{name}")


def write_rows(store: AnyPath, product: Product, rows: Rows, *, source: str, crs: str, tile_size: int,
               pooling: str, package_version: str, part: int = 0, name: str | None = None,
               field: dict[str, Any] | None = None) -> AnyPath:
    """Write ``rows`` of one product file as a store file ``<format>-<name>[-<part>].parquet`` (``name``: the
    source's stem unless given), with ``field`` (the record of the field written with it) in its metadata.
    """
    from ofa_embed.store.metadata import EMB_VERSION

    model = model_record(product, pooling)
    stem = store_stem(product, (name or Path(source).stem) + (f"-{part:04d}" if part else ""))
    imported = {**asdict(product), "source": source, "tile_size": tile_size if product.kind == "pixel" else None}
    metadata = {
        "package_version": package_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {k: v for k, v in asdict(model).items() if k != "dimension"},
        "modality": {"name": product.format},
        "imported": imported,
        "tiling": {"tile_size": tile_size, "stride": tile_size, "min_valid": 0.0, "edge_rule": "product's own"},
        "chips": {"count": len(rows), "roots": [source], "label_source": None},
    }
    if field is not None:
        metadata["field"] = field
    emb = {**emb_metadata(model, rows.acquired), "version": EMB_VERSION, "model": f"{product.product}/{product.model}",
           "product": product.product, "product_version": product.version,
           "source_quantization": product.quantization, "emb:quantization": imported_quantization(product.quantization)}
    records = TileRecords(rows.rows, rows.cols, rows.heights, rows.widths, np.zeros(len(rows), bool),
                          rows.valid_fraction, rows.corners, np.ascontiguousarray(rows.embeddings, np.float32))
    chips = ChipColumns(rows.names, [source] * len(rows), [None] * len(rows), [crs] * len(rows), rows.acquired)
    return write_chips(store, stem, modality=product.format, tile_size=tile_size, missing_bands=[], chips=chips,
                       records=records, metadata=metadata, emb_metadata=emb)


def concat(parts: Sequence[Rows]) -> Rows:
    """Rows of several reads as one."""
    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return Rows([n for p in parts for n in p.names], joined("rows"), joined("cols"), joined("heights"), joined("widths"),
                joined("valid_fraction"), joined("corners"), [a for p in parts for a in p.acquired], joined("embeddings"))
