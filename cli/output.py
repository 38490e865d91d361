"""Writing result tables (search hits, SQL results) as csv, json/geojson or (Geo)Parquet, atomically."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ofa_embed.atomic import atomic_target
from ofa_embed.formats import RESULT_FORMATS, TABLE_FORMATS

if TYPE_CHECKING:  # pandas loads only when a result is written: every command imports this module
    import pandas as pd

TABLE = "table"  # the CLI's rich rendering on the terminal, not a file format
FORMATS = (TABLE, *RESULT_FORMATS)  # search hits
SQL_FORMATS = (TABLE, *TABLE_FORMATS)  # SQL results: no geometry column


def render(frame: pd.DataFrame, fmt: str) -> bytes:
    """``frame`` encoded as ``fmt``, one of :data:`~ofa_embed.formats.RESULT_FORMATS` (not ``table``: that is the
    CLI's rich rendering).
    """
    import geopandas as gpd
    import pandas as pd

    geographic = isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "geojson":
        if not geographic:
            raise ValueError("geojson needs a geometry column")
        return frame.to_json(drop_id=True, default=str).encode()
    if fmt == "json":
        plain = pd.DataFrame(frame.drop(columns=frame.geometry.name)) if geographic else frame
        return plain.to_json(orient="records", date_format="iso", default_handler=str).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(RESULT_FORMATS)}")


def write(frame: pd.DataFrame, fmt: str, out: str | Path | None) -> None:
    """Write ``frame`` to ``out`` (temporary name, then rename), or to stdout when ``out`` is None or ``-``."""
    payload = render(frame, fmt)
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
        return
    with atomic_target(Path(out)) as tmp:
        tmp.write_bytes(payload)
