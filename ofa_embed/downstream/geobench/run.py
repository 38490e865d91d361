"""The GEO-Bench run: every selected task scored, one report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ofa_embed.defaults import BOOTSTRAP_REPLICATES, GEOBENCH_BATCH_SIZE
from ofa_embed.downstream.geobench.files import find_tasks, open_task
from ofa_embed.downstream.geobench.scoring import (
    Layout,
    classification_score,
    segmentation_score,
    tile_size_for,
)
from ofa_embed.downstream.geobench.tasks import GEOBENCH_TASKS, REFERENCE_SOURCE, task_name
from ofa_embed.downstream.metrics import CONFIDENCE, json_safe
from ofa_embed.embedding.forward import resolve_device, resolve_precision
from ofa_embed.errors import GeoBenchError
from ofa_embed.model.weights import load_weights
from ofa_embed.progress import ProgressCallback

__all__ = ["GeoBenchReport", "GeoBenchResult", "geobench"]

logger = logging.getLogger(__name__)



# --- the benchmark ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeoBenchResult:
    """One task's score.

    Attributes:
        task: task name; ``kind``: ``classify``, ``multilabel`` or ``segment``.
        metric: ``accuracy``, ``micro_map`` or ``miou``; ``value``, ``low``, ``high``: score and 95 % interval.
        n_train: train + valid samples the probe was fitted on; ``n_test``: samples scored.
        reference: published score of :data:`REFERENCE_SOURCE`, or None.
        modality: registry modality the bands were fed as; ``tile_size``: ``(H, W)`` model input in pixels.
        seconds: wall time of the task.
    """

    task: str
    kind: str
    metric: str
    value: float
    low: float
    high: float
    n_train: int
    n_test: int
    reference: float | None
    modality: str
    tile_size: tuple[int, int]
    seconds: float


@dataclass
class GeoBenchReport:
    """Scores of one run, one row per task (classification tasks first)."""

    root: Path
    weights_hash: str
    weights_source: str
    pretrained: bool
    model: str
    device: str
    n_boot: int
    precision: str = "fp32"
    rows: list[GeoBenchResult] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, one row per task and one column per :class:`GeoBenchResult` field."""
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(GeoBenchResult.__dataclass_fields__))

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON types (NaN as None)."""
        return json_safe({
            "benchmark": "GEO-Bench v1.0", "root": str(self.root), "model": self.model,
            "weights_hash": self.weights_hash, "weights_source": self.weights_source, "pretrained": self.pretrained,
            "device": self.device, "precision": self.precision, "confidence": CONFIDENCE, "bootstrap_replicates": self.n_boot,
            "reference_source": REFERENCE_SOURCE,
            "tasks": [asdict(r) for r in self.rows],
        })



def _counter(name: str, total: int, on_progress: ProgressCallback | None) -> Callable[[int], None]:
    """Adds up samples done and reports ``(name, done, total)``."""
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress:
            on_progress(name, done, total)

    return advance


def _select(found: dict[str, Path], tasks: Sequence[str] | None, root: Path) -> list[str]:
    if not tasks:
        return [name for name in GEOBENCH_TASKS if name in found]
    selected: list[str] = []
    for requested in tasks:
        name = task_name(requested.strip())
        if name not in found:
            expected = root / GEOBENCH_TASKS[name].benchmark / name
            raise GeoBenchError(f"{root}: task {name} not found (expected {expected}); found: {', '.join(found)}")
        if name not in selected:
            selected.append(name)
    return selected


def geobench(
    root: str | Path,
    tasks: Sequence[str] | None = None,
    *,
    weights: str | Path | None = None,
    weights_layout: str | None = None,
    batch_size: int = GEOBENCH_BATCH_SIZE,
    n_boot: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
    device: str | None = None,
    precision: str = "auto",
    on_progress: ProgressCallback | None = None,
) -> GeoBenchReport:
    """Score the frozen backbone on GEO-Bench v1.0 tasks found under ``root`` with linear probes.

    Args:
        root: the GEO-Bench folder holding ``classification_v1.0`` and/or ``segmentation_v1.0``.
        tasks: task names (case-insensitive); default: every task found.
        weights: checkpoint path (ofa-embed ``.safetensors`` or a published DOFA ``.pth``); default: the
            packaged checkpoint, else a seeded random init.
        weights_layout: kernel layout of a DOFA ``.pth`` that is not a recognised release (``bands_first`` or
            ``legacy``), as for :func:`ofa_embed.extract`.
        batch_size: images per forward pass.
        n_boot: bootstrap replicates of the 95 % intervals (0: none).
        seed: seed of the probes, patch sampling and bootstrap.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        precision: ``auto``, ``fp32`` or ``bf16``, as for :func:`ofa_embed.extract`; recorded in the report.
        on_progress: called as ``(task, samples_done, samples_total)`` after every batch.

    Raises:
        GeoBenchError: root missing, no task folder, unknown or absent task, partition missing, a listed
            sample without its file (all checked before any embedding), or an unreadable sample.
        WeightsError: the checkpoint cannot be loaded.
    """
    if batch_size <= 0 or n_boot < 0:
        raise GeoBenchError(f"batch_size must be positive and n_boot non-negative, got {batch_size} and {n_boot}")
    root = Path(root)
    found = find_tasks(root)
    opened = [open_task(found[name], name) for name in _select(found, tasks, root)]
    loaded = load_weights(weights, weights_layout=weights_layout)
    torch_device = resolve_device(device)
    resolved = resolve_precision(precision, torch_device)
    model = loaded.model.to(torch_device).eval()
    for files in opened:
        if files.task.modality not in model.modalities:
            raise GeoBenchError(f"{files.task.name}: the model has no patch embedding for {files.task.modality}")
    report = GeoBenchReport(root, loaded.weights_hash, loaded.source, loaded.pretrained, model.config.name,
                            str(torch_device), n_boot, resolved)
    for files in opened:
        start = time.perf_counter()
        task, layout = files.task, Layout.of(files.task)
        first = next(files.samples("train", layout.stored))
        tile = (tile_size_for(first.image.shape[1], model.patch_size), tile_size_for(first.image.shape[2], model.patch_size))
        progress = _counter(task.name, sum(len(v) for v in files.partition.values()), on_progress)
        score = segmentation_score if task.kind == "segment" else classification_score
        estimate, n_fit, n_test = score(files, model, layout, tile, torch_device, batch_size, n_boot, seed, progress, resolved)
        report.rows.append(GeoBenchResult(
            task.name, task.kind, task.metric, estimate.value, estimate.low, estimate.high, n_fit, n_test,
            task.reference, task.modality, tile, time.perf_counter() - start,
        ))
        logger.info("%s: %s %.3f", task.name, task.metric, estimate.value)
    return report
