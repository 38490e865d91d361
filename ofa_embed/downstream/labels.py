"""Labels joined to the tiles of a store.

Labels come as

- a vector file (GeoPackage, GeoJSON, GeoParquet, shapefile, FlatGeobuf) of points or polygons with a
  target column, in any CRS (reprojected to the store's EPSG:4326); or
- a table (CSV, or Parquet without geometry) with an ``id`` column of tile ids.

Every label casts weighted votes on tiles, then votes are aggregated per tile:

- a point (or an id) votes with weight 1 for every tile that contains it (overlapping tiles all get it);
- a polygon votes for every tile it overlaps, with the fraction of the tile's area it covers. Areas
  are measured in longitude/latitude: within one tile the distortion is the same for both areas, so
  the fraction is accurate to well under 1 % for tiles of a few km.

Per tile, ``classify`` keeps the class with the most weight (a tile whose top classes tie is dropped),
``multilabel`` keeps every label with weight, ``regress`` the weighted mean. For polygons, the winning
class's fraction (classify), each label's fraction (multilabel) or the covered fraction (regress)
must reach ``min_overlap``; for points there is no threshold.

Labels that end up on no tile are counted by reason: outside every tile, overlap below the threshold,
tied with another class, id not in the store, no target value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely

from ofa_embed.downstream.metrics import TASKS
from ofa_embed.errors import LabelError, first_line

__all__ = ["LabelJoin", "join_labels", "read_labels", "DEFAULT_MIN_OVERLAP"]

DEFAULT_MIN_OVERLAP = {"classify": 0.5, "multilabel": 0.1, "regress": 0.5}
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
_MULTILABEL_SEPARATORS = re.compile(r"\s*[,;|]\s*")


@dataclass
class LabelJoin:
    """Labelled tiles of a store.

    Attributes:
        tiles: one row per labelled tile: ``position`` (row in the store), ``id``, ``scene``,
            ``geometry`` (EPSG:4326) and ``group_value`` (the value of a split column, when asked).
        targets: classify ``(N,)`` class names; multilabel ``(N, L)`` int 0/1 over ``classes``;
            regress ``(N,)`` float.
        classes: sorted class or label names (empty for regression).
        labels: label rows read; ``matched``: label rows that gave a tile its target.
        unmatched: reason -> number of label rows that labelled no tile for that reason.
        source: the labels file; ``kind``: ``points``, ``polygons`` or ``ids``.
    """

    tiles: gpd.GeoDataFrame
    targets: np.ndarray
    classes: list[Any]
    labels: int
    matched: int
    unmatched: dict[str, int] = field(default_factory=dict)
    source: str = ""
    kind: str = ""

    @property
    def positions(self) -> np.ndarray:
        """The labelled tiles' rows in the store, ``(N,)`` int."""
        return self.tiles["position"].to_numpy()

    def describe(self) -> str:
        """A one-line summary: label rows matched, tiles labelled, and why the others were not."""
        why = ", ".join(f"{n} {reason}" for reason, n in self.unmatched.items() if n)
        return (f"{self.matched} of {self.labels} label {self.kind} matched {len(self.tiles)} tiles"
                + (f"; unmatched: {why}" if why else ""))


def _is_geoparquet(path: Path) -> bool:
    try:
        return b"geo" in (pq.read_schema(path).metadata or {})
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure means: not readable as Parquet
        raise LabelError(f"{path}: not a readable labels file ({first_line(exc)})") from None


def read_labels(path: str | Path, target: str, *, id_column: str = "id") -> pd.DataFrame:
    """The labels file as a GeoDataFrame (vector) or a DataFrame with ``id_column`` (table).

    Raises:
        LabelError: missing or unreadable file, no ``target`` column, a vector file without CRS, a
            table without ``id_column``.
    """
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such labels file")
    suffix = path.suffix.lower()
    try:
        if suffix in TABLE_SUFFIXES:
            frame: pd.DataFrame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={id_column: str})
        elif suffix == ".parquet" and not _is_geoparquet(path):
            frame = pd.read_parquet(path)
        elif suffix == ".parquet":
            frame = gpd.read_parquet(path)
        else:
            frame = gpd.read_file(path)
    except LabelError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas/pyogrio raise many types for a bad file
        raise LabelError(f"{path}: not a readable labels file ({first_line(exc)})") from None
    if target not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns if c != "geometry")
        raise LabelError(f"{path}: no column {target!r} (columns: {columns})")
    if isinstance(frame, gpd.GeoDataFrame):
        if frame.crs is None:
            raise LabelError(f"{path}: the labels have no CRS; set one (e.g. ogr2ogr -a_srs EPSG:4326)")
    elif id_column not in frame.columns:
        raise LabelError(f"{path}: a labels table needs an {id_column!r} column of tile ids; for coordinates give a vector "
                         "file (e.g. ogr2ogr -oo X_POSSIBLE_NAMES=lon -oo Y_POSSIBLE_NAMES=lat -a_srs EPSG:4326 out.gpkg in.csv)")
    return frame


def _label_sets(values: pd.Series) -> pd.Series:
    """Multilabel targets as lists of names: lists stay lists, strings split on , ; or |."""
    def split(value: Any) -> list[str]:
        if isinstance(value, list | tuple | np.ndarray):
            return [str(v) for v in value]
        return [v for v in _MULTILABEL_SEPARATORS.split(str(value).strip()) if v]

    return values.map(split)


def _votes_from_geometry(labels: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame, path: Path) -> tuple[pd.DataFrame, str]:
    """``(label, position, weight)`` votes and the label kind (points or polygons)."""
    kinds = set(labels.geom_type.dropna())
    points = kinds <= {"Point", "MultiPoint"}
    if not points and kinds & {"Point", "MultiPoint"}:
        raise LabelError(f"{path}: mixes points and polygons; put them in separate files")
    if not points and not kinds <= {"Polygon", "MultiPolygon"}:
        raise LabelError(f"{path}: labels must be points or polygons, found {', '.join(sorted(kinds))}")
    geometries = labels.geometry.to_crs("OGC:CRS84").to_numpy()
    label_index, tile_index = tiles.sindex.query(geometries, predicate="intersects")
    if points:
        weights = np.ones(len(label_index))
    else:
        footprints = tiles.geometry.to_numpy()[tile_index]
        try:
            shared = shapely.area(shapely.intersection(geometries[label_index], footprints))
        except shapely.errors.GEOSException:
            # an invalid ring GEOS cannot overlay (a self-intersecting hand-drawn polygon) is repaired, not
            # refused; only on failure, because repairing every ring of a large labels file is slow, and
            # outlines that touch themselves at a corner, which GEOS overlays as they are, are common
            invalid = ~shapely.is_valid(geometries)
            geometries[invalid] = shapely.make_valid(geometries[invalid])
            shared = shapely.area(shapely.intersection(geometries[label_index], footprints))
        weights = shared / shapely.area(footprints)
    votes = pd.DataFrame({"label": label_index, "position": tiles["position"].to_numpy()[tile_index], "weight": weights})
    # a polygon that only touches a tile's edge does not cover any of it
    return votes[votes["weight"] > 0], "points" if points else "polygons"


def _aggregate(votes: pd.DataFrame, task: str, threshold: float) -> tuple[pd.DataFrame, set[int], set[int]]:
    """Per-tile targets from votes (``label``, ``position``, ``weight``, ``value``).

    Returns:
        targets per position (column ``target``), the labels that gave a kept target, and the labels
        whose every tile tied.
    """
    if task == "regress":
        votes = votes.assign(weighted=votes["weight"] * votes["value"])
        per_tile = votes.groupby("position").agg(weight=("weight", "sum"), weighted=("weighted", "sum"))
        kept = per_tile[per_tile["weight"] >= threshold]
        targets = pd.DataFrame({"target": kept["weighted"] / kept["weight"]})
        return targets, set(votes.loc[votes["position"].isin(kept.index), "label"]), set()
    per_class = votes.groupby(["position", "value"], as_index=False)["weight"].sum()
    per_class["weight"] = per_class["weight"].clip(upper=1.0) if threshold > 0 else per_class["weight"]
    if task == "multilabel":
        present = per_class[per_class["weight"] >= max(threshold, 1e-12)]
        targets = present.groupby("position")["value"].agg(lambda v: sorted(set(v))).to_frame("target")
        used = votes.merge(present[["position", "value"]], on=["position", "value"])["label"]
        return targets, set(used), set()
    best = per_class.groupby("position")["weight"].transform("max")
    top = per_class[(per_class["weight"] >= best - 1e-9) & (best >= threshold)]
    tied_positions = set(top.loc[top.duplicated("position", keep=False), "position"])
    winners = top[~top["position"].isin(tied_positions)]
    used = set(votes.merge(winners[["position", "value"]], on=["position", "value"])["label"])
    tied_labels = set(votes.loc[votes["position"].isin(tied_positions), "label"]) - used
    return winners.set_index("position")[["value"]].rename(columns={"value": "target"}), used, tied_labels


def join_labels(
    labels: pd.DataFrame, tiles: gpd.GeoDataFrame, target: str, task: str, *, min_overlap: float | None = None,
    group_column: str | None = None, id_column: str = "id", source: str | Path = "labels",
) -> LabelJoin:
    """Join labels (from :func:`read_labels`) to store tiles (from :func:`ofa_embed.store.read_tiles`).

    Args:
        labels: the label rows: points or polygons (GeoDataFrame) or a table with ``id_column``.
        tiles: the store's tiles, with ``position``, ``id``, ``scene`` and ``geometry``.
        target: the label column holding the targets.
        task: ``classify``, ``multilabel`` or ``regress``.
        min_overlap: polygon threshold (fraction of a tile's area); default :data:`DEFAULT_MIN_OVERLAP`.
        group_column: a column of the labels (majority per tile) or of the tiles (e.g. ``scene``)
            whose values become ``tiles["group_value"]`` for a split by column.
        id_column: the column of tile ids in a table of labels.
        source: the labels file, named in error messages and kept as :attr:`LabelJoin.source`.

    Raises:
        LabelError: a non-numeric regression target, a split column found nowhere, or no label on any tile.
    """
    if task not in TASKS:
        raise LabelError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    path = Path(source)
    threshold = DEFAULT_MIN_OVERLAP[task] if min_overlap is None else min_overlap
    if not 0 < threshold <= 1:
        raise LabelError(f"--min-overlap must be in (0, 1], got {threshold:g}")
    if group_column and group_column not in labels.columns and group_column not in tiles.columns:
        raise LabelError(f"{path}: split column {group_column!r} is neither a label column nor a store column")
    labels = labels.reset_index(drop=True)
    missing_value = labels[target].isna()
    if isinstance(labels, gpd.GeoDataFrame):
        missing_value |= labels.geometry.isna() | labels.geometry.is_empty
    values = labels[target]
    if task == "regress":
        values = pd.to_numeric(values, errors="coerce")
        if values[~missing_value].isna().any():
            bad = labels.loc[~missing_value & values.isna(), target].iloc[0]
            raise LabelError(f"{path}: regression target {target!r} has a non-numeric value {bad!r}")
    elif task == "multilabel":
        values = _label_sets(values.where(~missing_value, ""))
        missing_value |= values.map(len) == 0
    else:
        if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
            values = values.astype("Int64")  # integer classes read as floats because of empty cells: 1, not 1.0
        values = values.astype(str).where(~missing_value)
    usable = labels[~missing_value]
    if isinstance(labels, gpd.GeoDataFrame):
        votes, kind = _votes_from_geometry(usable, tiles, path)
        votes["label"] = usable.index.to_numpy()[votes["label"].to_numpy()]
        outside_reason = "outside every tile"
    else:
        lookup = pd.Series(tiles["position"].to_numpy(), index=tiles["id"].to_numpy())
        found = usable[id_column].astype(str).isin(lookup.index)
        votes = pd.DataFrame({"label": usable.index[found], "weight": 1.0,
                              "position": lookup.loc[usable.loc[found, id_column].astype(str)].to_numpy()})
        kind, outside_reason = "ids", "id not in the store"
    votes["value"] = values.loc[votes["label"]].to_numpy()
    if task == "multilabel":
        votes = votes.explode("value").dropna(subset=["value"])
    per_tile, used, tied = _aggregate(votes, task, threshold if kind == "polygons" else 0.0)
    voted = set(votes["label"])
    unmatched = {
        "no target value": int(missing_value.sum()),
        outside_reason: int(len(usable) - len(voted)),
        "tied with another class": len(tied),
        "below --min-overlap in every tile": len(voted - used - tied),
    }
    if per_tile.empty:
        why = ", ".join(f"{n} {reason}" for reason, n in unmatched.items() if n)
        raise LabelError(f"{path}: no label matched a tile of the store ({len(labels)} labels: {why}; check their area and CRS)")
    chosen = tiles.set_index("position").loc[per_tile.index]
    frame = gpd.GeoDataFrame({"position": per_tile.index.to_numpy(), "id": chosen["id"].to_numpy(),
                              "scene": chosen["scene"].to_numpy()}, geometry=chosen.geometry.to_numpy(), crs=tiles.crs)
    if group_column:
        if group_column in labels.columns:
            first = votes.sort_values("weight", ascending=False).drop_duplicates("position").set_index("position")
            frame["group_value"] = labels.loc[first.loc[per_tile.index, "label"], group_column].to_numpy()
        else:
            frame["group_value"] = chosen[group_column].to_numpy()
    targets, classes = _target_array(per_tile["target"], task)
    return LabelJoin(frame, targets, classes, len(labels), len(used), unmatched, str(path), kind)


def _target_array(targets: pd.Series, task: str) -> tuple[np.ndarray, list[Any]]:
    if task == "regress":
        return targets.to_numpy(dtype=np.float64), []
    if task == "classify":
        values = targets.to_numpy(dtype=object)
        return values, sorted(set(values))
    classes = sorted({label for labels in targets for label in labels})
    column = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(targets), len(classes)), dtype=np.int64)
    for row, labels in enumerate(targets):
        matrix[row, [column[label] for label in labels]] = 1
    return matrix, classes
