"""``ofa-embed sql``: DuckDB SQL over a store (view ``embeddings``, function ``embed('tile.tif')``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stdout
from ofa_embed.cli.output import SQL_FORMATS, write
from ofa_embed.errors import SQLError


def sql(
    store: Annotated[str, typer.Argument(help="Store directory or fsspec URL.")],
    query: Annotated[str, typer.Argument(help="SQL over the view 'embeddings'; embed('tile.tif') gives FLOAT[D].")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(SQL_FORMATS)}.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint of the store's model for embed().")] = None,
    read: Annotated[list[Path] | None, typer.Option(
        "--read", help="A file or folder that queries may read besides the store (repeatable).")] = None,
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="Run statements that write files (COPY ... TO, ATTACH), never inside the store.")] = False,
    quiet: Quiet = False,
) -> None:
    """Query a store with DuckDB SQL (spatial extension loaded, no network; read-only unless --allow-writes)."""
    setup_logging(quiet)
    with errors_to_exit():
        if fmt not in SQL_FORMATS:
            raise SQLError(f"--format {fmt!r}: choose one of {', '.join(SQL_FORMATS)}")
        result = ofa_embed.sql(store, query, weights=weights, allow_writes=allow_writes, read_paths=read or ())
        if fmt != "table":
            write(result, fmt, out)
            return
    table = Table(title=f"{len(result)} row(s)")
    for column in result.columns:
        table.add_column(str(column), overflow="fold")
    for row in result.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    stdout.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
