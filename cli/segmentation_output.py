"""Printing a segmentation probe's report (``probe --dense``): tables, or JSON for machines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.table import Table

from ofa_embed.cli.common import stdout
from ofa_embed.cli.downstream_options import print_confusion

if TYPE_CHECKING:
    from ofa_embed.downstream.segmentation import SegmentationReport


def print_segmentation(report: SegmentationReport, as_json: bool) -> None:
    """The report as tables (mIoU, pixel accuracy, per-class IoU, confusion), or as one JSON document."""
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    how = f"kNN (k = {report.k})" if report.method == "knn" else "linear probe"
    stdout.print(f"segmentation by {how} on the fields of {report.store} ({', '.join(report.fields)}), "
                 f"target {report.target!r}: {report.pixels:,} labelled pixels")
    stdout.print(f"split: {report.split}; metrics on out-of-fold predictions")
    table = Table(title=f"metrics (95% bootstrap interval over {report.units} blocks, {report.bootstrap} replicates)")
    for column in ("metric", "value", "low", "high"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, estimate in [("mIoU", report.miou), ("pixel accuracy", report.accuracy),
                           *((f"IoU {c}", e) for c, e in report.iou.items())]:
        table.add_row(name, f"{estimate.value:.3f}", f"{estimate.low:.3f}", f"{estimate.high:.3f}")
    stdout.print(table)
    print_confusion(report.classes, report.confusion, "confusion matrix in pixels (rows: true, columns: predicted)")
    for path in report.predictions:
        stdout.print(f"wrote {path}")
