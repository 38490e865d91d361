"""What a ``serve`` session holds in memory about its store, and the work behind the API: tiles, search, training.

Loaded once at start (:class:`StoreSession`):

- every tile's footprint as four Web Mercator corners (float32, relative to one origin), its colour (the
  embeddings' first three principal components, as ``ofa-embed map`` draws them), its id (8 raw bytes), scene
  and date: what ``GET /api/tiles`` sends, about 50 bytes a tile;
- the ids sorted as 64-bit integers, to find a tile's store position without a dict of 10^6 strings;
- the store's faiss index (built first when the store has none or a stale one), and the map from its vector
  ids to store positions (they differ after an ``index --update`` added a file that sorts earlier).

Embeddings are never all held: the labelled tiles' vectors are read once and kept
(:meth:`StoreSession.vectors`); predictions stream the store file by file.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from ofa_embed.errors import ConfigError, IndexStateError, LabelError, QueryError
from ofa_embed.labelling.labelbook import NEGATIVE_CLASS
from ofa_embed.mapview.layers import store_layer
from ofa_embed.mapview.page import mercator
from ofa_embed.progress import ProgressCallback
from ofa_embed.retrieval import check_bbox, rocchio_vector
from ofa_embed.store import embedding_columns, embedding_matrix, parquet_schema, read_embeddings, read_metadata, read_parquet

__all__ = ["Prediction", "StoreSession", "TRAIN_METHODS"]

logger = logging.getLogger(__name__)
TRAIN_METHODS = ("probe", "knn")
MAX_K = 10_000


@dataclass
class Prediction:
    """A trained model's predictions over every tile of the store, in store positions.

    Attributes:
        handle: the name the API gives it (``p1``, ``p2``, ...).
        classes: class names; ``codes`` index them, ``(N,)`` uint16.
        probability: ``(N,)`` float32, the predicted class's probability.
        probabilities: ``(N, C)`` float32 per class (kept for export).
        report: the metrics and split the API answered ``POST /api/train`` with.
    """

    handle: str
    classes: list[str]
    codes: np.ndarray
    probability: np.ndarray
    probabilities: np.ndarray
    report: dict[str, Any]
    method: str = "probe"
    model: Any = None
    created: float = field(default_factory=time.time)


def _parse_time(value: object, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        raise QueryError(f"{name} {value!r}: give an ISO 8601 date or time (2024-05-01)") from None
    return (parsed.tz_localize("UTC") if parsed.tzinfo is None else parsed).to_pydatetime()


class StoreSession:
    """A store opened for serving (see the module docstring)."""

    def __init__(self, store: Path, *, build_index: bool = True, on_progress: ProgressCallback | None = None) -> None:
        """Read the store's tiles and open (or build) its index.

        Raises:
            StoreError: missing or empty store. IndexStateError: no usable index and ``build_index`` False.
        """
        from ofa_embed import indexes

        self.store = Path(store)
        layer, self.files = store_layer(self.store)
        self.count = layer.count
        projected = mercator(layer.corners)
        everything = projected.reshape(-1, 2)
        self.origin = everything.mean(axis=0) if len(everything) else np.zeros(2)
        self.corners = (projected - self.origin).astype(np.float32)  # (N, 4, 2)
        self.lonlat_bounds = np.stack([layer.corners[..., 0].min(1), layer.corners[..., 1].min(1),
                                       layer.corners[..., 0].max(1), layer.corners[..., 1].max(1)], 1)
        self.colors = layer.colors.astype(np.uint8)
        self.legend = layer.legend
        ids = pd.Series(layer.fields["id"]).astype(str).to_numpy()
        self.ids = ids
        self.id_bytes = np.frombuffer(bytes.fromhex("".join(ids)), np.uint8).reshape(-1, 8).copy()
        keys = self.id_bytes.view(">u8").ravel()
        self.id_order = np.argsort(keys, kind="stable")
        self.id_sorted = keys[self.id_order]
        scenes = pd.Series(layer.fields["scene"]).astype(str)
        self.scene_codes, scene_names = pd.factorize(scenes)
        self.scene_names = [str(s) for s in scene_names]
        times = pd.to_datetime(pd.Series(layer.fields["datetime"]), utc=True)
        seconds = (times - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
        self.days = (seconds / 86400).to_numpy(np.float32, na_value=np.nan)
        self.dates = (times.min(), times.max())
        found = {v for f in self.files for v in pc.unique(read_parquet(f.path, ["modality"]).column(0)).to_pylist()}
        self.modalities = sorted(str(v) for v in found if v is not None)
        self.model = read_metadata(self.files[0].path).get("model", {})
        try:
            self.index = indexes.open(self.store)
        except IndexStateError as exc:
            if not build_index:
                raise
            logger.info("%s; building it (kind auto)", str(exc).split(": ", 1)[-1])
            indexes.build(self.store, on_progress=on_progress)
            self.index = indexes.open(self.store)
        self.index_to_position = self._index_positions()
        self.position_to_index = np.empty_like(self.index_to_position)
        self.position_to_index[self.index_to_position] = np.arange(self.count)
        self.vector_cache: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()
        self.predictions: dict[str, Prediction] = {}
        self.trained = 0

    def _index_positions(self) -> np.ndarray:
        """Store position of each index vector id."""
        starts = dict(zip([f.name for f in self.files], np.cumsum([0] + [f.rows for f in self.files]), strict=False))
        mapping = np.empty(self.count, np.int64)
        for entry in self.index.manifest.files:
            mapping[entry.offset: entry.offset + entry.rows] = starts[entry.name] + np.arange(entry.rows)
        return mapping

    def describe(self) -> dict[str, Any]:
        """``GET /api/store``: count, modalities, model, bbox (lon/lat), date range, index kind."""
        bbox = [float(self.lonlat_bounds[:, 0].min()), float(self.lonlat_bounds[:, 1].min()),
                float(self.lonlat_bounds[:, 2].max()), float(self.lonlat_bounds[:, 3].max())] if self.count else None
        start, end = self.dates
        return {
            "store": str(self.store), "name": self.store.name, "count": self.count, "files": len(self.files),
            "modality": self.modalities[0] if len(self.modalities) == 1 else None, "modalities": self.modalities,
            "model": {"name": self.model.get("name"), "weights_hash": self.files[0].weights_hash,
                      "pretrained": self.model.get("pretrained"), "dimension": self.files[0].dimension},
            "bbox": bbox, "start": None if pd.isna(start) else start.isoformat(),
            "end": None if pd.isna(end) else end.isoformat(),
            "index": self.index.config.kind, "legend": self.legend, "origin": [float(v) for v in self.origin],
        }

    def positions_of(self, ids: list[str], what: str = "id") -> np.ndarray:
        """Store positions of tile ``ids``.

        Raises:
            QueryError: an id that is not 16 hex digits or not a tile of the store.
        """
        try:
            keys = np.frombuffer(bytes.fromhex("".join(str(i) for i in ids)), ">u8") if ids else np.empty(0, ">u8")
            if len(keys) != len(ids) or any(len(str(i)) != 16 for i in ids):
                raise ValueError
        except ValueError:
            bad = next((i for i in ids if not (isinstance(i, str) and len(i) == 16)), ids[0] if ids else "")
            raise QueryError(f"{what} {str(bad)[:40]!r}: not a tile id (16 hex digits)") from None
        slot = np.minimum(np.searchsorted(self.id_sorted, keys), max(self.count - 1, 0))
        found = self.id_sorted[slot] == keys if self.count else np.zeros(len(keys), bool)
        if not found.all():
            raise QueryError(f"{what} {ids[int(np.flatnonzero(~found)[0])]!r}: no such tile in {self.store.name}")
        return self.id_order[slot].astype(np.int64)

    def date_of(self, position: int) -> str | None:
        """The acquisition date of the tile at ``position`` (ISO, day precision), or None."""
        days = float(self.days[position])
        return None if np.isnan(days) else (pd.Timestamp("1970-01-01") + pd.Timedelta(days=days)).date().isoformat()

    def in_bbox(self, bbox: tuple[float, float, float, float] | None) -> np.ndarray:
        """Positions of the tiles whose lon/lat bounds meet ``bbox`` (all when None); across the antimeridian
        when ``min_lon > max_lon``.
        """
        if bbox is None:
            return np.arange(self.count)
        check_bbox(bbox)
        x0, y0, x1, y1 = bbox
        b = self.lonlat_bounds
        lat = (b[:, 3] >= y0) & (b[:, 1] <= y1)
        lon = (b[:, 2] >= x0) & (b[:, 0] <= x1) if x0 <= x1 else (b[:, 2] >= x0) | (b[:, 0] <= x1)
        return np.flatnonzero(lat & lon)

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """``(n, D)`` float32 embeddings at store ``positions``, read once and kept (labelled tiles are few)."""
        with self.lock:
            missing = sorted({int(p) for p in positions} - self.vector_cache.keys())
        if missing:
            read = self._index_vectors(np.asarray(missing))
            if read is None:
                read = read_embeddings(self.store, np.asarray(missing), files=self.files)
            with self.lock:
                self.vector_cache.update(zip(missing, read, strict=True))
        with self.lock:
            return np.stack([self.vector_cache[int(p)] for p in positions])

    def _index_vectors(self, positions: np.ndarray) -> np.ndarray | None:
        """The vectors at store ``positions`` as the index holds them (unit length; flat and HNSW keep them exactly),
        a gather from memory instead of reading whole store files; None when the index keeps no exact copy
        (IVF-PQ without refinement) or has several shards.
        """
        from ofa_embed.indexes.faiss_index import exact_vectors

        if len(self.index.shards) != 1:
            return None
        found = exact_vectors(self.index.index, self.index.config, self.position_to_index[positions])
        return None if found is None else np.asarray(found, np.float32)

    def search(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/search``: Rocchio's query over ``like_ids`` minus ``unlike_ids``, searched in the index
        within ``bbox``, ``start``/``end`` and ``modality``; hits best first.

        Raises:
            QueryError: no positive id, an unknown id, a bad k, bbox or date.
        """
        from ofa_embed.indexes import SearchFilter

        like, unlike = request.get("like_ids") or [], request.get("unlike_ids") or []
        if not isinstance(like, list) or not isinstance(unlike, list):
            raise QueryError("like_ids and unlike_ids must be lists of tile ids")
        if not like:
            raise QueryError("like_ids is empty: label at least one positive example of the class")
        k = request.get("k", 50)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise QueryError(f"k {k!r}: give a whole number from 1 to {MAX_K}")
        bbox = request.get("bbox")
        if bbox is not None:
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
                raise QueryError("bbox: give [min_lon, min_lat, max_lon, max_lat] in degrees")
            bbox = tuple(float(v) for v in bbox)
            check_bbox(bbox)
        start, end = _parse_time(request.get("start"), "start"), _parse_time(request.get("end"), "end")
        if start is not None and end is not None and start >= end:
            raise QueryError(f"start {start.isoformat()} is not before end {end.isoformat()}")
        modality = request.get("modality") or None
        if modality is not None and modality not in self.modalities:
            raise QueryError(f"modality {modality!r}: the store holds {', '.join(self.modalities)}")
        exclude = bool(request.get("exclude_labelled", False))
        positives = self.vectors(self.positions_of(like, "like id"))
        negatives = self.vectors(self.positions_of(unlike, "unlike id")) if unlike else np.empty((0, positives.shape[1]))
        vector = rocchio_vector(list(positives), list(negatives))
        started = time.perf_counter()
        asked = min(self.count, k + (len(like) + len(unlike) if exclude else 0))
        similarities, found = self.index.search_vectors(vector[None], asked, SearchFilter(
            bbox=bbox, start=start, end=end, modality=modality))
        keep = found[0] >= 0
        positions = self.index_to_position[found[0][keep]]
        scores = similarities[0][keep]
        if exclude:
            labelled = set(self.positions_of(like + unlike).tolist())
            mask = np.array([p not in labelled for p in positions], bool)
            positions, scores = positions[mask][:k], scores[mask][:k]
        hits = [{"rank": r + 1, "id": self.ids[p], "position": int(p), "similarity": round(float(s), 6),
                 "scene": self.scene_names[self.scene_codes[p]], "datetime": self.date_of(p),
                 "lon": float((self.lonlat_bounds[p, 0] + self.lonlat_bounds[p, 2]) / 2),
                 "lat": float((self.lonlat_bounds[p, 1] + self.lonlat_bounds[p, 3]) / 2)}
                for r, (p, s) in enumerate(zip(positions, scores, strict=True))]
        return {"hits": hits, "k": k, "seconds": round(time.perf_counter() - started, 4), "index": self.index.config.kind}

    def train(self, targets: dict[str, str], request: dict[str, Any], on_progress: ProgressCallback | None = None) -> Prediction:
        """``POST /api/train``: the probe (or kNN) with ``ofa-embed probe``'s cross-validation (spatial blocks by
        default) on the labels, then predictions over every tile.

        Args:
            targets: tile id -> class (negatives as :data:`~ofa_embed.labelling.labelbook.NEGATIVE_CLASS`).
            request: ``method`` (probe|knn), ``k`` (kNN neighbours), ``folds``, ``split`` (spatial-block|random),
                ``bootstrap`` (replicates for the intervals).
            on_progress: ``(step, done, total)``.

        Raises:
            LabelError: fewer than two classes, too few labels for the folds. ConfigError: bad options.
        """
        from ofa_embed import downstream
        from ofa_embed.defaults import BOOTSTRAP_REPLICATES, CV_FOLDS, KNN_NEIGHBOURS

        method = request.get("method", "probe")
        if method not in TRAIN_METHODS:
            raise ConfigError(f"method {method!r}: choose one of {', '.join(TRAIN_METHODS)}")
        split = request.get("split", "spatial-block")
        if split not in ("spatial-block", "random"):
            raise ConfigError(f"split {split!r}: choose spatial-block or random")
        folds, n_boot = request.get("folds", CV_FOLDS), request.get("bootstrap", BOOTSTRAP_REPLICATES)
        k = request.get("k", KNN_NEIGHBOURS)
        for name, value, low in (("folds", folds, 2), ("bootstrap", n_boot, 0), ("k", k, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} {value!r}: give a whole number of at least {low}")
        if not targets:
            raise LabelError("no labels yet: click tiles to label them, then train")
        classes = sorted(set(targets.values()))
        if len(classes) < 2:
            raise LabelError(f"every label is {classes[0]!r}: a classifier needs two classes; label negatives or a "
                             "second class")
        self.positions_of(list(targets))  # every label a tile of this store
        folds = min(folds, len(targets))
        with tempfile.TemporaryDirectory(prefix="ofa-serve-") as tmp:
            table = Path(tmp) / "labels.csv"
            pd.DataFrame({"id": list(targets), "class": list(targets.values())}).to_csv(table, index=False)
            predicted_file = Path(tmp) / "predictions.parquet"
            common = {"split": split, "folds": folds, "n_boot": n_boot, "on_progress": on_progress}
            if method == "probe":
                report = downstream.probe(self.store, table, "class", **common)
                model = report.model
            else:
                report = downstream.knn(self.store, table, "class", k=k, predict=predicted_file, **common)
                model = None
            codes, probabilities, names = self._predict(report, model, predicted_file, on_progress)
        self.trained += 1
        handle = f"p{self.trained}"
        summary = report.to_dict()
        summary.pop("predictions", None)
        summary.pop("plots", None)
        summary.pop("store", None)
        summary["labels"].pop("file", None)
        prediction = Prediction(handle, names, codes, probabilities[np.arange(len(codes)), codes].astype(np.float32),
                                probabilities, {"handle": handle, "method": report.method, "classes": names,
                                                "negative_class": NEGATIVE_CLASS, **summary},
                                method=method, model=model)
        with self.lock:
            self.predictions[handle] = prediction
            for old in [h for h in self.predictions if h != handle][:-2]:  # the last three are kept
                self.predictions.pop(old)
        return prediction

    def _predict(self, report: Any, model: Any, predicted_file: Path,
                 on_progress: ProgressCallback | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Class codes and per-class probabilities of every tile, in store positions."""
        if model is not None:
            names = [str(c) for c in model.classes]
            codes, probabilities = [], []
            for done, file in enumerate(self.files, 1):
                table = read_parquet(file.path, embedding_columns(parquet_schema(file.path)))
                proba = model.predict_proba(embedding_matrix(table)).astype(np.float32)
                codes.append(proba.argmax(axis=1))
                probabilities.append(proba)
                if on_progress:
                    on_progress("predict", done, len(self.files))
            return np.concatenate(codes).astype(np.uint16), np.concatenate(probabilities), names
        frame = read_parquet(predicted_file).to_pandas()  # kNN: predict_store wrote every tile, in store order
        names = [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]
        probabilities = frame[[f"prob_{n}" for n in names]].to_numpy(np.float32)
        return probabilities.argmax(axis=1).astype(np.uint16), probabilities, names

    def prediction(self, handle: str | None) -> Prediction:
        """A prediction by handle (the latest when None).

        Raises:
            QueryError: no such handle (or nothing trained yet).
        """
        with self.lock:
            if not self.predictions:
                raise QueryError("nothing trained yet: POST /api/train first")
            if handle is None:
                return self.predictions[next(reversed(self.predictions))]
            if handle not in self.predictions:
                raise QueryError(f"no predictions {handle!r} (held: {', '.join(self.predictions)})")
            return self.predictions[handle]
