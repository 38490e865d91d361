"""Labels and predictions of a ``serve`` session written as files: GeoParquet or GeoJSON.

Labels are one row per labelled tile, its footprint as the geometry (EPSG:4326)::

    id            the tile id
    class         the training target: the label's class when positive, ``background`` when negative
    label_class   the class the label was given for
    positive      true / false
    time          when it was labelled (UTC)

This is what ``ofa-embed probe STORE --labels labels.parquet --target class`` reads: a polygon covering a whole
tile labels that tile (the tile's own footprint covers all of it); on a store of overlapping tiles (``extract
--stride``), a neighbour covered past ``--min-overlap`` takes the label too, so there give the ids instead
(``--labels`` takes a table with an ``id`` column: ``duckdb -c "COPY (SELECT id, class FROM 'labels.parquet')
TO 'labels.csv'"``).

Predictions are one row per tile: ``id``, ``scene``, ``prediction``, ``probability`` (of the predicted class),
``prob_<class>`` per class, ``label`` (the training target of a labelled tile, else null), geometry: the
columns of ``probe --predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ofa_embed.labelling.labelbook import NEGATIVE_CLASS
from ofa_embed.labelling.session import Prediction, StoreSession
from ofa_embed.store import read_parquet, take_rows

__all__ = ["export_labels", "export_predictions"]


def _footprints(session: StoreSession, positions: np.ndarray) -> np.ndarray:
    if not len(positions):
        return np.empty(0, dtype=object)
    paths = [f.path for f in session.files]
    offsets = np.cumsum([0] + [f.rows for f in session.files])
    return shapely.from_wkb(take_rows(paths, offsets, positions, ["geometry"]).column("geometry").to_numpy(zero_copy_only=False))


def _write(frame: gpd.GeoDataFrame, out: Path) -> Path:
    if out.suffix == ".geojson":
        frame.to_file(out, driver="GeoJSON")
    else:
        frame.to_parquet(out, index=False, schema_version="1.1.0")
    return out


def export_labels(session: StoreSession, snapshot: dict[str, Any], out: Path) -> Path:
    """Write the labels of ``snapshot`` (:meth:`LabelBook.snapshot`) to ``out`` (``.parquet`` or ``.geojson``)."""
    labels = snapshot["labels"]
    ids = [label["id"] for label in labels]
    positions = session.positions_of(ids) if ids else np.empty(0, np.int64)
    frame = gpd.GeoDataFrame({
        "id": pd.Series(ids, dtype=object),
        "class": pd.Series([label["class"] if label["positive"] else NEGATIVE_CLASS for label in labels], dtype=object),
        "label_class": pd.Series([label["class"] for label in labels], dtype=object),
        "positive": pd.Series([bool(label["positive"]) for label in labels], dtype=bool),
        "time": pd.Series([label.get("time") for label in labels], dtype=object),
    }, geometry=_footprints(session, positions), crs="OGC:CRS84")
    return _write(frame, out)


def export_predictions(session: StoreSession, prediction: Prediction, snapshot: dict[str, Any], out: Path) -> Path:
    """Write ``prediction`` over every tile to ``out`` (``.parquet`` or ``.geojson``), one store file at a time read."""
    geometry = np.concatenate([
        shapely.from_wkb(read_parquet(f.path, ["geometry"]).column("geometry").to_numpy(zero_copy_only=False))
        for f in session.files])
    targets = {label["id"]: label["class"] if label["positive"] else NEGATIVE_CLASS for label in snapshot["labels"]}
    frame = pd.DataFrame({
        "id": session.ids, "scene": np.asarray(session.scene_names, dtype=object)[session.scene_codes],
        "prediction": np.asarray(prediction.classes, dtype=object)[prediction.codes],
        "probability": prediction.probability,
    })
    for j, name in enumerate(prediction.classes):
        frame[f"prob_{name}"] = prediction.probabilities[:, j]
    frame["label"] = [targets.get(i) for i in session.ids]
    return _write(gpd.GeoDataFrame(frame, geometry=geometry, crs="OGC:CRS84"), out)
