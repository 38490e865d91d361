"""Search filters resolved to allowed vector positions over the store's flat columns, held in memory.

Filters never over-fetch and drop: the allowed positions are computed first, then searched (ranked
exactly when few rows are allowed, else through a faiss id selector). The flat ``xmin/ymin/xmax/ymax``,
``datetime``, ``modality`` and ``scene`` columns are read once per opened index into numpy arrays with
three pre-indexes, so that a filter never seen before costs about what its result does, not a scan of
every row:

- a uniform grid over tile centres (about 64 rows a cell), whose cells overlapping a bbox widened by the
  largest tile's half-size are the only rows a bbox filter checks;
- the rows sorted by time, cut by ``start``/``end`` with a binary search;
- each modality's and scene's rows.

The most selective structure gives the candidates; the filter's other fields are checked on those only.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ofa_embed.errors import QueryError
from ofa_embed.indexes.manifest import Manifest
from ofa_embed.location import AnyPath
from ofa_embed.store import epoch_micros, read_parquet
from ofa_embed.store.footprints import crosses_antimeridian, wrap_longitude

FILTER_COLUMNS = ["xmin", "ymin", "xmax", "ymax", "datetime", "modality", "scene"]


@dataclass(frozen=True)
class SearchFilter:
    """Which rows a search may return; every set field must hold.

    Attributes:
        bbox: ``(min_lon, min_lat, max_lon, max_lat)``: tiles whose bbox intersects it; ``min_lon > max_lon``
            for a bbox across the antimeridian (RFC 7946).
        start: tiles acquired at or after this time (tiles without a datetime are excluded).
        end: tiles acquired before this time.
        modality: tiles of this modality.
        scene: tiles of this scene.
    """

    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    modality: str | None = None
    scene: str | None = None

    @property
    def is_empty(self) -> bool:
        """Whether no field is set, so every row is allowed."""
        return all(v is None for v in (self.bbox, self.start, self.end, self.modality, self.scene))


GRID_ROWS_PER_CELL = 64


class FilterTable:
    """The store's filter columns with each row's vector position, pre-indexed in memory (see the module
    docstring); about 60 bytes a row, built on the first filtered search of an opened index.

    Every per-row array is held in grid-cell order, so that a bbox's candidate rows are a few contiguous
    ranges (one per grid row it covers) and checking them reads memory in sequence, not at random.
    """

    def __init__(self, store: AnyPath, manifest: Manifest) -> None:
        parts = [read_parquet(store / entry.name, FILTER_COLUMNS) for entry in manifest.files]
        table = pa.concat_tables(parts, promote_options="permissive")  # an indexed store has at least one file
        positions = np.concatenate([np.arange(e.offset, e.offset + e.rows, dtype=np.int64) for e in manifest.files])
        xmin, ymin, xmax, ymax = (table.column(c).to_numpy().astype(np.float64) for c in ("xmin", "ymin", "xmax", "ymax"))
        cell = self._grid(xmin, ymin, xmax, ymax)
        order = np.argsort(cell, kind="stable")
        self.cell_starts = np.searchsorted(cell[order], np.arange(self.side * self.side + 1))
        self.positions, self.xmin, self.ymin, self.xmax, self.ymax = (
            values[order] for values in (positions, xmin, ymin, xmax, ymax))
        table = table.take(pa.array(order))
        times = table.column("datetime").cast(pa.timestamp("us", tz="UTC"))
        self.micros = pc.fill_null(times.cast(pa.int64()), np.iinfo(np.int64).min).to_numpy()
        self.by_time = np.argsort(self.micros, kind="stable")
        self.sorted_micros = self.micros[self.by_time]
        self.values = {column: self._groups(table.column(column)) for column in ("modality", "scene")}

    @staticmethod
    def _groups(column: pa.ChunkedArray) -> dict[str, np.ndarray]:
        """Each value's row numbers (rows without a value are in no group)."""
        encoded = column.combine_chunks().dictionary_encode()
        values = encoded.dictionary.to_pylist()
        codes = pc.fill_null(encoded.indices, len(values)).to_numpy().astype(np.int64)
        order = np.argsort(codes, kind="stable")
        cuts = np.searchsorted(codes[order], np.arange(len(values) + 1))
        return {str(value): order[cuts[i] : cuts[i + 1]] for i, value in enumerate(values)}

    def _grid(self, xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray, ymax: np.ndarray) -> np.ndarray:
        """Lay the grid over the tile centres; each row's cell."""
        # a tile across the antimeridian has xmin > xmax (RFC 7946): its width and centre go the short way round
        width = np.where(crosses_antimeridian(xmin, xmax), xmax + 360 - xmin, xmax - xmin)
        cx, cy = wrap_longitude(xmin + width / 2), (ymin + ymax) / 2
        self.half_w = float(np.max(width)) / 2 if len(cx) else 0.0
        self.half_h = float(np.max(ymax - ymin)) / 2 if len(cy) else 0.0
        self.x0, self.y0 = (float(cx.min()), float(cy.min())) if len(cx) else (0.0, 0.0)
        side = max(1, int(np.sqrt(len(cx) / GRID_ROWS_PER_CELL)))
        self.cell_w = max((float(cx.max()) - self.x0) / side, 1e-12) if len(cx) else 1.0
        self.cell_h = max((float(cy.max()) - self.y0) / side, 1e-12) if len(cy) else 1.0
        self.side = side
        return self._cell(cx, cy)

    def _cell(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        col = np.clip(((x - self.x0) / self.cell_w).astype(np.int64), 0, self.side - 1)
        row = np.clip(((y - self.y0) / self.cell_h).astype(np.int64), 0, self.side - 1)
        return row * self.side + col

    def _bbox_candidates(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        min_lon, min_lat, max_lon, max_lat = bbox
        # a bbox across the antimeridian (min_lon > max_lon) is its two sides; a side whose widening passes ±180
        # also looks on the other side, where tiles across the antimeridian have their centres
        sides = [(min_lon, 180.0), (-180.0, max_lon)] if min_lon > max_lon else [(min_lon, max_lon)]
        spans = list(sides)
        for west, east in sides:
            if west - self.half_w < -180:
                spans.append((west + 360, 180.0))
            if east + self.half_w > 180:
                spans.append((-180.0, east - 360))
        if len(spans) == 1:
            return self._span_candidates(min_lon, min_lat, max_lon, max_lat)
        return np.unique(np.concatenate([self._span_candidates(w, min_lat, e, max_lat) for w, e in spans]))

    def _span_candidates(self, min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> np.ndarray:
        # a tile intersects the bbox only if its centre lies within the bbox widened by half the largest tile;
        # one more cell each way absorbs rounding, and clipping in floats keeps an infinite bbox whole
        columns = np.floor((np.array([min_lon - self.half_w, max_lon + self.half_w]) - self.x0) / self.cell_w)
        rows = np.floor((np.array([min_lat - self.half_h, max_lat + self.half_h]) - self.y0) / self.cell_h)
        c0, c1 = np.clip(columns + [-1, 1], 0, self.side - 1).astype(np.int64)
        r0, r1 = np.clip(rows + [-1, 1], 0, self.side - 1).astype(np.int64)
        if r0 > r1 or c0 > c1:  # an inverted bbox
            return np.empty(0, np.int64)
        # rows are in cell order: the cells c0..c1 of one grid row are one contiguous range of rows
        first = np.arange(r0, r1 + 1) * self.side
        starts, stops = self.cell_starts[first + c0], self.cell_starts[first + c1 + 1]
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops, strict=True)])

    def _covers(self, bbox: tuple[float, float, float, float]) -> bool:
        """Whether any tile intersects ``bbox``."""
        rows = self._bbox_candidates(bbox)
        return bool(np.any(self._intersect(rows, bbox)))

    def _intersect(self, rows: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """Which of ``rows`` intersect ``bbox``, either of them possibly across the antimeridian (xmin > xmax)."""
        min_lon, min_lat, max_lon, max_lat = bbox
        xmin, xmax = self.xmin[rows], self.xmax[rows]
        crossing = crosses_antimeridian(xmin, xmax)
        # a longitude span across the antimeridian is [xmin, 180] and [-180, xmax]; two spans meet where one of
        # each side's parts overlap, and a span across always meets another across
        if min_lon > max_lon:
            lon = crossing | (xmax >= min_lon) | (xmin <= max_lon)
        else:
            lon = np.where(crossing, (max_lon >= xmin) | (min_lon <= xmax), (xmax >= min_lon) & (xmin <= max_lon))
        return lon & (self.ymax[rows] >= min_lat) & (self.ymin[rows] <= max_lat)

    def _time_candidates(self, start: datetime | None, end: datetime | None) -> np.ndarray:
        low = np.searchsorted(self.sorted_micros, epoch_micros(start), "left") if start is not None else \
            np.searchsorted(self.sorted_micros, np.iinfo(np.int64).min, "right")  # rows without a time never match
        high = np.searchsorted(self.sorted_micros, epoch_micros(end), "left") if end is not None else len(self.sorted_micros)
        return self.by_time[low:high]

    def allowed(self, search_filter: SearchFilter) -> np.ndarray:
        """Sorted int64 positions of the rows that pass ``search_filter``.

        Raises:
            QueryError: a scene the store does not hold; a bbox that covers no tile while the same numbers
                with longitude and latitude swapped would (a ``lat,lon`` order).
        """
        f = search_filter
        if f.scene is not None and f.scene not in self.values["scene"]:
            near = difflib.get_close_matches(f.scene, list(self.values["scene"]), n=3)
            raise QueryError(f"scene {f.scene!r}: no tile of the store is of that scene"
                             + (f"; did you mean {', '.join(map(repr, near))}?" if near else
                                f" ({len(self.values['scene'])} scene(s) stored)"))
        candidates: list[np.ndarray] = []
        if f.bbox is not None:
            candidates.append(self._bbox_candidates(f.bbox))
            if not self._covers(f.bbox):
                min_lon, min_lat, max_lon, max_lat = f.bbox
                if self._covers((min_lat, min_lon, max_lat, max_lon)):
                    raise QueryError(f"bbox {','.join(f'{v:g}' for v in f.bbox)} covers no tile, but with its "
                                     "longitudes and latitudes swapped it would: give MINLON,MINLAT,MAXLON,MAXLAT")
        if f.start is not None or f.end is not None:
            candidates.append(self._time_candidates(f.start, f.end))
        for column in ("modality", "scene"):
            value = getattr(f, column)
            if value is not None:
                candidates.append(self.values[column].get(value, np.empty(0, np.int64)))
        rows = min(candidates, key=len) if candidates else np.arange(len(self.positions))
        keep = np.ones(len(rows), bool)
        if f.bbox is not None:
            keep &= self._intersect(rows, f.bbox)
        if f.start is not None:
            keep &= self.micros[rows] >= epoch_micros(f.start)
        if f.end is not None:
            keep &= (self.micros[rows] < epoch_micros(f.end)) & (self.micros[rows] > np.iinfo(np.int64).min)
        for column in ("modality", "scene"):
            value = getattr(f, column)
            if value is not None:
                members = self.values[column].get(value, np.empty(0, np.int64))
                keep &= np.isin(rows, members, assume_unique=True)
        return np.sort(self.positions[rows[keep]])

