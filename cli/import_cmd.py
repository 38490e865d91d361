"""``ofa-embed import``: a published embedding product (AEF, TESSERA, Major TOM, Earth Index, Clay) as a store."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from ofa_embed.cli.common import Quiet, errors_to_exit, parse_numbers, parse_time, setup_logging, stdout
from ofa_embed.interop import FORMATS


def _inclusive_end(text: str | None) -> datetime | None:
    """The import's ``--end`` is inclusive: a plain date ends at the last microsecond of that day."""
    end = parse_time(text, "--end", end=True)
    return end - timedelta(microseconds=1) if end is not None and text is not None and len(text) == 10 else end


def import_embeddings(
    sources: Annotated[list[Path], typer.Argument(help="Files or folders of the product, in its published layout.")],
    format: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")],
    out: Annotated[str, typer.Option(help="Store directory or fsspec URL to write.")],
    tile_size: Annotated[int, typer.Option(help="Pixel products (aef, tessera): tile side in the product's pixels.")] = 32,
    bbox: Annotated[str | None, typer.Option(help="MINLON,MINLAT,MAXLON,MAXLAT: read only what meets it.")] = None,
    start: Annotated[str | None, typer.Option(help="Read only what was observed from this date (ISO).")] = None,
    end: Annotated[str | None, typer.Option(help="... up to this date (ISO; a plain date includes the day).")] = None,
    min_valid: Annotated[float, typer.Option(help="Pixel products: least valid-pixel fraction of a tile.")] = 0.5,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite store files that exist.")] = False,
    fields: Annotated[bool, typer.Option("--fields/--no-fields", help="Pixel products: also keep the pixels read as "
                                         "embedding fields (STORE/fields/<scene>.tif).")] = False,
    field_dtype: Annotated[str, typer.Option(help="Fields stored as float32 (the de-quantised values), float16 or "
                                             "int8.")] = "float32",
    quiet: Quiet = False,
) -> None:
    """Import a published embedding product into a store: search, sql, probe, knn, map and index then work on it."""
    from ofa_embed.interop.importer import import_embeddings as run_import

    setup_logging(quiet)
    with errors_to_exit():
        report = run_import(sources, out, format, tile_size=tile_size, bbox=parse_numbers(bbox, 4, "--bbox") if bbox else None,
                            start=parse_time(start, "--start", end=False), end=_inclusive_end(end),
                            min_valid=min_valid, overwrite=overwrite, fields=fields, field_dtype=field_dtype)
    if not quiet:
        kept = f" and {len(report.fields)} field(s)" if report.fields else ""
        pruned = (f"; {report.row_groups_read} of {report.row_groups} row groups read" if report.row_groups else "")
        stdout.print(f"{report.store}: {report.rows:,} tiles of {report.product} {report.version} ({report.model}) in "
                     f"{len(report.files)} file(s){kept}, {len(report.skipped)} source(s) skipped{pruned}, "
                     f"{report.seconds:.1f} s", highlight=False)
