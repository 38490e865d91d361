"""``ofa-embed benchmark``: the frozen backbone on public benchmarks read from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ofa_embed.cli.common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout
from ofa_embed.defaults import BOOTSTRAP_REPLICATES, GEOBENCH_BATCH_SIZE
from ofa_embed.embedding import PRECISIONS

if TYPE_CHECKING:  # the CLI imports a command's library code only when that command runs
    from ofa_embed.downstream.geobench import GeoBenchReport

benchmark_app = typer.Typer(no_args_is_help=True, help="Score the frozen backbone on public benchmarks (data on disk).")


@benchmark_app.command()
def geobench(
    root: Annotated[Path, typer.Option(help="GEO-Bench folder holding classification_v1.0 / segmentation_v1.0.")],
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated tasks, e.g. m-eurosat,m-pv4ger-seg (default: all found).")
    ] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Checkpoint: ofa-embed .safetensors, or a published DOFA .pth. Default: packaged.")] = None,
    weights_layout: Annotated[str | None, typer.Option(
        help="Kernel layout of a DOFA .pth that is not a recognised release: bands_first (TorchGeo's) or legacy.",
    )] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = GEOBENCH_BATCH_SIZE,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates of the 95% intervals.")] = BOOTSTRAP_REPLICATES,
    seed: Annotated[int, typer.Option(help="Seed of the probes and the bootstrap.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")] = None,
    precision: Annotated[str, typer.Option(help=f"{', '.join(PRECISIONS)} (auto: bf16 where native).")] = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Linear probes on GEO-Bench v1.0: accuracy / micro-mAP / mIoU with 95% intervals beside DOFA-Base."""
    from ofa_embed.downstream.geobench import geobench as run_geobench

    setup_logging(quiet)
    with errors_to_exit(), progress_bar(quiet or json_output, "samples") as progress:
        report = run_geobench(
            root, [t for t in tasks.split(",") if t.strip()] if tasks else None, weights=weights, weights_layout=weights_layout,
            batch_size=batch_size, n_boot=n_boot, seed=seed, device=device, precision=precision, on_progress=progress,
        )
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for table in _tables(report):
            stdout.print(table)


def _tables(report: GeoBenchReport) -> list[Table]:
    """The paper's layout: one table per family (classification, segmentation), tasks as columns, models as
    rows (this backbone with its 95 % interval, then the published reference).
    """
    from ofa_embed.downstream.geobench import REFERENCE_SOURCE

    weights = f"{report.model} {report.weights_hash}" + ("" if report.pretrained else ", random init")
    tables = []
    for family, kinds in (("classification", ("classify", "multilabel")), ("segmentation", ("segment",))):
        rows = [row for row in report.rows if row.kind in kinds]
        if not rows:
            continue
        table = Table(title=f"GEO-Bench v1.0 {family}: frozen backbone + linear probe",
                      caption=f"[95% bootstrap interval over test samples]; reference: {REFERENCE_SOURCE}")
        table.add_column("model", no_wrap=True)
        for row in rows:
            table.add_column(f"{row.task}\n{row.metric}\n(train {row.n_train}, test {row.n_test})", justify="right")
        interval = (lambda r: f"\n[{r.low:.3f}, {r.high:.3f}]") if report.n_boot else (lambda r: "")
        table.add_row(f"ofa-embed ({weights})", *(f"{r.value:.3f}{interval(r)}" for r in rows))
        table.add_row("DOFA-Base RGB", *(f"{r.reference:.3f}" if r.reference is not None else "-" for r in rows))
        tables.append(table)
    return tables


@benchmark_app.command()
def compare(
    stores: Annotated[list[str], typer.Argument(help="Stores to compare (this project's or imported products').")],
    target: Annotated[str, typer.Option(help="The label column (of --labels, else of the stores: chips' 'label').")],
    labels: Annotated[Path | None, typer.Option(help="Labels file (points, polygons, or a table of tile ids); "
                                                     "without it the target is a store column.")] = None,
    task: Annotated[str, typer.Option(help="classify or regress.")] = "classify",
    block_size: Annotated[float, typer.Option(help="Spatial blocks of the split, in metres (the same for every store).")
                          ] = 2000.0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    k: Annotated[int, typer.Option(help="kNN neighbours.")] = 10,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates of the 95% intervals.")] = BOOTSTRAP_REPLICATES,
    seed: Annotated[int, typer.Option(help="Seed of the probes and the bootstrap.")] = 0,
    band_stats: Annotated[bool, typer.Option(help="Add per-band mean + std of the tiles of the first store whose "
                                                  "scenes are at hand.")] = True,
    quiet: Quiet = False,
) -> None:
    """The same labels, spatial split, probe and kNN on each store's embeddings (and the band statistics of the same
    tiles where the scenes are at hand): one table with 95% intervals.
    """
    from ofa_embed.downstream.compare import compare as run_compare

    setup_logging(quiet)
    with errors_to_exit():
        rows = run_compare(stores, labels, target, task=task, folds=folds, block_size_m=block_size, k=k, seed=seed,
                           n_boot=n_boot, band_stats=band_stats)
    source = labels.name if labels else "the stores' own column"
    table = Table(title=f"'{target}' of {source}: spatial blocks of {block_size:,.0f} m, {folds} folds")
    for column in ("store", "embeddings", "method", "metric", "value", "95% interval", "tiles"):
        table.add_column(column, justify="right" if column in ("value", "tiles") else "left")
    for row in rows:
        table.add_row(row.store, row.origin, row.method, row.metric, f"{row.value:.3f}", f"{row.low:.3f}-{row.high:.3f}",
                      str(row.tiles))
    stdout.print(table)
