"""``ofa-embed map``: a self-contained HTML map of a store, search hits or predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stdout


def map_store(
    store: Annotated[str, typer.Argument(help="Store directory or fsspec URL (from ofa-embed extract).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file.")] = Path("map.html"),
    color: Annotated[str | None, typer.Option(
        help="Colour tiles by this store column instead of the embeddings' principal components "
             "('change': the --change ranking alone).")] = None,
    hits: Annotated[Path | None, typer.Option(help="Search hits to draw (search --format parquet or geojson).")] = None,
    predictions: Annotated[Path | None, typer.Option(help="Predictions to draw (probe/knn/predict --predict).")] = None,
    classes: Annotated[Path | None, typer.Option(
        help="A segmentation's class COG, or the folder of them (probe/predict --dense --predict), pixel by pixel.")] = None,
    change: Annotated[Path | None, typer.Option(
        help="A change ranking (ofa-embed change --out FILE) by cosine distance, and the pixel COGs beside it.")] = None,
    query: Annotated[str | None, typer.Option(help="Query tile to outline: its raster file, or a stored tile id.")] = None,
    png: Annotated[Path | None, typer.Option(help="Also write the same view as a static image (PNG; SVG by suffix).")] = None,
    basemap: Annotated[str | None, typer.Option(
        help="XYZ tile URL template drawn under the tiles when reachable (default: none; the map works offline).",
    )] = None,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    quiet: Quiet = False,
) -> None:
    """Write one HTML page that works offline: tiles coloured by their embeddings, hits, predictions, a
    segmentation's classes or a change ranking.
    """
    setup_logging(quiet)
    with errors_to_exit():
        report = ofa_embed.map(store, out, color=color, hits=hits, predictions=predictions, classes=classes,
                               change=change, query=query, png=png, basemap=basemap, title=title)
    if quiet:
        return
    layers = ", ".join(f"{name} ({count:,})" for name, count in report.layers)
    stdout.print(f"{report.out}: {report.bytes / 2**20:.2f} MiB, {layers}, in {report.seconds:.1f} s")
    if report.image is not None:
        stdout.print(f"{report.image}: {report.image_bytes / 2**10:.0f} KiB")
