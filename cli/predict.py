"""``ofa-embed predict``: apply a saved probe to every tile of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout
from ofa_embed.cli.downstream_options import Store


def predict(
    store: Store,
    probe: Annotated[Path, typer.Option("--probe", help="Probe saved by ofa-embed probe --save (JSON).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="GeoParquet file of predictions, one row per tile.")],
    dense: Annotated[bool, typer.Option(
        "--dense", help="Predict every pixel of the store's embedding fields; --out is a folder of class COGs.")] = False,
    quiet: Quiet = False,
) -> None:
    """Predict every tile of a store with a saved linear probe (same model's embeddings only)."""
    setup_logging(quiet)
    if dense:
        from ofa_embed.downstream.segmentation import predict_fields

        with errors_to_exit():
            written = predict_fields(store, probe, out)
        if not quiet:
            for path in written:
                stdout.print(f"wrote {path}")
        return
    with errors_to_exit(), progress_bar(quiet, "files") as on_progress:
        frame = ofa_embed.predict(store, probe, out, on_progress=on_progress)
    if not quiet:
        stdout.print(f"wrote {out}: {len(frame):,} tiles")
