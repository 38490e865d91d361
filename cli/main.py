"""Entry point of the ``ofa-embed`` console script."""

from __future__ import annotations

from typing import Annotated

import typer

import ofa_embed

from cli.benchmark import benchmark_app
from cli.curate import curate
from cli.extract import extract
from cli.index import index
from cli.knn import knn
from cli.predict import predict
from cli.pretrain import pretrain
from cli.probe import probe
from cli.search import search
from cli.sql import sql

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


for command in (extract, index, search, sql, probe, knn, predict, curate, pretrain):
    app.command()(command)

app.add_typer(benchmark_app, name="benchmark")

if __name__ == "__main__":
    app()
