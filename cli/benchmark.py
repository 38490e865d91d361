"""``ofa-embed benchmark``: the frozen backbone on public benchmarks read from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli._common import Quiet, errors_to_exit, progress_bar, setup_logging, stdout

if TYPE_CHECKING:  # the CLI imports a command's library code only when that command runs
    from ofa_embed.downstream.geobench import GeoBenchReport

benchmark_app = typer.Typer(no_args_is_help=True, help="Score the frozen backbone on public benchmarks (data on disk).")


@benchmark_app.command()
def geobench(
    root: Annotated[Path, typer.Option(help="GEO-Bench folder holding classification_v1.0 / segmentation_v1.0.")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks, e.g. m-eurosat,m-pv4ger-seg (default: all found).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint (.safetensors). Default: packaged.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates of the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the probes and the bootstrap.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA if available).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Quiet = False,
) -> None:
    """Linear probes on GEO-Bench v1.0: accuracy / micro-mAP / mIoU with 95% intervals beside DOFA-Base."""
    from ofa_embed.downstream.geobench import geobench as run_geobench

    setup_logging(quiet)
    with errors_to_exit(), progress_bar(quiet or json_output, "samples") as progress:
        report = run_geobench(
            root, [t for t in tasks.split(",") if t.strip()] if tasks else None, weights=weights,
            batch_size=batch_size, n_boot=n_boot, seed=seed, device=device, on_progress=progress,
        )
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        stdout.print(_table(report))


def _table(report: GeoBenchReport) -> Table:
    from ofa_embed.downstream.geobench import REFERENCE_SOURCE

    weights = f"{report.model} {report.weights_hash}" + ("" if report.pretrained else ", random init")
    table = Table(title=f"GEO-Bench v1.0: frozen backbone ({weights}) + linear probe",
                  caption=f"[95% bootstrap interval over test samples]; reference: {REFERENCE_SOURCE}")
    table.add_column("task", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("ofa-embed [95%]", justify="right", no_wrap=True)
    table.add_column("DOFA-Base RGB", justify="right")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for row in report.rows:
        interval = f" [{row.low:.3f}, {row.high:.3f}]" if report.n_boot else ""
        reference = f"{row.reference:.3f}" if row.reference is not None else "-"
        table.add_row(row.task, row.metric, f"{row.value:.3f}{interval}", reference, str(row.n_train), str(row.n_test))
    return table
