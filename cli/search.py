"""``ofa-embed search``: tiles most similar to a query tile, a stored tile or a point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, parse_numbers, parse_time, setup_logging, stdout
from ofa_embed.cli.output import FORMATS, write
from ofa_embed.defaults import SEARCH_K
from ofa_embed.errors import QueryError


def search(
    store: Annotated[str, typer.Argument(help="Store directory or fsspec URL (indexed with ofa-embed index).")],
    like: Annotated[list[Path] | None, typer.Option(
        help="Query tile file (any supported modality); repeat for several examples.")] = None,
    like_id: Annotated[list[str] | None, typer.Option(help="Query: the id of a stored tile; repeatable.")] = None,
    like_point: Annotated[str | None, typer.Option(help="Query: the stored tile at LON,LAT.")] = None,
    unlike: Annotated[list[Path] | None, typer.Option(
        help="Negative example tile file: results move away from it; repeatable.")] = None,
    unlike_id: Annotated[list[str] | None, typer.Option(help="Negative example: a stored tile id; repeatable.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Number of results.")] = SEARCH_K,
    bbox: Annotated[str | None, typer.Option(help="Only tiles intersecting MINLON,MINLAT,MAXLON,MAXLAT.")] = None,
    start: Annotated[str | None, typer.Option(help="Only tiles acquired on or after this date.")] = None,
    end: Annotated[str | None, typer.Option(help="Only tiles acquired on or before this date.")] = None,
    modality: Annotated[str | None, typer.Option(help="Only tiles of this modality.")] = None,
    scene: Annotated[str | None, typer.Option(help="Only tiles of this scene.")] = None,
    query_modality: Annotated[str | None, typer.Option(help="Modality of the --like file (default: detected).")] = None,
    query_bands: Annotated[str | None, typer.Option(help="Band names of the --like file, in file order.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint of the store's model, if not found.")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")] = None,
    quiet: Quiet = False,
) -> None:
    """Find the stored tiles most similar to a query, within optional area/time/sensor filters."""
    setup_logging(quiet)
    with errors_to_exit():
        if fmt not in FORMATS:
            raise QueryError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        hits = ofa_embed.search(
            store, like=like, like_id=like_id, unlike=unlike, unlike_id=unlike_id,
            like_point=cast("tuple[float, float]", parse_numbers(like_point, 2, "--like-point")) if like_point else None, k=k,
            bbox=cast("tuple[float, float, float, float]", parse_numbers(bbox, 4, "--bbox")) if bbox else None,
            start=parse_time(start, "--start", end=False), end=parse_time(end, "--end", end=True),
            modality=modality, scene=scene, weights=weights, query_modality=query_modality,
            query_bands=query_bands.split(",") if query_bands else None,
        )
        if fmt != "table":
            write(hits, fmt, out)
            return
    table = Table(title=f"{len(hits)} most similar tiles in {store}")
    for column in ("rank", "id", "scene", "modality", "similarity", "lon", "lat"):
        table.add_column(column, justify="right" if column in ("rank", "similarity", "lon", "lat") else "left",
                         no_wrap=column in ("id", "similarity"))
    for row in hits.itertuples():
        table.add_row(str(row.rank), row.id, row.scene, row.modality, f"{row.similarity:.4f}",
                      f"{row.lon:.5f}", f"{row.lat:.5f}")
    stdout.print(table)
