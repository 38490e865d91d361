"""``ofa-embed index``: build or update the vector index beside a store."""

from __future__ import annotations

from typing import Annotated

import typer

from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout
from ofa_embed.errors import ConfigError
from ofa_embed.indexes.config import KINDS


def index(
    store: Annotated[str, typer.Argument(help="Store directory or fsspec URL.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")] = "auto",
    update: Annotated[bool, typer.Option("--update", help="Add new scene files without a rebuild.")] = False,
    shards: Annotated[int, typer.Option(help="Split the index into N shard indexes (searched together, merged exactly).")] = 1,
    dask: Annotated[str | None, typer.Option(
        help="Build the shards on a Dask cluster: a scheduler address (tcp://host:8786), or local.")] = None,
    quiet: Quiet = False,
) -> None:
    """Build the faiss index of a store (cosine similarity), or add newly extracted scenes to it."""
    from ofa_embed import indexes

    setup_logging(quiet)
    with errors_to_exit():
        if update and kind != "auto":
            raise ConfigError("--update keeps the index's kind; do not combine it with --kind")
        if update and shards != 1:
            raise ConfigError("--update keeps the index's shards; do not combine it with --shards")
        with progress_bar(quiet, "vectors") as progress:
            if update:
                report = indexes.update(store, client=dask, on_progress=progress)
            else:
                report = indexes.build(store, kind, shards=shards, client=dask, on_progress=progress)
    if not quiet:
        stdout.print(
            f"{report.store}: {report.config.kind} index, {report.rows:,} vectors ({report.added:,} added) "
            f"in {report.seconds:.1f} s — {report.reason}", highlight=False,
        )
