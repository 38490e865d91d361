"""Segmentation probes on embedding fields: labels rasterised onto each field's grid, a linear probe per pixel
under the same spatially blocked cross-validation as tile probes, per-class IoU and mIoU with bootstrap
intervals over blocks, and the predicted classes written as COGs.

Rasterising: a field pixel takes the class of the label polygon that contains its centre (the last one
where polygons overlap); a point labels the pixel it falls in. Blocks: squares of ``block_size_m``
(default :data:`~ofa_embed.downstream.splits.DEFAULT_BLOCK_TILES` tile widths of the field's extraction, as
for tile probes) on a local equal-area projection; every block lies whole in one fold and is one unit of
the bootstrap. Only pixels with a field value (not nodata) and a label are evaluated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from ofa_embed.defaults import KNN_NEIGHBOURS
from ofa_embed.downstream.labels import read_labels
from ofa_embed.downstream.metrics import CONFIDENCE, Estimate, python_scalar
from ofa_embed.downstream.probe import ProbeModel, fit_probe
from ofa_embed.downstream.splits import DEFAULT_BLOCK_TILES, assign_folds, spatial_blocks
from ofa_embed.errors import ConfigError, LabelError, StoreError
from ofa_embed.field_files import FieldGrid, list_fields, read_field_array, write_class_raster
from ofa_embed.location import AnyPath, as_location
from ofa_embed.progress import ProgressCallback

__all__ = ["KNNPixels", "SegmentationReport", "intersection_over_union", "predict_fields", "segment"]

logger = logging.getLogger(__name__)


@dataclass
class SegmentationReport:
    """What a segmentation probe found.

    Attributes:
        store, target: the store and the label column.
        classes: class names, in the order of ``iou`` and ``confusion``.
        pixels: labelled field pixels evaluated; ``fields``: the scenes whose fields held any.
        split: the split, in words; ``units``: bootstrap units (blocks).
        iou: class -> IoU estimate; ``miou``: their mean; ``accuracy``: pixel accuracy.
        confusion: ``(C, C)`` out-of-fold pixel counts, rows truth, columns prediction.
        model: the probe refitted on every labelled pixel (None for kNN); ``predictions``: class COGs written.
        method: ``probe`` (a linear probe per pixel) or ``knn`` (a vote of the ``k`` most cosine-similar labelled
            pixels of the training folds).
    """

    store: AnyPath
    target: str
    classes: list[Any]
    pixels: int
    fields: list[str]
    split: str
    units: int
    iou: dict[Any, Estimate]
    miou: Estimate
    accuracy: Estimate
    confusion: np.ndarray
    model: ProbeModel | None
    bootstrap: int
    predictions: list[AnyPath] = field(default_factory=list)
    method: str = "probe"
    k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain types."""
        return {
            "store": str(self.store), "target": self.target, "classes": [python_scalar(c) for c in self.classes],
            "pixels": self.pixels, "fields": self.fields, "split": self.split, "bootstrap_units": self.units,
            "bootstrap_replicates": self.bootstrap, "confidence": CONFIDENCE, "method": self.method, "k": self.k,
            "miou": vars(self.miou), "accuracy": vars(self.accuracy),
            "iou": {str(c): vars(e) for c, e in self.iou.items()},
            "confusion": self.confusion.astype(int).tolist(), "predictions": [str(p) for p in self.predictions],
        }


def intersection_over_union(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU ``tp / (tp + fp + fn)`` of a ``(C, C)`` confusion matrix (NaN for a class never seen nor
    predicted).
    """
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def _rasterise(labels: gpd.GeoDataFrame, target: str, classes: list[Any], grid: FieldGrid) -> np.ndarray:
    """``(H, W)`` class code of each field pixel (-1: unlabelled)."""
    from rasterio.features import rasterize

    projected = labels.to_crs(grid.crs)
    code = {c: i for i, c in enumerate(classes)}
    shapes = [(geom, code[value]) for geom, value in zip(projected.geometry, projected[target], strict=True)
              if geom is not None and not geom.is_empty]
    if not shapes:
        return np.full((grid.height, grid.width), -1, np.int32)
    return rasterize(shapes, out_shape=(grid.height, grid.width), transform=grid.transform, fill=-1, dtype="int32")


def _pixel_boxes(rows: np.ndarray, cols: np.ndarray, grid: FieldGrid) -> gpd.GeoSeries:
    t = grid.transform
    x0, y0 = t.c + cols * t.a, t.f + rows * t.e
    import shapely

    return gpd.GeoSeries(shapely.box(x0, y0 + t.e, x0 + t.a, y0), crs=grid.crs)


def _bootstrap(truth: np.ndarray, predicted: np.ndarray, groups: np.ndarray, n_classes: int, n_boot: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, C)`` per-class IoU and ``(B,)`` accuracy over ``n_boot`` resamples of whole groups."""
    units, unit_of = np.unique(groups, return_inverse=True)
    # one confusion matrix per unit: a replicate is their sum weighted by how often each unit was drawn
    per_unit = np.zeros((len(units), n_classes * n_classes))
    np.add.at(per_unit, (unit_of, truth * n_classes + predicted), 1)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(units), np.full(len(units), 1 / len(units)), size=n_boot)
    confusions = (draws @ per_unit).reshape(n_boot, n_classes, n_classes)
    ious = np.stack([intersection_over_union(c) for c in confusions])
    accuracy = np.trace(confusions, axis1=1, axis2=2) / np.maximum(confusions.sum(axis=(1, 2)), 1)
    return ious, accuracy


def _estimate(value: float, replicates: np.ndarray) -> Estimate:
    tail = (1 - CONFIDENCE) / 2 * 100
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return Estimate(value, float("nan"), float("nan"))
    return Estimate(float(value), float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)))


def _labelled_pixels(store: AnyPath, labels: gpd.GeoDataFrame, target: str, classes: list[Any],
                     scenes: list[str] | None) -> tuple[dict[str, Any], list[tuple[str, np.ndarray, np.ndarray]]]:
    """The fields (scene -> (values, grid, record)) and per scene the labelled valid pixels' rows/cols."""
    held = list_fields(store)
    if not held:
        raise StoreError(f"{store}: holds no embedding fields; extract with --dense first")
    if scenes:
        if missing := [s for s in scenes if s not in held]:
            raise StoreError(f"{store}: no field of scene(s) {', '.join(missing)}; it holds {', '.join(list(held)[:5])}")
        held = {s: held[s] for s in scenes}
    fields: dict[str, Any] = {}
    found = []
    for scene, path in held.items():
        values, grid, record = read_field_array(path)
        codes = _rasterise(labels, target, classes, grid)
        codes[np.isnan(values).any(axis=0)] = -1
        rows, cols = np.nonzero(codes >= 0)
        fields[scene] = (values, grid, record, codes)
        if len(rows):
            found.append((scene, rows, cols))
    return fields, found


def segment(
    store: str | AnyPath, labels: str | Path, target: str, *, folds: int = 5, block_size_m: float | None = None,
    scenes: list[str] | None = None, predict: str | Path | None = None, save: str | Path | None = None,
    n_boot: int = 1000, seed: int = 0, on_progress: ProgressCallback | None = None, method: str = "probe",
    k: int = KNN_NEIGHBOURS,
) -> SegmentationReport:
    """Cross-validate a per-pixel linear probe (or kNN vote) on the store's fields against ``labels`` (polygons
    or points with a class column ``target``), then refit it on every labelled pixel.

    Args:
        store: a store with fields (``extract --dense``).
        labels: vector labels in any CRS.
        target: the class column.
        folds: cross-validation folds (spatial blocks kept whole).
        block_size_m: block edge in metres (default: 4 tile widths of the fields' extraction).
        scenes: only these scenes' fields (default: all).
        predict: a folder: the refitted probe's classes of every field pixel, one COG per scene (``<scene>.tif``).
        save: write the refitted probe as JSON (``ofa-embed predict --dense`` applies it).
        n_boot: bootstrap replicates over blocks.
        seed: seed of the folds, the probe and the bootstrap.
        on_progress: called as ``(step, done, total)``.
        method: ``probe`` or ``knn``: each test pixel takes the class most of its ``k`` most cosine-similar
            training pixels hold (exact FAISS search; ties to the larger summed similarity), on the same folds,
            metrics and bootstrap; ``predict`` then votes among all labelled pixels.
        k: neighbours that vote (``knn``).

    Raises:
        StoreError: no fields (or not the scenes asked).
        LabelError: labels that are not vector data, or that cover no field pixel.
        ConfigError: fewer blocks than folds, a single class, an unknown method, ``save`` with ``knn``.
    """
    if method not in ("probe", "knn"):
        raise ConfigError(f"method {method!r}: choose probe or knn")
    if method == "knn" and save is not None:
        raise ConfigError("--save: a kNN keeps its labelled pixels, not a model to save; save a linear probe "
                          "(probe --dense --save) or drop --save")
    if k < 1:
        raise ConfigError(f"--k {k}: give at least 1 neighbour")
    store = as_location(store)
    frame = read_labels(labels, target)
    if not isinstance(frame, gpd.GeoDataFrame):
        raise LabelError(f"{labels}: a segmentation probe needs polygons or points (a vector file), not a table of ids")
    frame = frame[frame[target].notna()]
    classes = sorted(frame[target].unique().tolist(), key=str)
    fields, found = _labelled_pixels(store, frame, target, classes, scenes)
    if not found:
        raise LabelError(f"{labels}: no label covers a valid pixel of the fields in {store} "
                         "(check the labels' CRS and extent)")
    features = np.concatenate([fields[s][0][:, r, c].T for s, r, c in found])
    truth = np.concatenate([fields[s][3][r, c] for s, r, c in found])
    boxes = gpd.GeoSeries(np.concatenate([_pixel_boxes(r, c, fields[s][1]).to_crs("OGC:CRS84").to_numpy()
                                          for s, r, c in found]), crs="OGC:CRS84")
    if block_size_m is None:
        _, grid, record, _ = fields[found[0][0]]
        block_size_m = DEFAULT_BLOCK_TILES * abs(grid.transform.a) * record["tile_size"] / grid.patch
    groups, block_size_m = spatial_blocks(boxes, block_size_m)
    fold = assign_folds(groups, folds, seed)
    present = sorted(set(truth.tolist()))
    if len(present) < 2:
        raise ConfigError(f"{labels}: the labelled pixels hold one class only ({classes[present[0]]!r})")
    weights_hash = fields[found[0][0]][2].get("model", {}).get("weights_hash")
    predicted = np.empty_like(truth)
    for number in range(folds):
        test = fold == number
        if method == "knn":
            predicted[test] = KNNPixels(features[~test], truth[~test], k).predict(features[test])
        else:
            fold_probe = fit_probe(features[~test], truth[~test], "classify", groups=groups[~test], seed=seed)
            predicted[test] = np.asarray(fold_probe.predict(features[test]), dtype=truth.dtype)
        if on_progress:
            on_progress("folds", number + 1, folds)
    n = len(classes)
    confusion = np.bincount(truth * n + predicted, minlength=n * n).reshape(n, n)
    ious, accuracy = _bootstrap(truth, predicted, groups, n, n_boot, seed)
    iou = intersection_over_union(confusion)
    seen = confusion.sum(axis=1) > 0
    with np.errstate(invalid="ignore"):
        miou_reps = np.nanmean(np.where(seen[None], ious, np.nan), axis=1)
    model: ProbeModel | None = None
    if method == "probe":
        model = fit_probe(features, truth, "classify", groups=groups, seed=seed, weights_hash=weights_hash)
        model.classes = [classes[int(c)] for c in model.classes]
    report = SegmentationReport(
        store, target, classes, len(truth), [s for s, _, _ in found],
        f"spatial-block ({block_size_m / 1000:.3g} km blocks, {len(np.unique(groups))} blocks, {folds} folds)",
        len(np.unique(groups)), {c: _estimate(iou[i], ious[:, i]) for i, c in enumerate(classes) if seen[i]},
        _estimate(float(np.nanmean(iou[seen])), miou_reps), _estimate(np.trace(confusion) / confusion.sum(), accuracy),
        confusion, model, n_boot, method=method, k=k if method == "knn" else None,
    )
    if save is not None and model is not None:
        model.save(save)
    if predict is not None:
        predictor = model if model is not None else KNNPixels(features, truth, k, classes)
        report.predictions = _write_predictions(predictor, {s: f[:3] for s, f in fields.items()}, Path(predict))
    return report


class KNNPixels:
    """A kNN vote over labelled pixels: ``predict`` gives each query pixel the class most of its ``k`` most
    cosine-similar labelled pixels hold (:func:`~ofa_embed.downstream.knn.knn_vote`, exact FAISS search).

    Args:
        features: ``(N, D)`` labelled pixels; ``codes``: their class codes ``(N,)``.
        k: neighbours that vote.
        classes: class names by code; given, ``predict`` returns names, else codes.
    """

    def __init__(self, features: np.ndarray, codes: np.ndarray, k: int, classes: list[Any] | None = None) -> None:
        from ofa_embed.downstream.knn import flat_search

        self.codes, self.k = codes, k
        self.names = classes
        self.classes: list[Any] = list(classes) if classes is not None else sorted(set(codes.tolist()))
        self._search = flat_search(features)
        self._all = np.arange(len(codes))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Classes of ``(M, D)`` query pixels, in blocks of 65,536."""
        from ofa_embed.downstream.knn import knn_vote

        codes = sorted(set(self.codes.tolist()))
        out = []
        for start in range(0, len(features), 65_536):
            similarities, neighbours = self._search(features[start : start + 65_536], self._all, self.k)
            out.append(np.asarray(knn_vote(similarities, neighbours, self.codes, "classify", codes).predicted,
                                  dtype=self.codes.dtype))
        predicted = np.concatenate(out) if out else np.empty(0, self.codes.dtype)
        if self.names is None:
            return predicted
        return np.asarray([self.names[int(c)] for c in predicted], dtype=object)


def _write_predictions(model: ProbeModel | KNNPixels, fields: dict[str, Any], folder: Path) -> list[AnyPath]:
    written: list[AnyPath] = []
    for scene, (values, grid, _) in fields.items():
        flat = values.reshape(values.shape[0], -1).T
        valid = ~np.isnan(flat).any(axis=1)
        codes = np.full(len(flat), -1, np.int32)
        if valid.any():
            labels = np.asarray(model.predict(flat[valid]))
            index = {c: i for i, c in enumerate(model.classes)}
            codes[valid] = [index[v] for v in labels.tolist()]
        written.append(write_class_raster(folder / f"{scene}.tif", codes.reshape(grid.height, grid.width), grid,
                                          [str(c) for c in model.classes]))
    return written


def predict_fields(store: str | AnyPath, probe_file: str | Path, out: str | Path,
                   scenes: list[str] | None = None) -> list[AnyPath]:
    """Apply a saved probe (``segment(save=...)`` or a tile probe of the same model) to every pixel of the
    store's fields: one class COG per scene in folder ``out``.

    Raises:
        StoreError: no fields; ConfigError: a probe of another model or dimension.
    """
    store = as_location(store)
    model = ProbeModel.load(probe_file)
    held = list_fields(store)
    if scenes:
        held = {s: p for s, p in held.items() if s in scenes}
    if not held:
        raise StoreError(f"{store}: holds no embedding fields{' of those scenes' if scenes else ''}; extract with --dense")
    fields = {}
    for scene, path in held.items():
        values, grid, record = read_field_array(path)
        hash_ = record.get("model", {}).get("weights_hash")
        if model.weights_hash and hash_ and model.weights_hash != hash_:
            raise ConfigError(f"{probe_file}: fitted on embeddings of weights {model.weights_hash}, but {path} holds "
                              f"weights {hash_}'s; fit a probe on this store")
        if values.shape[0] != model.dimension:
            raise ConfigError(f"{probe_file}: takes {model.dimension}-d embeddings, {path} holds {values.shape[0]}-d")
        fields[scene] = (values, grid, record)
    return _write_predictions(model, fields, Path(out))
