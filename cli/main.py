"""Entry point of the ``ofa-embed`` console script."""

from __future__ import annotations

from typing import Annotated

import typer
from ofa_embed.cli.benchmark import benchmark_app
from ofa_embed.cli.curate import curate
from ofa_embed.cli.extract import extract
from ofa_embed.cli.index import index
from ofa_embed.cli.knn import knn
from ofa_embed.cli.predict import predict
from ofa_embed.cli.pretrain import pretrain
from ofa_embed.cli.probe import probe
from ofa_embed.cli.search import search
from ofa_embed.cli.sql import sql

import ofa_embed

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
