"""``ofa-embed change``: the most changed places between two times of a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stdout
from ofa_embed.cli.downstream_options import AsJson, Store


def change(
    store: Store,
    before: Annotated[str, typer.Option("--before", help="A date, START..END, or scene names (comma-separated).")],
    after: Annotated[str, typer.Option("--after", help="A date, START..END, or scene names (comma-separated).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="GeoParquet of matched tiles, most changed first; field changes as COGs beside it.")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranked table printed.")] = 10,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Cosine distance between the embeddings of the same place at two times, per tile and per field pixel."""
    setup_logging(quiet or as_json)
    from ofa_embed.change import change as run_change

    with errors_to_exit():
        report = run_change(store, before, after, out=out)
    head = report.tiles.head(top)
    if as_json:
        print(json.dumps({
            "before": report.before, "after": report.after, "tiles": len(report.tiles), "partial": report.partial,
            "unmatched": report.unmatched, "out": str(report.out) if report.out else None,
            "fields": [{"before": b, "after": a, "path": str(p), "pixels": n} for b, a, p, n in report.fields],
            "top": head.drop(columns="geometry").astype(str).to_dict(orient="records"),
        }, indent=2))
        return
    if quiet:
        return
    stdout.print(f"before: {', '.join(report.before)}; after: {', '.join(report.after)}: {len(report.tiles)} tiles "
                 f"matched by footprint ({report.partial} partial overlaps), {report.unmatched} after tiles unmatched")
    table = Table(title=f"{len(head)} most changed tiles (cosine distance)")
    for column in ("rank", "id", "scene", "before_id", "overlap", "cosine_distance"):
        table.add_column(column, justify="right" if column in ("rank", "overlap", "cosine_distance") else "left")
    for rank, row in enumerate(head.itertuples(), start=1):
        table.add_row(str(rank), row.id, row.scene, row.before_id,
                      f"{row.overlap:.2f}" + (" partial" if row.partial else ""), f"{row.cosine_distance:.4f}")
    stdout.print(table)
    if report.out:
        stdout.print(f"wrote {report.out}")
    for b, a, path, pixels in report.fields:
        stdout.print(f"wrote {path}: {pixels:,} field pixels of {b} -> {a}")
