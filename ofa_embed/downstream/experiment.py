"""``probe`` and ``knn``: labels -> tiles -> cross-validated metrics -> predictions over the store.

Both follow the same protocol:

1. read the store's tiles and join the labels to them (``labels.py``);
2. split the labelled tiles into ``folds`` (spatial blocks by default, ``splits.py``);
3. for each fold, fit on the other folds and predict the held-out one, so every labelled tile gets an
   out-of-fold prediction;
4. score the out-of-fold predictions with bootstrapped intervals, resampling whole blocks
   (``metrics.py``);
5. refit on all labelled tiles; optionally save the probe, predict every tile of the store into a
   GeoParquet file, and draw plots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa

from ofa_embed.atomic import atomic_target
from ofa_embed.defaults import BOOTSTRAP_REPLICATES, CV_FOLDS, KNN_NEIGHBOURS
from ofa_embed.downstream.knn import NeighbourSearch, flat_search, knn_vote, store_search
from ofa_embed.downstream.labels import LabelJoin, join_labels, read_labels
from ofa_embed.downstream.metrics import Evaluation, evaluate
from ofa_embed.downstream.plots import draw
from ofa_embed.downstream.probe import ProbeModel, fit_probe
from ofa_embed.downstream.report import DownstreamReport
from ofa_embed.downstream.splits import SPLITS, Split, make_split
from ofa_embed.errors import ConfigError, IndexStateError, LabelError
from ofa_embed.indexes.store_index import open_index
from ofa_embed.location import AnyPath, as_location
from ofa_embed.progress import ProgressCallback
from ofa_embed.store import (
    RESULT_COLUMNS,
    TILE_COLUMNS,
    StoreFile,
    describe_store,
    embedding_columns,
    embedding_matrix,
    parquet_schema,
    read_embeddings,
    read_parquet,
    read_tiles,
    tiles_frame,
)

__all__ = ["DownstreamReport", "probe", "knn", "predict", "predict_store"]

logger = logging.getLogger(__name__)
# embeddings (n, D), their store positions (n,) -> predictions (n,) or (n, L), scores (n, C) or None
Predictor = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class _Prepared:
    store: AnyPath
    files: list[StoreFile]  # the store as described once; labels, features and predictions all read it
    join: LabelJoin
    split: Split
    features: np.ndarray

    @property
    def weights_hash(self) -> str:
        return self.files[0].weights_hash


def _prepare(store: str | AnyPath, labels: str | Path | None, target: str, task: str, split: str, folds: int,
             block_size_m: float | None, min_overlap: float | None, seed: int, n_boot: int) -> _Prepared:
    if n_boot < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {n_boot}")
    store = as_location(store)
    described = describe_store(store)
    if labels is None:
        tiles = read_tiles(store, (*TILE_COLUMNS, target), files=described)
        if target not in tiles.columns or tiles[target].isna().all():
            raise LabelError(f"{store}: no store column {target!r} with values (chip collections have 'label'); "
                             "give a labels file with --labels")
        table, labels = pd.DataFrame({"id": tiles["id"], target: tiles[target]}), f"{store} column {target!r}"
    else:
        table = read_labels(labels, target)
        tiles = read_tiles(store, files=described)
    group_column = None if split in SPLITS else split
    join = join_labels(table, tiles, target, task, min_overlap=min_overlap, group_column=group_column, source=labels)
    if task == "classify" and len(join.classes) < 2:
        raise LabelError(f"{labels}: the matched tiles hold a single class ({join.classes[0]!r}); "
                         "a classifier needs at least two classes")
    if task == "multilabel":
        constant = [c for c, column in zip(join.classes, join.targets.T, strict=True) if column.min() == column.max()]
        if constant:
            raise LabelError(f"{labels}: labels {constant} are on every matched tile or on none; drop them")
    column = join.tiles["group_value"] if group_column else None
    chosen = make_split(split, join.tiles.geometry, folds, block_size_m=block_size_m, column=column, seed=seed)
    return _Prepared(store, described, join, chosen, read_embeddings(store, join.positions, files=described))


def _cross_validate(prepared: _Prepared, task: str, fit_predict: Callable[[np.ndarray], Predictor],
                    n_boot: int, seed: int, on_progress: ProgressCallback | None) -> tuple[Evaluation, gpd.GeoDataFrame]:
    """Out-of-fold predictions for every labelled tile and their evaluation.

    ``fit_predict(train_indices)`` fits on the training samples and returns a predictor.
    """
    join, split = prepared.join, prepared.split
    targets = join.targets
    predicted: np.ndarray = np.empty(len(targets), dtype=object) if task == "classify" else np.zeros_like(targets, dtype=float)
    scores: np.ndarray | None = None
    for fold in range(split.k):
        test = np.flatnonzero(split.folds == fold)
        train = np.flatnonzero(split.folds != fold)
        fold_predicted, fold_scores = fit_predict(train)(prepared.features[test], join.positions[test])
        predicted[test] = fold_predicted
        if fold_scores is not None and task == "multilabel":
            scores = np.zeros(targets.shape) if scores is None else scores
            scores[test] = fold_scores
        if on_progress:
            on_progress("folds", fold + 1, split.k)
    groups = split.groups if split.grouped else None
    if task == "multilabel":
        predicted = predicted.astype(bool)
    evaluation = evaluate(task, targets, predicted, scores, classes=join.classes, groups=groups, n_boot=n_boot, seed=seed)
    frame = join.tiles[["position", "id", "scene", "geometry"]].copy()
    frame["fold"] = split.folds
    frame["truth"], frame["prediction"] = _columns(targets, join.classes, task), _columns(predicted, join.classes, task)
    return evaluation, frame


def _columns(values: np.ndarray, classes: list[Any], task: str) -> list[Any] | np.ndarray:
    """One cell per sample: multilabel indicator rows become lists of label names."""
    if task == "multilabel":
        return [[c for c, on in zip(classes, row, strict=True) if on] for row in np.asarray(values, bool)]
    return values


def _probe_predictor(model: ProbeModel) -> Predictor:
    def predict(features: np.ndarray, _positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if model.task == "regress":
            return model.predict(features), None
        proba = model.predict_proba(features)
        return model.labels(proba), proba

    return predict


def _knn_predictor(search: NeighbourSearch, allowed: np.ndarray, targets: np.ndarray, positions: np.ndarray,
                   task: str, classes: list[Any], k: int) -> Predictor:
    """Nearest-neighbour (kNN) vote over the labelled samples ``allowed`` (store rows ``positions[allowed]``); a labelled tile
    never votes for itself, so its prediction comes from its neighbours only.
    """
    def predict(features: np.ndarray, query_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        similarities, neighbours = search(features, allowed, k + 1)
        keep = (neighbours >= 0) & (positions[allowed][neighbours.clip(0)] != query_positions[:, None])
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        neighbours = np.take_along_axis(np.where(keep, neighbours, -1), first, axis=1)
        similarities = np.take_along_axis(similarities, first, axis=1)
        vote = knn_vote(similarities, neighbours, targets[allowed], task, classes)
        return vote.predicted, vote.scores

    return predict


def _file_tiles(path: AnyPath) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """One store file's tiles (:data:`~ofa_embed.store.RESULT_COLUMNS`) and their ``(n, D)`` embeddings."""
    embedded = embedding_columns(parquet_schema(path))
    table = read_parquet(path, [*RESULT_COLUMNS, *embedded])
    return tiles_frame(table.drop(embedded)), embedding_matrix(table)


def predict_store(store: str | AnyPath, predictor: Predictor, task: str, classes: list[Any], out: str | Path | None,
                  join: LabelJoin | None = None, on_progress: ProgressCallback | None = None, *,
                  files: Sequence[StoreFile] | None = None) -> gpd.GeoDataFrame:
    """Predict every tile of ``store``; write the result as GeoParquet to ``out`` when given (temporary
    name, then renamed). ``files``: the store's :func:`describe_store`, when the caller has it.

    Returns:
        One row per tile: ``id``, ``scene``, ``modality``, ``datetime``, flat ``xmin``/``ymin``/``xmax``/
        ``ymax``, ``prediction`` (class name, list of labels, or value), ``prob_<class>`` per class or
        label (classify/multilabel), ``label`` (the joined label of labelled tiles, else null),
        ``geometry`` (EPSG:4326).
    """
    described = files if files is not None else describe_store(store)
    parts = []
    offset = 0
    for done, entry in enumerate(described, 1):
        tiles, embeddings = _file_tiles(entry.path)
        predicted, scores = predictor(embeddings, offset + np.arange(len(tiles)))
        offset += len(tiles)
        tiles["prediction"] = _columns(predicted, classes, task)
        if scores is not None:
            for j, name in enumerate(classes):
                tiles[f"prob_{name}"] = scores[:, j].astype(np.float32)
        parts.append(tiles)
        if on_progress:
            on_progress("predict", done, len(described))
    frame = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs="OGC:CRS84")
    labelled = {} if join is None else dict(zip(join.tiles["id"], _columns(join.targets, join.classes, task), strict=True))
    frame["label"] = [labelled.get(i) for i in frame["id"]]
    frame = frame[[c for c in frame.columns if c != "geometry"] + ["geometry"]]
    if out is not None:
        with atomic_target(Path(out), (OSError, pa.ArrowException)) as tmp:
            frame.to_parquet(tmp, index=False, schema_version="1.1.0")
    return frame


def _finish(prepared: _Prepared, report: DownstreamReport, predictor: Predictor, predict: str | Path | None,
            plot: str | Path | None, on_progress: ProgressCallback | None) -> DownstreamReport:
    """Predictions over the store and plots, as asked."""
    if predict is None and plot is None:
        return report
    frame = predict_store(prepared.store, predictor, report.task, prepared.join.classes, predict, prepared.join, on_progress,
                          files=prepared.files)
    report.predictions = None if predict is None else Path(predict)
    if plot is not None:
        report.plots = draw(report, frame, Path(plot))
    return report


def probe(
    store: str | AnyPath, labels: str | Path | None, target: str, *, task: str = "classify", split: str = "spatial-block",
    folds: int = CV_FOLDS, block_size_m: float | None = None, min_overlap: float | None = None, save: str | Path | None = None,
    predict: str | Path | None = None, plot: str | Path | None = None, n_boot: int = BOOTSTRAP_REPLICATES, seed: int = 0,
    on_progress: ProgressCallback | None = None,
) -> DownstreamReport:
    """Linear probe on frozen embeddings: cross-validated metrics, a refitted probe, predictions.

    Args:
        store: store directory.
        labels: labels file (see ``labels.py``), or None when ``target`` is a column of the store itself
            (a chip collection's folder-derived ``label``).
        target: the label column (of the labels file, or of the store).
        task: ``classify``, ``multilabel`` or ``regress``.
        split: ``spatial-block`` (default), ``random``, or a column (labels, or store column such as
            ``scene``) whose values are kept whole.
        folds: outer folds.
        block_size_m: spatial block edge in metres (default: 4 tile widths).
        min_overlap: polygon threshold (see ``labels.py``).
        save: write the probe refitted on all labelled tiles as JSON.
        predict: write predictions for every tile of the store to this GeoParquet file.
        plot: directory for PNG plots (confusion matrix or scatter, map of predictions).
        n_boot: bootstrap replicates for the intervals.
        seed: seed of the split, the probe fits and the bootstrap.
        on_progress: called as ``("folds", done, folds)`` per outer fold, then ``("predict", files_done,
            files)`` per store file when predicting.

    Raises:
        LabelError, ConfigError, StoreError: bad labels, options or store (one-line messages).
    """
    prepared = _prepare(store, labels, target, task, split, folds, block_size_m, min_overlap, seed, n_boot)
    join, groups = prepared.join, prepared.split.groups if prepared.split.grouped else None

    def fit_predict(train: np.ndarray) -> Predictor:
        model = fit_probe(prepared.features[train], join.targets[train], task, classes=join.classes,
                          groups=None if groups is None else groups[train], seed=seed)
        return _probe_predictor(model)

    evaluation, out_of_fold = _cross_validate(prepared, task, fit_predict, n_boot, seed, on_progress)
    model = fit_probe(prepared.features, join.targets, task, classes=join.classes, groups=groups, seed=seed,
                      weights_hash=prepared.weights_hash)
    if save is not None:
        model.save(save)
    report = DownstreamReport("linear probe", task, target, prepared.store, join, prepared.split, evaluation,
                              out_of_fold, model)
    return _finish(prepared, report, _probe_predictor(model), predict, plot, on_progress)


def knn(
    store: str | AnyPath, labels: str | Path | None, target: str, *, k: int = KNN_NEIGHBOURS, task: str = "classify",
    split: str = "spatial-block", folds: int = CV_FOLDS, block_size_m: float | None = None, min_overlap: float | None = None,
    predict: str | Path | None = None, plot: str | Path | None = None, n_boot: int = BOOTSTRAP_REPLICATES, seed: int = 0,
    on_progress: ProgressCallback | None = None,
) -> DownstreamReport:
    """Nearest-neighbour (kNN) vote over labelled tiles through FAISS (the store's index when fresh).

    Same protocol as :func:`probe`.
    """
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    prepared = _prepare(store, labels, target, task, split, folds, block_size_m, min_overlap, seed, n_boot)
    join = prepared.join
    try:
        index = open_index(prepared.store)
        search = store_search(index, index.index_positions(join.positions, prepared.files))
        where = f"store {index.config.kind} index"
    except IndexStateError as exc:
        logger.info("kNN on an exact in-memory index of the labelled tiles (%s)", str(exc).split(": ", 1)[-1])
        search, where = flat_search(prepared.features), "exact flat index of the labelled tiles"

    def fit_predict(train: np.ndarray) -> Predictor:
        return _knn_predictor(search, train, join.targets, join.positions, task, join.classes, k)

    evaluation, out_of_fold = _cross_validate(prepared, task, fit_predict, n_boot, seed, on_progress)
    report = DownstreamReport(f"kNN (k={k}, {where})", task, target, prepared.store, join, prepared.split,
                              evaluation, out_of_fold)
    everything = np.arange(len(join.targets))
    return _finish(prepared, report, _knn_predictor(search, everything, join.targets, join.positions, task, join.classes, k),
                   predict, plot, on_progress)


def predict(store: str | AnyPath, probe_file: str | Path, out: str | Path,
            on_progress: ProgressCallback | None = None) -> gpd.GeoDataFrame:
    """Apply a saved probe (``probe --save``) to every tile of a store; write GeoParquet to ``out``.

    Raises:
        StoreError: unreadable probe file or store.
        ConfigError: the probe was fitted on embeddings of other weights than the store's.
    """
    model = ProbeModel.load(probe_file)
    described = describe_store(store)
    if model.weights_hash and model.weights_hash != described[0].weights_hash:
        raise ConfigError(f"{probe_file}: fitted on embeddings of weights {model.weights_hash}, but {store} holds "
                          f"weights {described[0].weights_hash}; extract the store with the same model")
    if model.dimension != described[0].dimension:
        raise ConfigError(f"{probe_file}: expects {model.dimension}-dimensional embeddings, {store} has {described[0].dimension}")
    return predict_store(store, _probe_predictor(model), model.task, model.classes, out, on_progress=on_progress,
                         files=described)
