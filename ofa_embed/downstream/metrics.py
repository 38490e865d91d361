"""Metrics of downstream predictions with bootstrapped 95 % confidence intervals.

Tiles next to each other are not independent samples: when the evaluation comes from a spatially
blocked split, the bootstrap resamples whole blocks (``groups``), so the intervals reflect how many
independent places were tested, not how many tiles. Without groups, tiles are resampled.

Classification metrics are computed from a (weighted) confusion matrix, so each bootstrap replicate
is one ``bincount``; average precision needs one sort per replicate and label, the costly part of a
multilabel evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TASKS", "Estimate", "Evaluation", "evaluate", "class_codes", "json_safe", "python_scalar"]

TASKS = ("classify", "multilabel", "regress")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric on the evaluated samples and its bootstrap percentile interval (``CONFIDENCE``)."""

    value: float
    low: float
    high: float


@dataclass
class Evaluation:
    """Metrics of one evaluation.

    Attributes:
        task: ``classify``, ``multilabel`` or ``regress``.
        metrics: name -> :class:`Estimate`. classify: ``accuracy``, ``macro_f1``, ``balanced_accuracy``;
            multilabel: ``micro_map``, ``macro_map``, ``micro_f1``, ``macro_f1``; regress: ``r2``,
            ``rmse``, ``mae`` (in target units).
        classes: class (or label) names, in the order of ``confusion`` and ``per_class``.
        per_class: classify/multilabel: one row per class with ``precision``, ``recall``, ``f1``,
            ``support`` (and ``average_precision`` for multilabel); None for regression.
        confusion: classify: ``(C, C)`` counts, rows = truth, columns = prediction; else None.
        samples: number of evaluated samples; ``units``: number of bootstrap units (blocks or samples).
    """

    task: str
    metrics: dict[str, Estimate]
    classes: list[Any] = field(default_factory=list)
    per_class: pd.DataFrame | None = None
    confusion: np.ndarray | None = None
    samples: int = 0
    units: int = 0
    bootstrap: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as JSON-ready plain types (per-class rows as records, confusion as int lists)."""
        return {
            "task": self.task,
            "metrics": {name: asdict(estimate) for name, estimate in self.metrics.items()},
            "confidence": CONFIDENCE, "bootstrap_replicates": self.bootstrap, "bootstrap_units": self.units,
            "samples": self.samples,
            "classes": [python_scalar(c) for c in self.classes],
            "per_class": None if self.per_class is None else self.per_class.to_dict(orient="records"),
            "confusion": None if self.confusion is None else self.confusion.astype(int).tolist(),
        }


def python_scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON-ready); anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def class_codes(values: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """``(N,)`` int64: the position of each of ``values`` in ``classes``."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[c] for c in values.tolist()], dtype=np.int64)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities (an R² of a constant target, intervals without bootstrap) as
    None, through dicts, lists and tuples: strict JSON.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp, dtype=float), where=denominator > 0)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=float), where=denominator > 0)


def _confusion(truth: np.ndarray, predicted: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    return np.bincount(truth * n_classes + predicted, weights=weights, minlength=n_classes**2).reshape(n_classes, n_classes)


def _classify_metrics(confusion: np.ndarray) -> dict[str, float]:
    tp = np.diag(confusion)
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0  # classes absent from truth and predictions of a replicate do not count
    return {
        "accuracy": float(tp.sum() / confusion.sum()),
        "macro_f1": float(_f1(tp, predicted - tp, support - tp)[present].mean()),
        "balanced_accuracy": float(_ratio(tp, support)[support > 0].mean()),
    }


def average_precision(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted average precision of each column: ``sum_t (R_t - R_t-1) P_t`` over distinct score
    thresholds, as scikit-learn's ``average_precision_score`` (checked in the tests), vectorised over
    columns so that a bootstrap replicate costs one sort. NaN for a column without positive weight.

    Args:
        truth: ``(N, L)`` bool.
        scores: ``(N, L)`` float, higher ranks first.
        weights: ``(N,)`` sample weights.

    Returns:
        ``(L,)`` float64 average precision per column.
    """
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked_scores = np.take_along_axis(scores, order, axis=0)
    ranked_weights = weights[order]
    true_positive = np.cumsum(ranked_weights * np.take_along_axis(truth, order, axis=0), axis=0)
    predicted = np.cumsum(ranked_weights, axis=0)
    # a threshold sits at the last sample of each run of equal scores
    last = np.ones_like(ranked_scores, dtype=bool)
    last[:-1] = ranked_scores[1:] != ranked_scores[:-1]
    positives = true_positive[-1]
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    # the recall gained at a threshold: the true positives since the previous threshold
    at_thresholds = np.where(last, true_positive, np.nan)
    previous = _forward_fill(np.vstack([np.zeros((1, truth.shape[1])), at_thresholds[:-1]]))
    recall_gain = np.where(last, true_positive - previous, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (recall_gain * precision).sum(axis=0) / positives, np.nan)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the last non-NaN above it in its column (0 at the top)."""
    index = np.where(np.isnan(values), 0, np.arange(len(values))[:, None])
    np.maximum.accumulate(index, axis=0, out=index)
    filled = np.take_along_axis(values, index, axis=0)
    return np.nan_to_num(filled, nan=0.0)


def _multilabel_metrics(truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None,
                        weights: np.ndarray) -> dict[str, float]:
    w = weights[:, None]
    tp, fp, fn = (w * (truth & predicted)).sum(0), (w * (~truth & predicted)).sum(0), (w * (truth & ~predicted)).sum(0)
    out = {"micro_f1": float(_f1(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))[0])}
    positive = (w * truth).sum(0) > 0
    out["macro_f1"] = float(_f1(tp, fp, fn)[positive].mean()) if positive.any() else 0.0
    if scores is not None:
        flat_weights = np.repeat(weights, truth.shape[1])
        out["micro_map"] = float(average_precision(truth.reshape(-1, 1), scores.reshape(-1, 1), flat_weights)[0])
        per_label = average_precision(truth, scores, weights)
        out["macro_map"] = float(np.nanmean(per_label)) if positive.any() else 0.0
    return out


def _regress_metrics(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    total = weights.sum()
    error = predicted - truth
    mean = (weights * truth).sum() / total
    spread = (weights * (truth - mean) ** 2).sum()
    return {
        "r2": float(1 - (weights * error**2).sum() / spread) if spread > 0 else float("nan"),
        "rmse": float(np.sqrt((weights * error**2).sum() / total)),
        "mae": float((weights * np.abs(error)).sum() / total),
    }


def _bootstrap(metric: Callable[[np.ndarray], dict[str, float]], groups: np.ndarray, n_boot: int,
               seed: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Point estimates (all weights 1) and percentile intervals over resampled units."""
    units, unit_of = np.unique(groups, return_inverse=True)
    point = metric(np.ones(len(groups)))
    rng = np.random.default_rng(seed)
    replicates: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units)).astype(float)
        for name, value in metric(counts[unit_of]).items():
            replicates[name].append(value)
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals = {name: (float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))) if n_boot else
                 (float("nan"), float("nan")) for name, v in replicates.items()}
    return point, intervals


def _per_class(classes: Sequence[Any], confusion_like: tuple[np.ndarray, np.ndarray, np.ndarray],
               support: np.ndarray) -> pd.DataFrame:
    tp, fp, fn = confusion_like
    return pd.DataFrame({
        "class": [python_scalar(c) for c in classes], "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
        "f1": _f1(tp, fp, fn), "support": support.astype(int),
    })


def evaluate(
    task: str, truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None = None, *,
    classes: Sequence[Any] | None = None, groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
) -> Evaluation:
    """Metrics of ``predicted`` against ``truth`` with bootstrapped intervals.

    Args:
        task: one of :data:`TASKS`.
        truth: classify: ``(N,)`` class labels (values of ``classes``); multilabel: ``(N, L)`` 0/1
            indicators in the column order of ``classes``; regress: ``(N,)`` floats.
        predicted: the predictions, shaped as ``truth``.
        scores: multilabel: ``(N, L)`` label probabilities (needed for mAP); ignored otherwise.
        classes: class or label names; classify default: the sorted union of truth and predictions.
        groups: ``(N,)`` bootstrap units (spatial blocks); None resamples samples.
        n_boot: bootstrap replicates (0: no intervals).
        seed: seed of the bootstrap draws.

    Raises:
        ValueError: unknown ``task``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    groups = np.arange(len(truth)) if groups is None else np.asarray(groups)
    if task == "classify":
        classes = list(classes) if classes is not None else sorted(set(truth.tolist()) | set(predicted.tolist()))
        t, p, n_classes = class_codes(truth, classes), class_codes(predicted, classes), len(classes)
        point, ci = _bootstrap(lambda w: _classify_metrics(_confusion(t, p, n_classes, w)), groups, n_boot, seed)
        confusion = _confusion(t, p, len(classes), np.ones(len(t)))
        tp = np.diag(confusion)
        per_class = _per_class(classes, (tp, confusion.sum(0) - tp, confusion.sum(1) - tp), confusion.sum(1))
    elif task == "multilabel":
        t, p = np.asarray(truth, bool), np.asarray(predicted, bool)
        classes = list(classes) if classes is not None else list(range(t.shape[1]))
        point, ci = _bootstrap(lambda w: _multilabel_metrics(t, p, scores, w), groups, n_boot, seed)
        per_class = _per_class(classes, ((t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)), t.sum(0))
        if scores is not None:
            per_class["average_precision"] = average_precision(t, scores, np.ones(len(t)))
        confusion = None
    else:
        t, p = np.asarray(truth, float), np.asarray(predicted, float)
        point, ci = _bootstrap(lambda w: _regress_metrics(t, p, w), groups, n_boot, seed)
        classes, per_class, confusion = [], None, None
    metrics = {name: Estimate(value, *ci[name]) for name, value in point.items()}
    return Evaluation(task, metrics, list(classes), per_class, confusion, len(truth), len(np.unique(groups)), n_boot)
