"""``ofa-embed curate``: tile scenes into a pre-training corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout
from ofa_embed.defaults import CORPUS_MIN_VALID, CORPUS_SHARD_SIZE
from ofa_embed.pretraining.config import DEFAULT_TILE_SIZE
from ofa_embed.sensors import MODALITIES


def curate(
    scenes: Annotated[list[Path], typer.Argument(help="Raster files or band-file folders, one scene each.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Corpus directory (appended to if it exists).")],
    stack: Annotated[bool, typer.Option(help="Treat all SCENES as the single-band files of one scene.")] = False,
    modality: Annotated[str | None, typer.Option(help=f"One of: {', '.join(MODALITIES)}. Default: detected.")] = None,
    bands: Annotated[str | None, typer.Option(help="Comma-separated names of the file's bands, in file order.")] = None,
    nodata: Annotated[float | None, typer.Option(help="Nodata value (default: the file's).")] = None,
    tile_size: Annotated[int, typer.Option(help="Tile edge in pixels (one size per corpus).")] = DEFAULT_TILE_SIZE,
    stride: Annotated[int | None, typer.Option(help="Step between tiles in pixels (default: tile size).")] = None,
    min_valid: Annotated[float, typer.Option(help="Leave out tiles with a smaller valid-pixel fraction.")] = CORPUS_MIN_VALID,
    shard_size: Annotated[int, typer.Option(help="Tiles per shard file.")] = CORPUS_SHARD_SIZE,
    quiet: Quiet = False,
) -> None:
    """Tile scenes into per-modality shards of normalised tiles, with band statistics and a manifest."""
    setup_logging(quiet)
    from ofa_embed.pretraining.corpus import curate as curate_corpus

    with errors_to_exit(), progress_bar(quiet, "tiles") as progress:
        report = curate_corpus(
            [scenes] if stack else scenes, out, modality=modality, bands=bands.split(",") if bands else None,
            nodata=nodata, tile_size=tile_size, stride=stride, min_valid=min_valid, shard_size=shard_size,
            on_progress=progress,
        )
    if not quiet:
        for scene, added in report.added.items():
            stdout.print(f"{scene}: {added} tiles ({report.skipped[scene]} below min-valid)", highlight=False)
        stdout.print(f"{report.corpus}: " + ", ".join(f"{m} {n}" for m, n in report.tiles.items()), highlight=False)
