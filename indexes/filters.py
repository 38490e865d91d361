"""Search filters resolved to allowed vector positions with DuckDB over the store's flat columns.

Filters never over-fetch and drop: the allowed positions are computed first, from the flat
``xmin/ymin/xmax/ymax``, ``datetime``, ``modality`` and ``scene`` columns (DuckDB prunes row groups
with their statistics), then handed to faiss as an id selector.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from indexes.manifest import Manifest
from ofa_embed.duck import connect


@dataclass(frozen=True)
class SearchFilter:
    """Which rows a search may return; every set field must hold.

    Attributes:
        bbox: ``(min_lon, min_lat, max_lon, max_lat)``: tiles whose bbox intersects it.
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
        return all(v is None for v in (self.bbox, self.start, self.end, self.modality, self.scene))

    def sql(self) -> tuple[str, list[object]]:
        """``WHERE`` clause (without the keyword) and its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.bbox is not None:
            clauses.append("xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?")
            min_lon, min_lat, max_lon, max_lat = self.bbox
            params += [min_lon, max_lon, min_lat, max_lat]
        if self.start is not None:
            clauses.append("datetime >= ?")
            params.append(self.start)
        if self.end is not None:
            clauses.append("datetime < ?")
            params.append(self.end)
        for column in ("modality", "scene"):
            if getattr(self, column) is not None:
                clauses.append(f"{column} = ?")
                params.append(getattr(self, column))
        return " AND ".join(clauses) or "TRUE", params


def allowed_positions(store: Path, manifest: Manifest, search_filter: SearchFilter) -> np.ndarray:
    """Sorted int64 positions of the rows that pass ``search_filter``."""
    where, params = search_filter.sql()
    offsets = {str(store / f.name): f.offset for f in manifest.files}
    con = connect()
    con.execute("CREATE TEMP TABLE offsets (filename VARCHAR, base BIGINT)")
    con.executemany("INSERT INTO offsets VALUES (?, ?)", list(offsets.items()))
    rows = con.execute(
        f"SELECT o.base + t.file_row_number FROM read_parquet(?, filename = true, file_row_number = true) t "
        f"JOIN offsets o USING (filename) WHERE {where} ORDER BY 1",
        [list(offsets), *params],
    ).fetchnumpy()
    return next(iter(rows.values())).astype(np.int64) if rows else np.zeros(0, np.int64)
