"""Linear probes on frozen embeddings: standardised features, regularisation chosen by inner CV.

- classify: multinomial logistic regression (L-BFGS), classes weighted inversely to their frequency so
  a rare class is not ignored; the inverse regularisation ``C`` is chosen by inner cross-validation
  on macro-F1.
- multilabel: one logistic regression per label sharing one ``C``, chosen on micro average precision.
- regress: ridge regression, ``alpha`` chosen on R².

The inner folds group samples by ``groups`` (the spatial blocks of the outer split) so that choosing
the regularisation does not leak between neighbouring tiles either.

A fitted probe is kept as plain arrays (scaler mean/scale, coefficients, intercepts): it predicts with
numpy and saves as JSON, so a saved probe is readable anywhere and loading it runs no pickled code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, make_scorer
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ofa_embed.atomic import atomic_target
from ofa_embed.downstream.metrics import TASKS, python_scalar
from ofa_embed.errors import ConfigError, StoreError, first_line

__all__ = ["PROBE_FORMAT", "ProbeModel", "fit_probe"]

PROBE_FORMAT = "ofa-embed-probe"
PROBE_VERSION = 1
INNER_FOLDS = 5
C_GRID = np.logspace(-4, 2, 7)  # logistic: inverse L2 strength on standardised features
ALPHA_GRID = np.logspace(-2, 4, 7)  # ridge: L2 strength


@dataclass
class ProbeModel:
    """A fitted linear probe.

    Attributes:
        task: ``classify``, ``multilabel`` or ``regress``.
        classes: class names (classify) or label names (multilabel, column order); empty for regress.
        mean, scale: ``(D,)`` feature standardisation.
        coef: ``(K, D)`` weights on standardised features; ``intercept``: ``(K,)``. K = classes
            (multinomial, or one row per label), 1 for binary classification and regression.
        regularisation: the chosen ``C`` (logistic) or ``alpha`` (ridge); ``inner_score``: its inner-CV score.
        weights_hash: hash of the backbone weights whose embeddings the probe was fitted on.
    """

    task: str
    classes: list[Any]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    regularisation: float
    inner_score: float
    weights_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        """The embedding dimension D the probe takes."""
        return len(self.mean)

    def decision(self, features: np.ndarray) -> np.ndarray:
        """``(N, K)`` linear scores of ``(N, D)`` embeddings."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.dimension:
            raise ValueError(f"probe expects (N, {self.dimension}) embeddings, got {features.shape}")
        return ((features - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` class probabilities (classify) or per-label probabilities (multilabel)."""
        scores = self.decision(features)
        if self.task == "regress":
            raise ValueError("a regression probe has no probabilities")
        if self.task == "multilabel" or scores.shape[1] == 1:
            positive = 1 / (1 + np.exp(-np.clip(scores, -500, 500)))
            return positive if self.task == "multilabel" else np.hstack([1 - positive, positive])
        scores -= scores.max(axis=1, keepdims=True)
        odds = np.exp(scores)
        return odds / odds.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """classify: ``(N,)`` class names; multilabel: ``(N, L)`` bool (probability >= 0.5); regress: ``(N,)``."""
        if self.task == "regress":
            return self.decision(features)[:, 0]
        return self.labels(self.predict_proba(features))

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """What :meth:`predict` returns, from :meth:`predict_proba`'s output (classify, multilabel)."""
        if self.task == "multilabel":
            return proba >= 0.5
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]

    def save(self, path: str | Path) -> Path:
        """Write the probe as JSON (temporary name, then rename)."""
        path = Path(path)
        payload = {
            "format": PROBE_FORMAT, "version": PROBE_VERSION, "task": self.task,
            "classes": [python_scalar(c) for c in self.classes],
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(), "regularisation": self.regularisation,
            "inner_score": self.inner_score, "weights_hash": self.weights_hash, "extra": self.extra,
        }
        with atomic_target(path) as tmp:
            tmp.write_text(json.dumps(payload))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ProbeModel:
        """The probe written by :meth:`save` at ``path``.

        Raises:
            StoreError: the file is unreadable, not a probe of a version this package reads, or incomplete.
        """
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: not a readable probe file ({exc})") from None
        if payload.get("format") != PROBE_FORMAT or payload.get("version", 0) > PROBE_VERSION:
            raise StoreError(f"{path}: not an ofa-embed probe of a version this package reads")
        try:
            arrays = {k: np.asarray(payload[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")}
            return cls(payload["task"], payload["classes"], **arrays, regularisation=payload["regularisation"],
                       inner_score=payload["inner_score"], weights_hash=payload.get("weights_hash"),
                       extra=payload.get("extra", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: incomplete probe file ({exc!r})") from None


def _inner_splits(targets: np.ndarray, task: str, groups: np.ndarray | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner CV folds: grouped when groups are given, stratified for classification when possible."""
    index = np.zeros(len(targets))
    if groups is not None and len(np.unique(groups)) >= 2:
        folds = min(INNER_FOLDS, len(np.unique(groups)))
        if task == "classify":  # keeps every class in the training side of each inner fold where possible
            try:
                return list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(index, targets, groups))
            except ValueError:  # a class with fewer members than folds: not possible, grouped folds alone
                pass
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(index, groups=groups))
    if task == "classify":
        smallest = min(np.unique(targets, return_counts=True)[1])
        if smallest >= 2:
            return list(StratifiedKFold(min(INNER_FOLDS, smallest), shuffle=True, random_state=seed).split(index, targets))
    return list(KFold(min(INNER_FOLDS, len(targets)), shuffle=True, random_state=seed).split(index))


def _search(task: str, seed: int) -> tuple[Any, str, np.ndarray, Any]:
    if task == "classify":
        head = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
        return head, "head__C", C_GRID, "f1_macro"
    if task == "multilabel":
        head = OneVsRestClassifier(LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed))
        scorer = make_scorer(average_precision_score, average="micro", response_method="predict_proba")
        return head, "head__estimator__C", C_GRID, scorer
    return Ridge(), "head__alpha", ALPHA_GRID, "r2"


def _arrays(pipeline: Pipeline, task: str) -> tuple[np.ndarray, np.ndarray]:
    head = pipeline.named_steps["head"]
    if task == "multilabel":
        coef = np.vstack([e.coef_ for e in head.estimators_])
        intercept = np.concatenate([np.atleast_1d(e.intercept_) for e in head.estimators_])
        return coef, intercept
    return np.atleast_2d(head.coef_).astype(np.float64), np.atleast_1d(head.intercept_).astype(np.float64)


def fit_probe(
    features: np.ndarray, targets: np.ndarray, task: str, *, classes: Sequence[Any] | None = None,
    groups: np.ndarray | None = None, seed: int = 0, weights_hash: str | None = None,
) -> ProbeModel:
    """Fit a linear probe, choosing its regularisation by inner cross-validation.

    Args:
        features: ``(N, D)`` embeddings.
        targets: classify ``(N,)`` class labels; multilabel ``(N, L)`` 0/1 with ``classes`` naming the
            columns; regress ``(N,)`` floats.
        task: ``classify``, ``multilabel`` or ``regress``.
        classes: multilabel: the label names of the target columns (default ``0..L-1``); ignored
            otherwise (classify uses the sorted classes found in ``targets``).
        groups: ``(N,)`` group of each sample (spatial block) for grouped inner folds.
        seed: seed of the inner folds and the logistic solvers.
        weights_hash: hash of the backbone weights that made ``features``, kept on the probe.

    Raises:
        ConfigError: an unknown task, a single class, or a label that never occurs.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    features = np.asarray(features, dtype=np.float64)
    if task == "classify":
        found = np.unique(targets)
        if len(found) < 2:
            raise ConfigError(f"a classification probe needs at least two classes; the labels hold only {found.tolist()}")
        classes = list(found)
    elif task == "multilabel":
        targets = np.asarray(targets, dtype=np.int64)
        classes = list(classes) if classes is not None else list(range(targets.shape[1]))
        varying = targets.min(axis=0) != targets.max(axis=0)
        if not varying.any():
            raise ConfigError("every label is present on every sample or on none; a probe has nothing to learn")
        if not varying.all():  # a rare label absent from one fold's training tiles: predict its constant prior
            return _with_constant_labels(fit_probe(features, targets[:, varying], task, classes=list(np.flatnonzero(varying)),
                                                   groups=groups, seed=seed, weights_hash=weights_hash),
                                         targets, classes, varying)
    else:
        targets, classes = np.asarray(targets, dtype=np.float64), []
    head, parameter, grid, scoring = _search(task, seed)
    pipeline = Pipeline([("scale", StandardScaler()), ("head", head)])
    search = None
    for inner_groups in (groups, None):  # grouped inner folds first; ungrouped if no grouped fold could be fitted
        search = GridSearchCV(pipeline, {parameter: grid}, scoring=scoring,
                              cv=_inner_splits(targets, task, inner_groups, seed), error_score=np.nan, refit=True)
        try:
            with warnings.catch_warnings():
                # inner folds that miss a class, or lbfgs stopping at max_iter on tiny C, are scored as they are
                warnings.simplefilter("ignore", (ConvergenceWarning, UserWarning, RuntimeWarning))
                search.fit(features, targets)
            break
        except ValueError as exc:
            if inner_groups is None:
                raise ConfigError(f"no inner cross-validation fold could be fitted on {len(targets)} samples "
                                  f"({first_line(exc)}); label more tiles") from None
    assert search is not None  # the loop above either fitted one or raised
    scaler = search.best_estimator_.named_steps["scale"]
    coef, intercept = _arrays(search.best_estimator_, task)
    if task == "classify" and len(classes) == 2:  # sklearn stores binary as one row for classes[1]
        coef, intercept = coef[-1:], intercept[-1:]
    return ProbeModel(
        task, classes, scaler.mean_.astype(np.float64), np.where(scaler.scale_ > 0, scaler.scale_, 1.0),
        coef, intercept, float(search.best_params_[parameter]), float(search.best_score_), weights_hash,
    )


CONSTANT_LOGIT = 10.0  # sigmoid(10) = 0.99995: a label seen on every (or no) training sample


def _with_constant_labels(fitted: ProbeModel, targets: np.ndarray, classes: list[Any], varying: np.ndarray) -> ProbeModel:
    """``fitted`` (on the ``varying`` label columns) widened to all labels, constant ones at their prior."""
    coef = np.zeros((len(classes), fitted.dimension))
    intercept = np.where(targets[0] > 0, CONSTANT_LOGIT, -CONSTANT_LOGIT).astype(np.float64)
    coef[varying], intercept[varying] = fitted.coef, fitted.intercept
    return ProbeModel("multilabel", classes, fitted.mean, fitted.scale, coef, intercept, fitted.regularisation,
                      fitted.inner_score, fitted.weights_hash)
