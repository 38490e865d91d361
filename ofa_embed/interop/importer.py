"""``ofa_embed.import_embeddings``: published embedding products written as this project's store."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ofa_embed.errors import ConfigError, ProductError
from ofa_embed.field_files import check_field_dtype
from ofa_embed.interop import FORMATS, aef, clay, earthindex, majortom, tessera, tessera_zarr
from ofa_embed.interop.chips import read_chip_file
from ofa_embed.interop.chips import source_files as chip_files
from ofa_embed.interop.dense import DensePart, pooled_rows
from ofa_embed.interop.product import Product, Rows, Selection, concat, store_stem, write_rows
from ofa_embed.interop.product_fields import FieldCanvas, check_field_size, write_part_field
from ofa_embed.location import AnyPath, as_location, relative_name
from ofa_embed.store.claim import StoreIdentity, claimed_store

__all__ = ["DEFAULT_TILE_SIZE", "ImportReport", "import_embeddings"]

DEFAULT_TILE_SIZE = 32  # pixels of a pixel product: 320 m at AEF's and TESSERA's 10 m, Earth Index's chip
DEFAULT_MIN_VALID = 0.5

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What an import wrote.

    Attributes:
        store: the store written.
        format: the format read.
        product, version, model: the product's record (as the store's claim holds it).
        identity: the hash standing for the product's vectors (the store's ``weights_hash``).
        files: files written, below the store.
        fields: embedding fields written (``fields/<scene>.tif``, pixel products with ``fields``).
        rows: tiles written.
        skipped: source files whose store file existed already (pass ``overwrite``), or that held nothing selected.
        row_groups, row_groups_read: Parquet row groups in the chip files read, and those the selection needed.
        seconds: wall time.
    """

    store: str
    format: str
    product: str = ""
    version: str = ""
    model: str = ""
    identity: str = ""
    files: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: list[str] = field(default_factory=list)
    row_groups: int = 0
    row_groups_read: int = 0
    seconds: float = 0.0


def _sources(format: str, paths: list[Path]) -> list[Path]:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ProductError(f"{missing[0]}: no such file or folder")
    found = aef.source_files(paths) if format == "aef" else tessera.source_files(paths) if format == "tessera" \
        else chip_files(paths)
    if not found:
        raise ProductError(f"{', '.join(map(str, paths))}: no {format} files found there")
    return found


def _parts(format: str, paths: list[Path], selection: Selection) -> list[DensePart]:
    """Every part of the pixel product files meeting ``selection``, all checked before any is read."""
    found: list[DensePart] = []
    for path in paths:
        if format == "aef":
            found += aef.parts(path, selection)
        else:
            found += tessera_zarr.parts(path, selection) if tessera_zarr.is_store(path) else tessera.parts(path, selection)
    return found


def _read(format: str, path: Path, selection: Selection, report: ImportReport) -> tuple[Product, Rows]:
    spec = {"majortom": majortom.SPEC, "earthindex": earthindex.SPEC, "clay": clay.SPEC}[format]
    read = read_chip_file(path, spec, selection)
    report.row_groups += read.row_groups
    report.row_groups_read += read.row_groups_read
    if format == "majortom":
        product = majortom.product_for(path, read.dimension)
    elif format == "earthindex":
        product = earthindex.product_for(path, read.dimension, read.emb)
    else:
        product = clay.product_for(path, read.dimension)
    return product, read.rows


class _Writer:
    """Writes an import's store files (and fields) under one claim of the store by the first product met."""

    def __init__(self, stack: ExitStack, root: AnyPath, report: ImportReport, overwrite: bool, version: str) -> None:
        self.stack, self.root, self.report, self.overwrite, self.version = stack, root, report, overwrite, version
        self.first: Product | None = None

    def claim(self, product: Product, source: object) -> None:
        if self.first is None:
            self.first = product
            self.stack.enter_context(claimed_store(self.root, StoreIdentity(
                product.hash, product.dimension, "float32", f"{product.product}:{product.model}")))
            self.report.product, self.report.version, self.report.model = product.product, product.version, product.model
            self.report.identity = product.hash
        elif product.hash != self.first.hash:
            first = self.first
            raise ProductError(f"{source}: {product.product} {product.version} ({product.model}), but the files before "
                               f"it are {first.product} {first.version} ({first.model}); import each into its own store")

    def exists(self, product: Product, name: str) -> bool:
        return not self.overwrite and (self.root / f"{store_stem(product, name)}.parquet").exists()

    def write(self, product: Product, rows: Rows, *, source: str, name: str, crs: str, tile_size: int, pooling: str,
              field: dict[str, Any] | None = None) -> None:
        written = write_rows(self.root, product, rows, source=source, crs=crs, tile_size=tile_size, pooling=pooling,
                             package_version=self.version, name=name, field=field)
        self.report.files.append(relative_name(written, self.root))
        self.report.rows += len(rows)
        logger.info("%s: %d tiles -> %s", source, len(rows), written)


def _pooling(product: Product, tile: int) -> str:
    return f"mean of valid pixels over {tile} x {tile} px tiles" + (", rescaled to unit length" if product.format ==
                                                                     "aef" else "")


def _import_part(writer: _Writer, part: DensePart, tile: int, min_valid: float, field_dtype: str | None) -> None:
    """Pool one part to tiles (and keep its pixels as a field with ``field_dtype``) and write them."""
    pooling = _pooling(part.product, tile)
    with part.open() as read:
        canvas = FieldCanvas(part, tile) if field_dtype else None

        def reading(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
            values, valid = read(r0, r1, c0, c1)
            if canvas is not None:
                canvas.add(r0, c0, values, valid)
            return values, valid

        parts = [r for r in pooled_rows(part.grid, part.window, tile, min_valid, part.unit_length, reading, part.name,
                                        part.acquired) if len(r)]
    if not parts:
        writer.report.skipped.append(part.source)
        return
    record = None
    if canvas is not None and field_dtype is not None:  # the field first: the store file records it
        record = write_part_field(writer.root, canvas, dtype=field_dtype, tile=tile, min_valid=min_valid,
                                  pooling=pooling)
        writer.report.fields.append(record["path"])
    writer.write(part.product, concat(parts), source=part.source, name=part.name, crs=part.crs, tile_size=tile,
                 pooling=pooling, field=record)


def import_embeddings(
    sources: Sequence[str | Path],
    store: str | AnyPath,
    format: str,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    bbox: Sequence[float] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    min_valid: float = DEFAULT_MIN_VALID,
    overwrite: bool = False,
    fields: bool = False,
    field_dtype: str = "float32",
) -> ImportReport:
    """Import files of a published embedding product into ``store`` (one store file per source file; for pixel
    products one per scene: a file of a year, or a TESSERA Zarr zone's year).

    Args:
        sources: files or folders of the product, in its documented layout (TESSERA: ``.npy`` tiles or a Zarr store).
        store: the store to write (a folder or fsspec URL); it must hold this product's vectors or nothing.
        format: one of :data:`~ofa_embed.interop.FORMATS`.
        tile_size: tile side in pixels of a pixel product (AEF, TESSERA), whose pixels are pooled to tiles.
        bbox: MINLON, MINLAT, MAXLON, MAXLAT in degrees: only what meets it is read (COG windows, Zarr chunks,
            row groups).
        start: only what was observed from this time (annual products: whose year meets the range).
        end: ... up to this time.
        min_valid: least valid-pixel fraction of a pooled tile.
        overwrite: rewrite store files that exist (else their sources are skipped).
        fields: pixel products: also keep the pixels read as the store's embedding fields
            (:mod:`ofa_embed.interop.product_fields`).
        field_dtype: how fields are stored: ``float32`` (the de-quantised values exactly), ``float16`` or ``int8``.

    Raises:
        ConfigError: an unknown format, a bad tile size, bbox or field dtype, fields of chip products, or a field too
            large to build.
        ProductError: a file not in its documented layout, or files of several products.
        StoreError: the store holds other embeddings.
    """
    from ofa_embed import __version__

    began = time.perf_counter()
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if tile_size < 1:
        raise ConfigError(f"--tile-size {tile_size}: must be at least 1 pixel")
    check_field_dtype(field_dtype)
    pixel = format in ("aef", "tessera")
    if fields and not pixel:
        raise ConfigError(f"--fields: {format} holds one vector a chip, no pixels to keep as a field; "
                          "fields are kept of pixel products (aef, tessera)")
    if bbox is not None:
        from ofa_embed.retrieval import check_bbox

        check_bbox(bbox)
    selection = Selection(tuple(bbox) if bbox is not None else None, start, end)  # type: ignore[arg-type]
    root = as_location(store)
    report = ImportReport(str(store), format)
    paths = _sources(format, [Path(s) for s in sources])
    with ExitStack() as stack:
        writer = _Writer(stack, root, report, overwrite, __version__)
        if pixel:
            parts = _parts(format, paths, selection)
            named: dict[str, str] = {}
            for part in parts:  # bad input stops the import before anything is written
                writer.claim(part.product, part.source)
                if part.name in named:
                    raise ProductError(f"{part.source}: its scene name {part.name!r} is also that of {named[part.name]}; "
                                       "import them into separate stores")
                named[part.name] = part.source
                if fields:
                    check_field_size(part, tile_size)
            for part in parts:
                if writer.exists(part.product, part.name):
                    report.skipped.append(part.source)
                    continue
                _import_part(writer, part, tile_size, min_valid, field_dtype if fields else None)
            read = {part.source.split("#", 1)[0] for part in parts}
            report.skipped += [str(p) for p in paths if str(p) not in read]
        for path in paths if not pixel else []:
            product, rows = _read(format, path, selection, report)
            writer.claim(product, path)
            if not len(rows):
                report.skipped.append(str(path))
                continue
            if writer.exists(product, path.stem):
                report.skipped.append(str(path))
                continue
            writer.write(product, rows, source=str(path), name=path.stem, crs="EPSG:4326",
                         tile_size=int(np.max(rows.widths)), pooling="as published")
    report.seconds = time.perf_counter() - began
    return report
