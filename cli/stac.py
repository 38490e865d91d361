"""``ofa-embed stac``: a store described as a STAC Collection with one Item per file (Embeddings extension)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ofa_embed.cli.common import Quiet, errors_to_exit, setup_logging, stdout


def stac(
    store: Annotated[str, typer.Argument(help="Store directory or fsspec URL.")],
    out: Annotated[Path, typer.Option(help="Folder to write collection.json and the items into.")],
    quiet: Quiet = False,
) -> None:
    """Describe a store in STAC: a Collection (emb:type, emb:dimensions, model and source links), an Item per file."""
    from ofa_embed.interop.stac import write_stac

    setup_logging(quiet)
    with errors_to_exit():
        report = write_stac(store, out)
    if not quiet:
        stdout.print(f"wrote {report.collection} and {len(report.items)} item(s)", highlight=False)
