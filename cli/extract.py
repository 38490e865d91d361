"""``ofa-embed extract``: embed scenes into a GeoParquet store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

import ofa_embed
from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout
from ofa_embed.embedding import PRECISIONS
from ofa_embed.embedding.options import CHIPS_PER_FILE, RunOptions
from ofa_embed.model.config import DOFA_CONFIGS, list_models
from ofa_embed.sample import sample_scene
from ofa_embed.sensors import MODALITIES

if TYPE_CHECKING:  # the CLI imports a command's library code only when that command runs
    from ofa_embed.embedding.chips import ChipsReport
    from ofa_embed.embedding.extract import ExtractReport

# every flag's default is the library's
DEFAULTS = RunOptions()


def extract(
    scenes: Annotated[list[Path] | None, typer.Argument(help="Raster files or band-file folders, one scene each.")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Store directory, or an fsspec URL (s3://bucket/emb).")] = "embeddings",
    sample: Annotated[bool, typer.Option(help="Extract the bundled Sentinel-2 L1C sample scene.")] = False,
    stack: Annotated[bool, typer.Option(help="Treat all SCENES as the single-band files of one scene.")] = False,
    chips: Annotated[bool, typer.Option(
        help="SCENES are chips (files, or folders such as class/*.tif): one tile each, labelled by folder, "
             "batched across files.")] = False,
    chips_per_file: Annotated[int, typer.Option(help="With --chips: chips per store file.")] = CHIPS_PER_FILE,
    modality: Annotated[str | None, typer.Option(help=f"One of: {', '.join(MODALITIES)}. Default: detected.")] = None,
    bands: Annotated[str | None, typer.Option(help="Comma-separated names of the file's bands, in file order.")] = None,
    nodata: Annotated[float | None, typer.Option(help="Nodata value (default: the file's).")] = None,
    wavelengths: Annotated[str | None, typer.Option(
        help="A sensor the registry does not know: comma-separated centre wavelengths in µm, file band order.",
    )] = None,
    sar_scale: Annotated[str, typer.Option(
        help="Sentinel-1 values: db (default), or linear power / amplitude, converted to dB.")] = DEFAULTS.sar_scale,
    tile_size: Annotated[int | None, typer.Option(
        help="Tile edge in pixels (default: per modality; a smaller raster, a chip, is one tile).")] = None,
    stride: Annotated[int | None, typer.Option(help="Step between tiles in pixels (default: tile size).")] = None,
    min_valid: Annotated[float, typer.Option(help="Skip tiles with a smaller valid-pixel fraction.")] = DEFAULTS.min_valid,
    weights: Annotated[Path | None, typer.Option(
        help="Checkpoint: ofa-embed .safetensors, or a published DOFA .pth. Default: packaged.")] = None,
    weights_layout: Annotated[str | None, typer.Option(
        help="Kernel layout of a DOFA .pth that is not a recognised release: bands_first (TorchGeo's) or legacy.",
    )] = None,
    model: Annotated[str, typer.Option(
        help=f"Model size for a random init: {', '.join([*list_models(), *DOFA_CONFIGS])}.")] = DEFAULTS.model,
    batch_size: Annotated[int, typer.Option(help="Most tiles per forward pass.")] = DEFAULTS.batch_size,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")] = None,
    precision: Annotated[str, typer.Option(
        help=f"{', '.join(PRECISIONS)}: auto is bf16 on CUDA and on CPUs with native bf16, else fp32.")] = DEFAULTS.precision,
    embedding_dtype: Annotated[str, typer.Option(
        help="How embeddings are stored: float32, float16 (about half the bytes) or int8 (about a third; per-vector scale); "
             "one per store.")] = DEFAULTS.embedding_dtype,
    overwrite: Annotated[bool, typer.Option(help="Recompute scenes already in the store.")] = False,
    dask: Annotated[str | None, typer.Option(
        help="Run on a Dask cluster: a scheduler address (tcp://host:8786), or local (one worker per core, or per GPU).")] = None,
    partition_by: Annotated[str | None, typer.Option(
        help="Partition the store into hive folders by keys: utm_zone, year (e.g. utm_zone,year).")] = None,
    dense: Annotated[bool, typer.Option(
        help="Also write each scene's embedding field (one pixel per patch, a COG in STORE/fields/); tiles overlap "
             "by default.")] = False,
    field_dtype: Annotated[str, typer.Option(
        help="How fields are stored: float32, float16, or int8 with a per-pixel scale band.")] = DEFAULTS.field_dtype,
    quiet: Quiet = False,
) -> None:
    """Embed every tile of each scene; write one GeoParquet file per scene into the store."""
    setup_logging(quiet)
    with errors_to_exit():
        inputs: list = [sample_scene()] if sample else []
        paths = list(scenes or [])
        inputs += [paths] if stack and paths else paths
        if not inputs:
            raise typer.BadParameter("give at least one SCENE, or --sample")
        options = RunOptions(
            modality=modality, bands=bands.split(",") if bands else None, nodata=nodata,
            wavelengths=_wavelengths(wavelengths) if wavelengths else None, sar_scale=sar_scale, tile_size=tile_size,
            stride=stride, min_valid=min_valid, weights=weights, weights_layout=weights_layout, model=model,
            batch_size=batch_size, device=device, precision=precision, embedding_dtype=embedding_dtype,
            overwrite=overwrite, partition_by=partition_by.split(",") if partition_by else None, dense=dense,
            field_dtype=field_dtype,
        )
        if chips:
            if stack or stride or overwrite:
                raise typer.BadParameter("--chips embeds each chip whole once: drop --stack, --stride and --overwrite")
            with progress_bar(quiet, "chips") as progress:
                collection = ofa_embed.extract_chips(paths, out, options=replace(options, stride=None, partition_by=None),
                                                     chips_per_file=chips_per_file, on_progress=progress)
            if not quiet:
                _print_chips(collection)
            return
        with progress_bar(quiet, "tiles") as progress:
            report = ofa_embed.extract(inputs, out, options=options, client=dask, on_progress=progress)
    if not quiet:
        _print_scenes(report)


def _print_scenes(report: ExtractReport) -> None:
    table = Table(title=f"{report.store}  (weights {report.weights_hash}, {report.device}, {report.precision}, "
                        f"{report.embedding_dtype} embeddings)")
    for column in ("scene", "tiles", "skipped (nodata)", "seconds", "file"):
        table.add_column(column)
    for s in report.scenes:
        status = "already in store" if s.skipped_existing else f"{s.seconds:.1f}"
        table.add_row(s.scene, str(s.tiles), str(s.skipped_tiles), status, str(s.path))
    stdout.print(table)


def _print_chips(collection: ChipsReport) -> None:
    stdout.print(
        f"{collection.store}: {collection.chips} chips embedded ({collection.tile_size} px tiles) into "
        f"{len(collection.files)} file(s) in {collection.seconds:.1f} s, "
        f"{collection.chips / max(collection.seconds, 1e-9):.0f} chips/s; {collection.skipped_existing} "
        f"already in the store, {collection.skipped_invalid} below --min-valid "
        f"(weights {collection.weights_hash}, {collection.device}, {collection.precision})"
    )


def _wavelengths(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--wavelengths {text!r}: give numbers in µm, e.g. 0.49,0.56,0.665") from None
