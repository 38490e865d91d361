"""``ofa_embed.import_embeddings``: published embedding products written as this project's store."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ofa_embed.errors import ConfigError, ProductError
from ofa_embed.interop import FORMATS, aef, clay, earthindex, majortom, tessera
from ofa_embed.interop.chips import read_chip_file
from ofa_embed.interop.chips import source_files as chip_files
from ofa_embed.interop.product import Product, Rows, Selection, concat, write_rows
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


def _read(format: str, path: Path, selection: Selection, tile: int, min_valid: float,
          report: ImportReport) -> tuple[Product, Iterator[Rows], str]:
    if format in ("aef", "tessera"):
        module = aef if format == "aef" else tessera
        rows, crs = module.read_file(path, selection, tile, min_valid)
        return module.PRODUCT, rows, crs
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
    return product, iter([read.rows]), "EPSG:4326"


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
) -> ImportReport:
    """Import files of a published embedding product into ``store`` (one store file per source file).

    Args:
        sources: files or folders of the product, in its documented layout.
        store: the store to write (a folder or fsspec URL); it must hold this product's vectors or nothing.
        format: one of :data:`~ofa_embed.interop.FORMATS`.
        tile_size: tile side in pixels of a pixel product (AEF, TESSERA), whose pixels are pooled to tiles.
        bbox: MINLON, MINLAT, MAXLON, MAXLAT in degrees: only what meets it is read (COG windows, row groups).
        start: only what was observed from this time (annual products: whose year meets the range).
        end: ... up to this time.
        min_valid: least valid-pixel fraction of a pooled tile.
        overwrite: rewrite store files that exist (else their sources are skipped).

    Raises:
        ConfigError: an unknown format, a bad tile size or bbox.
        ProductError: a file not in its documented layout, or files of several products.
        StoreError: the store holds other embeddings.
    """
    from ofa_embed import __version__

    began = time.perf_counter()
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if tile_size < 1:
        raise ConfigError(f"--tile-size {tile_size}: must be at least 1 pixel")
    if bbox is not None:
        from ofa_embed.retrieval import check_bbox

        check_bbox(bbox)
    selection = Selection(tuple(bbox) if bbox is not None else None, start, end)  # type: ignore[arg-type]
    root = as_location(store)
    report = ImportReport(str(store), format)
    first: Product | None = None
    with ExitStack() as stack:
        for path in _sources(format, [Path(s) for s in sources]):
            product, parts, crs = _read(format, path, selection, tile_size, min_valid, report)
            if first is None:
                first = product
                stack.enter_context(claimed_store(root, StoreIdentity(product.hash, product.dimension, "float32",
                                                                      f"{product.product}:{product.model}")))
                report.product, report.version, report.model = product.product, product.version, product.model
                report.identity = product.hash
            elif product.hash != first.hash:
                raise ProductError(f"{path}: {product.product} {product.version} ({product.model}), but the files before "
                                   f"it are {first.product} {first.version} ({first.model}); import each into its own store")
            read = [p for p in parts if len(p)]
            if not read:
                report.skipped.append(str(path))
                continue
            rows = concat(read)
            pooling = f"mean of valid pixels over {tile_size} x {tile_size} px tiles" + (
                ", rescaled to unit length" if format == "aef" else "") if product.kind == "pixel" else "as published"
            target = root / f"{format}-{path.stem}.parquet"
            if target.exists() and not overwrite:
                report.skipped.append(str(path))
                continue
            written = write_rows(root, product, rows, source=str(path), crs=crs, tile_size=tile_size if product.kind ==
                                 "pixel" else int(np.max(rows.widths)), pooling=pooling, package_version=__version__)
            report.files.append(relative_name(written, root))
            report.rows += len(rows)
            logger.info("%s: %d tiles -> %s", path, len(rows), written)
    report.seconds = time.perf_counter() - began
    return report
