"""Options and output shared by ``probe`` and ``knn``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ofa_embed.cli.common import stdout

if TYPE_CHECKING:  # the CLI imports a command's library code only when that command runs
    from ofa_embed.downstream import DownstreamReport

Store = Annotated[str, typer.Argument(help="Store directory or fsspec URL (from ofa-embed extract).")]
Labels = Annotated[Path | None, typer.Option(
    "--labels", help="Labels: points/polygons vector file, or a table with tile ids. Default: --target is a store "
                     "column (a chip collection's label).",
)]
Target = Annotated[str, typer.Option("--target", help="Label column.")]
Task = Annotated[str, typer.Option("--task", help="classify, multilabel or regress.")]
Split = Annotated[str, typer.Option(
    "--split", help="spatial-block (default: keeps neighbouring tiles together), random, or a column whose values stay whole.",
)]
Folds = Annotated[int, typer.Option("--folds", help="Cross-validation folds.")]
BlockSize = Annotated[float | None, typer.Option("--block-size", help="Spatial block edge in metres (default 4 tile widths).")]
MinOverlap = Annotated[float | None, typer.Option(
    "--min-overlap", help="Polygon labels: share of a tile to cover (default 0.5; multilabel 0.1).",
)]
Predict = Annotated[Path | None, typer.Option("--predict", help="Write predictions for every tile to this GeoParquet file.")]
Plot = Annotated[Path | None, typer.Option("--plot", help="Write PNG plots (confusion matrix or scatter, map) to this folder.")]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates for the 95% intervals.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of folds, inner CV and bootstrap.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")]


def print_confusion(classes: Sequence[Any], counts: Any, title: str) -> None:
    """A confusion matrix as a table: one row per true class, one column per predicted class."""
    confusion = Table(title=title)
    confusion.add_column("")
    for name in classes:
        confusion.add_column(str(name), justify="right")
    for name, row in zip(classes, counts, strict=True):
        confusion.add_row(str(name), *(str(int(n)) for n in row))
    stdout.print(confusion)


def print_report(report: DownstreamReport, as_json: bool) -> None:
    """The report as rich tables (metrics with intervals, per class, confusion matrix) or JSON."""
    if as_json:
        from ofa_embed.downstream.metrics import json_safe

        stdout.print_json(json.dumps(json_safe(report.to_dict()), default=str))
        return
    evaluation = report.evaluation
    stdout.print(f"[bold]{report.method}[/] on {report.store}, task {report.task}, target {report.target!r}")
    stdout.print(f"labels: {report.labels.describe()}")
    stdout.print(f"split: {report.split.describe()}; metrics on out-of-fold predictions of {evaluation.samples} tiles")
    table = Table(title=f"metrics (95% bootstrap interval over {evaluation.units} "
                        f"{'blocks' if report.split.kind == 'spatial-block' else 'units'}, {evaluation.bootstrap} replicates)")
    for column in ("metric", "value", "low", "high"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, estimate in evaluation.metrics.items():
        table.add_row(name, f"{estimate.value:.3f}", f"{estimate.low:.3f}", f"{estimate.high:.3f}")
    stdout.print(table)
    if evaluation.per_class is not None:
        per_class = Table(title="per class")
        for column in evaluation.per_class.columns:
            per_class.add_column(str(column), justify="left" if column == "class" else "right")
        for row in evaluation.per_class.itertuples(index=False):
            per_class.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
        stdout.print(per_class)
    if evaluation.confusion is not None:
        print_confusion(evaluation.classes, evaluation.confusion, "confusion matrix (rows: true, columns: predicted)")
    if report.model is not None:
        stdout.print(f"probe refitted on all {len(report.labels.tiles)} labelled tiles: regularisation "
                     f"{report.model.regularisation:g} chosen by inner CV (score {report.model.inner_score:.3f})")
    for path in ([report.predictions] if report.predictions else []) + report.plots:
        stdout.print(f"wrote {path}")
