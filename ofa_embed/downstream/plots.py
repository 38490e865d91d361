"""PNG plots of a downstream run: confusion matrix (classify), per-label scores (multilabel) or
predicted-vs-true scatter (regress), and a map of the predictions over every tile of the store.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ofa_embed.atomic import atomic_target
from ofa_embed.downstream.report import DownstreamReport
from ofa_embed.errors import StoreError

__all__ = ["draw"]


def _confusion(report: DownstreamReport, ax: Axes) -> None:
    evaluation = report.evaluation
    counts = evaluation.confusion
    assert counts is not None, "classify evaluations carry a confusion matrix"
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(evaluation.classes))
    ax.set_xticks(ticks, [str(c) for c in evaluation.classes], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(c) for c in evaluation.classes])
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{int(n)}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    metric = evaluation.metrics["macro_f1"]
    ax.set_title(f"{report.method}, {report.split.kind} CV\nmacro-F1 {metric.value:.3f} [{metric.low:.3f}, {metric.high:.3f}]")


def _per_label(report: DownstreamReport, ax: Axes) -> None:
    table = report.evaluation.per_class
    assert table is not None, "multilabel evaluations carry per-class scores"
    ax.barh([str(c) for c in table["class"]], table["f1"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (out of fold)")
    ax.set_title(f"{report.method}, {report.split.kind} CV")


def _scatter(report: DownstreamReport, ax: Axes) -> None:
    truth = report.out_of_fold["truth"].to_numpy(float)
    predicted = report.out_of_fold["prediction"].to_numpy(float)
    ax.scatter(truth, predicted, s=8, alpha=0.6)
    low, high = min(truth.min(), predicted.min()), max(truth.max(), predicted.max())
    ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set_xlabel(f"true {report.target}")
    ax.set_ylabel(f"predicted {report.target} (out of fold)")
    metric = report.evaluation.metrics["r2"]
    ax.set_title(f"{report.method}, {report.split.kind} CV: R² {metric.value:.3f} [{metric.low:.3f}, {metric.high:.3f}]")


def _map(report: DownstreamReport, predictions: gpd.GeoDataFrame, ax: Axes) -> None:
    if report.task == "regress":
        predictions.plot(column="prediction", ax=ax, cmap="viridis", legend=True, linewidth=0)
    else:
        shown = predictions["prediction"]
        if report.task == "multilabel":
            probabilities = predictions[[f"prob_{c}" for c in report.labels.classes]].to_numpy()
            shown = np.asarray(report.labels.classes, dtype=object)[probabilities.argmax(axis=1)]
        predictions.assign(shown=shown).plot(column="shown", ax=ax, categorical=True, legend=True, linewidth=0,
                                             cmap="tab10" if len(report.labels.classes) <= 10 else "tab20")
    labelled = predictions[predictions["label"].notna()]
    labelled.boundary.plot(ax=ax, color="black", linewidth=0.3)
    ax.set_title(f"{report.target}: predictions for {len(predictions)} tiles (labelled tiles outlined)")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")


def draw(report: DownstreamReport, predictions: gpd.GeoDataFrame, directory: Path) -> list[Path]:
    """Write ``<directory>/{confusion,per_label,scatter}.png`` (by task) and ``map.png``; returns the paths."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{directory}: cannot create the plot directory ({exc.strerror or exc})") from None
    first = {"classify": ("confusion", _confusion), "multilabel": ("per_label", _per_label),
             "regress": ("scatter", _scatter)}[report.task]
    written = []
    for name, painter in (first, ("map", lambda r, ax: _map(r, predictions, ax))):
        # a bare Figure renders to files without pyplot's global state or a GUI backend (none is selected)
        figure = Figure(figsize=(7, 6), dpi=120)
        ax = figure.subplots()
        painter(report, ax)
        figure.tight_layout()
        path = directory / f"{name}.png"
        with atomic_target(path) as tmp:
            figure.savefig(tmp, format="png")
        written.append(path)
    return written
