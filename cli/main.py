"""Entry point of the ``ofa-embed`` console script."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Annotated

import typer

import ofa_embed
from ofa_embed.cli.benchmark import benchmark_app
from ofa_embed.cli.change import change
from ofa_embed.cli.curate import curate
from ofa_embed.cli.extract import extract
from ofa_embed.cli.import_cmd import import_embeddings
from ofa_embed.cli.index import index
from ofa_embed.cli.knn import knn
from ofa_embed.cli.map import map_store
from ofa_embed.cli.predict import predict
from ofa_embed.cli.pretrain import pretrain
from ofa_embed.cli.probe import probe
from ofa_embed.cli.search import search
from ofa_embed.cli.serve import serve
from ofa_embed.cli.sql import sql
from ofa_embed.cli.stac import stac

app = typer.Typer(
    name="ofa-embed", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ofa-embed {ofa_embed.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Earth-observation embeddings from one shared multi-modal backbone, stored as GeoParquet."""


for command in (extract, index, search, sql, probe, knn, predict, change, curate, pretrain):
    app.command()(command)
app.command(name="map")(map_store)
app.command()(serve)
app.command(name="import")(import_embeddings)
app.command()(stac)

app.add_typer(benchmark_app, name="benchmark")

def run() -> None:
    """The console script: the app, then an exit that skips the interpreter's teardown once nothing is left.

    Tearing down an interpreter that has imported torch takes a large share of a short command such as
    ``ofa-embed extract --sample`` (``benchmarks/cli_startup.py`` measures it). The teardown is skipped only when the command has
    returned or failed cleanly and no other thread is alive; every file is written and closed by then
    (atomic renames), and the output streams and logging are flushed first.
    """
    try:
        app()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if threading.active_count() > 1:
        raise SystemExit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
